"""Metacontroller hooks of carbonrouter.

Metacontroller calls `customize` and `sync` (module `hooks.sync`) with a
TrafficSchedule and the objects it observed. Both are pure functions of the
request JSON plus one bounded engine call. `hooks.app` wraps them in Flask,
`hooks.render` runs the same sync from YAML files for review.
"""
