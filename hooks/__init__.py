"""Metacontroller hooks of carbonrouter.

Metacontroller calls `customize` and `sync` (modules `hooks.sync`) with a
TrafficSchedule and the objects it observed; both are pure functions of the
request JSON plus one bounded engine call. `hooks.app` wraps them in Flask,
`hooks.render` runs the same sync from YAML files for review.
"""
