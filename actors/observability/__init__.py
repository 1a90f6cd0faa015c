"""Observability: Prometheus metrics, OpenTelemetry traces, invocation context for logs, redaction.

Submodules: `metrics` (the metric set and its endpoint), `tracing` (spans and trace context in
messages), `scope` (the invocation a task runs, for log records), `redaction` (secrets masked
in error texts). This package imports none of them, so loading one loads only what it needs;
the names an application uses (`__all__`) load their submodule on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .metrics import METRICS, serve_metrics
    from .redaction import Redactor, default_redact
    from .scope import InvocationLogFilter
    from .tracing import TRACER_NAME

_HOMES = {
    "InvocationLogFilter": "scope",
    "METRICS": "metrics",
    "Redactor": "redaction",
    "TRACER_NAME": "tracing",
    "default_redact": "redaction",
    "serve_metrics": "metrics",
}
"""What an application uses, by the submodule it lives in (loaded on first use)."""


def __getattr__(name: str) -> Any:  # noqa: ANN401 - a public name of a submodule
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)


__all__ = ["InvocationLogFilter", "METRICS", "Redactor", "TRACER_NAME", "default_redact", "serve_metrics"]
