"""carbonstat: the sample service whose flavours the router chooses between.

One Flask application, three flavours picked by configuration. Each flavour
serves the same `POST /avg` API but reads a different share of the input, so
precision and work (and hence energy) fall together.
"""
