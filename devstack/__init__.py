"""devstack: the whole carbonrouter on one machine, without Kubernetes.

`python -m devstack run` starts the engine, the hooks, three carbonstat
flavours, the consumer and the router as local processes on loopback ports
against a real RabbitMQ, then plays Metacontroller's part: it sends the
example TrafficSchedule through the hooks' real `/sync` endpoint (which requests
a decision from the engine) and repeats that like a resync. `demo` drives
traffic through the router and reports the flavour mix against carbon
intensity; `status` prints one line about a running stack.

Modules: `settings` (ports and options from flags and environment),
`components` (the command line and environment of every process),
`processes` (process groups, logs, health checks, clean stop),
`metacontroller` (sync requests and label selectors as Metacontroller
builds them), `registration` (the customize and sync round trip),
`stack` (the `run` command), `status`, `demo` and `report`.
"""
