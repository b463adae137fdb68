"""Replay of policies over a recorded carbon trace, and the reference rows they are measured against.

`replay` builds the carbon data the engine would have at each moment:
forecasts issued so far and actuals of slots already reached. `simulate` runs
a policy or a reference plan slot by slot and charges emissions with actual
intensity. `demand` gives policies their demand forecast and measures its
error. `report` turns the outcomes into the table, CSV and chart that
`python -m engine.evaluate` prints and writes.
"""
