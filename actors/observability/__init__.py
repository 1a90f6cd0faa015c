"""Observability: Prometheus metrics, OpenTelemetry traces, invocation context for logs, redaction.

Submodules: `metrics` (the metric set and its endpoint), `tracing` (spans and trace context in
messages), `scope` (the invocation a task runs, for log records), `redaction` (secrets masked
in error texts). This package imports none of them, so loading one loads only what it needs.
"""
