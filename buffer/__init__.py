"""The buffer: an HTTP router and a queue consumer between clients and flavours.

The router (`buffer.router`) accepts every client request, picks a flavour by
the engine's current weights, publishes the request to RabbitMQ and waits for
the reply on the direct reply-to pseudo-queue. The consumer (`buffer.consumer`)
takes requests from one durable queue per flavour, forwards each one to its
flavour over HTTP, publishes the response back to the router and only then
acknowledges the message. Both read their settings from the environment
(`buffer.config`); `docs/buffer.md` lists every variable.
"""
