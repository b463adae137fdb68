"""Replay of policies over a recorded carbon trace, and the reference rows they are measured against.

`replay` builds what the engine would know at each moment (forecasts issued
so far, actuals of slots already reached), `simulate` runs a policy or a
reference plan slot by slot and charges emissions with actual intensity, and
`report` turns the outcomes into the table, CSV and chart that
`python -m engine.evaluate` prints and writes.
"""
