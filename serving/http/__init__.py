"""The HTTP layer: routes that parse a request with `serving/requests.py`, run a mode through
the cross-request batchers, and answer; the bodies they answer with; the OpenAPI document;
readiness across workers; and the Prometheus metrics."""
