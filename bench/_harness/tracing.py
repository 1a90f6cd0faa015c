"""Tracing as a deployment would run it, for measuring its cost: the OpenTelemetry SDK with a
batch span processor, whose exporter counts spans and drops them (where they go is the user's
choice and cost; making them is Tether's).

The bench process changes its sampling between runs with a sampler switch (`set_sampling`),
because OpenTelemetry's global provider can be set only once per process; worker subprocesses
install it at import when ``TETHER_BENCH_TRACING`` is set (see ``bench.tether_apps``).
"""

from __future__ import annotations

import atexit
import sys
from collections.abc import Sequence
from typing import Any

TRACING_ENV = "TETHER_BENCH_TRACING"
"""Set (to 1) in a worker's environment: that worker records spans."""


class _Switch:
    """The root sampler: this share of new traces (the provider wraps it in ``ParentBased``)."""

    def __init__(self) -> None:
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

        self.ratio = 1.0
        self._on, self._off = ALWAYS_ON, ALWAYS_OFF
        self._ratios: dict[float, Any] = {}
        """One ``TraceIdRatioBased(ratio)`` per ratio, built once (not per span: the bench's own
        cost would count as Tether's; so are the imports, ~1 us each)."""

    def should_sample(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - the SDK's SamplingResult
        if self.ratio >= 1.0:
            return self._on.should_sample(*args, **kwargs)
        if self.ratio <= 0.0:
            return self._off.should_sample(*args, **kwargs)
        sampler = self._ratios.get(self.ratio)
        if sampler is None:
            from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

            sampler = self._ratios[self.ratio] = TraceIdRatioBased(self.ratio)
        return sampler.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return f"BenchSwitch({self.ratio})"


class _CountingExporter:
    """Counts the spans handed over and keeps none."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[Any]) -> Any:  # noqa: ANN401 - the SDK's SpanExportResult
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


_switch: _Switch | None = None
_exporter: _CountingExporter | None = None
_processor: Any = None
_provider: Any = None


def install(*, report_at_exit: bool = False) -> None:
    """Make this process record spans with the SDK: every new trace, and every span whose
    parent was sampled (once; later calls change nothing)."""
    global _switch, _exporter, _processor, _provider
    if _switch is not None:
        return
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased

    _switch, _exporter = _Switch(), _CountingExporter()
    # As OTEL_TRACES_SAMPLER=parentbased_traceidratio samples: a child follows its parent.
    sampler = ParentBased(_switch)  # type: ignore[arg-type]
    provider = TracerProvider(sampler=sampler, resource=Resource.create({"service.name": "tether-bench"}))
    _processor = BatchSpanProcessor(_exporter)  # type: ignore[arg-type]
    provider.add_span_processor(_processor)
    trace.set_tracer_provider(provider)
    _provider = provider
    if report_at_exit:
        atexit.register(lambda: print(f"bench tracing: {spans_exported()} spans exported", file=sys.stderr))


def provider() -> Any:  # noqa: ANN401 - the SDK's TracerProvider
    """The provider `install` set (None before)."""
    return _provider


def set_sampling(ratio: float) -> None:
    """After `install`: sample this share of new traces (0: none, every span non-recording)."""
    if _switch is not None:
        _switch.ratio = ratio


def spans_exported() -> int:
    """Spans this process has exported so far (flushed first)."""
    if _processor is not None:
        _processor.force_flush()
    return _exporter.spans if _exporter is not None else 0


__all__ = ["TRACING_ENV", "install", "provider", "set_sampling", "spans_exported"]
