"""Operating the gateway: Prometheus metrics, readiness, request logs, drain, TLS and traces.

Each concern is a small module of glue around the field's library for it:

- :mod:`.metrics`  — the metric families (prometheus-client) and the ``/metrics`` scrape
- :mod:`.health`   — ``/health`` and ``/ready`` and the gRPC health service's status
- :mod:`.logs`     — stdlib logging with a JSON or text formatter; one line per request
- :mod:`.drain`    — SIGTERM: readiness 503, in-flight calls finish, writers flush, exit 0
- :mod:`.tls`      — ``ssl`` / gRPC server credentials from ``tls_*`` settings
- :mod:`.tracing`  — OpenTelemetry (off unless ``OTEL_*`` asks for it)
"""
