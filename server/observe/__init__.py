"""What the server tells its operators beside the logs: metrics (`--metrics-bind`).

`metrics.py` holds the counting (plain integers, no dependency), `aggregate.py` the supervisor's
sum over its workers, `exposition.py` the Prometheus side (prometheus_client, the optional
`plexicorn[metrics]` extra) and the `/metrics` listener.
"""
