"""OpenTelemetry traces: a span per invocation and per executed step, context in messages.

Tether uses the OpenTelemetry *API* only; the SDK and its exporters are the application's
choice (``opentelemetry.trace.set_tracer_provider``). Until a tracer provider is set, nothing
is created or propagated: `enabled` is one check per invocation.

The trace context of a message travels in the message itself (``tp``: a W3C ``traceparent``),
so it survives what the runtime does with messages: suspensions and timers (the message is
kept in the wait entry), delayed sends, dead letters (their value is the original record) and
their replays. A step replayed from the journal makes no span: a trace shows what ran, once.

Cost: an invocation's spans cost what the SDK charges for them and little more (measured by
``python -m bench.trace_cost``): nothing is propagated as text but the ``traceparent``, a span
that does not record gets no end attributes or error text, and a step of an invocation whose
span does not record gets no span at all (a parent-based sampler would not record it).
"""

from __future__ import annotations

import re
import traceback
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import ProxyTracerProvider, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .redaction import redact

if TYPE_CHECKING:
    from ..protocol.inbox import Message

TRACER_NAME = "tether"
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACEPARENT_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
"""The ``traceparent`` Tether writes (version 00, lowercase hex); anything else goes to the
W3C propagator, so both read every header alike (``test_trace_context.py``)."""
_tracer: trace.Tracer | None = None
_provider: object | None = None
_trace_unsampled: bool | Literal["auto"] = "auto"
_sampler_seen: object = None
"""The sampler `unsampled_parent` last judged in "auto", and its verdict."""
_sampler_drops = False


trace.get_tracer_provider()  # loads a provider named by OTEL_PYTHON_TRACER_PROVIDER, if any
_UNKNOWN = object()
_checked: object = _UNKNOWN
"""The provider `enabled` last looked at, and what it answered for it."""
_checked_enabled = False


def enabled() -> bool:
    """Whether an application set a tracer provider (until then spans would all be no-ops).

    Asked a few times per invocation: it reads the API's global first (``get_tracer_provider``
    also looks up an environment variable on every call while no provider is set), and answers
    from the last answer while that global is the same object.
    """
    global _checked, _checked_enabled
    provider = getattr(trace, "_TRACER_PROVIDER", _UNKNOWN)
    if provider is None:
        return False
    if provider is _checked:
        return _checked_enabled
    if provider is _UNKNOWN:  # an API version without that global
        provider = trace.get_tracer_provider()
        return not isinstance(provider, ProxyTracerProvider | trace.NoOpTracerProvider)
    _checked_enabled = not isinstance(provider, ProxyTracerProvider | trace.NoOpTracerProvider)
    _checked = provider
    return _checked_enabled


def trace_unsampled(on: bool | Literal["auto"]) -> None:
    """Whether an invocation under an unsampled parent gets a span (`RuntimeSettings.trace_unsampled`)."""
    global _trace_unsampled
    _trace_unsampled = on


def unsampled_parent(parent: otel_context.Context) -> bool:
    """Whether `parent` was not sampled and such parents get no span (`trace_unsampled`).

    In "auto", they get none when the provider's sampler would drop every child of an unsampled
    remote parent anyway (`drops_children_of_unsampled`), so the exported traces are the same.
    """
    if _trace_unsampled is True:
        return False
    if trace.get_current_span(parent).get_span_context().trace_flags.sampled:
        return False
    if _trace_unsampled is False:
        return True
    global _sampler_seen, _sampler_drops
    sampler = getattr(trace.get_tracer_provider(), "sampler", None)
    if sampler is not _sampler_seen:
        _sampler_seen, _sampler_drops = sampler, drops_children_of_unsampled(sampler)
    return _sampler_drops


def drops_children_of_unsampled(sampler: object) -> bool:
    """Whether `sampler` drops every span whose remote parent was not sampled.

    True for the OpenTelemetry SDK's ``ParentBased`` with its default for such parents
    (``ALWAYS_OFF``): the SDK's default sampler and every ``parentbased_*`` one of
    ``OTEL_TRACES_SAMPLER``. False for anything else (another sampler may record such spans), and
    when the SDK's attributes are not the ones read here.
    """
    try:
        from opentelemetry.sdk.trace.sampling import Decision, ParentBased, StaticSampler
    except ImportError:  # no SDK: a provider of another implementation
        return False
    if not isinstance(sampler, ParentBased):
        return False
    delegate = getattr(sampler, "_remote_parent_not_sampled", None)
    return isinstance(delegate, StaticSampler) and getattr(delegate, "_decision", None) is Decision.DROP


def tracer() -> trace.Tracer:
    """Tether's tracer from the current provider (re-fetched when the provider changes)."""
    global _tracer, _provider
    provider = trace.get_tracer_provider()
    if _tracer is None or provider is not _provider:
        _tracer = trace.get_tracer(TRACER_NAME, tracer_provider=provider)
        _provider = provider
    return _tracer


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or None (no tracing or no span).

    Formatted here from the span's context, as ``TraceContextTextMapPropagator.inject`` writes
    it (version 00, the ids in lowercase hex, the flags), without its carrier and setter.
    """
    if not enabled():
        return None
    sc = trace.get_current_span().get_span_context()
    if not sc.is_valid:
        return None
    return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{sc.trace_flags:02x}"


def parent_of(traceparent: str | None) -> otel_context.Context | None:
    """The context a ``traceparent`` names (None for None or a malformed one: a new trace)."""
    if not traceparent:
        return None
    match = _TRACEPARENT_00.fullmatch(traceparent)
    if match is not None:  # half the propagator's cost: no carrier, getter or second lookup
        trace_id, span_id = int(match[1], 16), int(match[2], 16)
        if not trace_id or not span_id:
            return None
        parent = trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(int(match[3], 16)))
        return trace.set_span_in_context(trace.NonRecordingSpan(parent))
    ctx = _PROPAGATOR.extract({"traceparent": traceparent})
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return None
    return ctx


def link_to(traceparent: str | None, attributes: dict[str, Any] | None = None) -> trace.Link | None:
    """A span link to the span a ``traceparent`` names (None for None or a malformed one)."""
    ctx = parent_of(traceparent)
    if ctx is None:
        return None
    return trace.Link(trace.get_current_span(ctx).get_span_context(), attributes)


def trace_id_of(span: Span | None) -> str | None:
    """The 32 hex digits of `span`'s trace id (None without a valid span)."""
    if span is None:
        return None
    sc = span.get_span_context()
    return format(sc.trace_id, "032x") if sc.is_valid else None


def record_error(span: Span, exc: BaseException) -> None:
    """Mark `span` failed the OpenTelemetry way, with the exception's text redacted."""
    message = redact(str(exc))
    span.record_exception(
        exc,
        attributes={
            "exception.message": message,
            "exception.stacktrace": redact("".join(traceback.format_exception(exc))),
        },
    )
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {message}"[:1024]))


class SpanScope:
    """A span made current in the running task until `end` (for spans that outlive a ``with``)."""

    __slots__ = ("span", "_token")

    def __init__(
        self,
        name: str,
        *,
        kind: SpanKind,
        attributes: dict[str, Any],
        parent: otel_context.Context | None = None,
        links: list[trace.Link] | None = None,
    ) -> None:
        self.span = tracer().start_span(name, context=parent, kind=kind, attributes=attributes, links=links)
        self._token: object | None = otel_context.attach(trace.set_span_in_context(self.span))

    @classmethod
    def adopt(cls, parent: otel_context.Context) -> SpanScope:
        """No span of its own: `parent`'s span (a remote, non-recording one) made current."""
        scope = cls.__new__(cls)
        scope.span = trace.get_current_span(parent)
        scope._token = otel_context.attach(parent)
        return scope

    def end(self, error: BaseException | None = None, attributes: dict[str, Any] | None = None) -> None:
        """Record `error` (if any) and `attributes`, end the span, restore the previous context.

        A span that is not recording (not sampled) would drop both: they are not even built.
        """
        span = self.span
        if span.is_recording():
            if attributes:
                span.set_attributes(attributes)
            if error is not None:
                record_error(span, error)
        span.end()
        if self._token is not None:
            try:
                otel_context.detach(self._token)  # type: ignore[arg-type]
            except ValueError:  # ended in another context than it started in: nothing to restore
                pass
            self._token = None


def step_span(message: Message, attempt: int, name: str, index: int) -> SpanScope | None:
    """The span of one executed step (`index`, named `name`) of `message`'s invocation.

    None when the invocation's span (the current one) does not record: a parent-based sampler
    (the SDK's default, ``parentbased_*``) would not record a child of an unsampled span, so
    asking it costs a span start and end for nothing. A sampler that does record children of
    unsampled spans gets no step spans in those traces (they would hang off an invocation span
    that is not in the trace).
    """
    current = trace.get_current_span()
    if not current.is_recording() and current.get_span_context().is_valid:
        return None
    m = message
    return SpanScope(
        f"step {name}",
        kind=SpanKind.INTERNAL,
        attributes={
            "tether.object": m.object,
            "tether.key": m.key,
            "tether.handler": m.handler,
            "tether.invocation_id": m.invocation_id,
            "tether.attempt": attempt,
            "tether.step": name,
            "tether.step_index": index,
        },
    )


class _ClientSpan:
    """`client_span`'s context manager: a class, not a generator (none is made when tracing is off)."""

    __slots__ = ("_name", "_kind", "_attributes", "_scope", "_at_end")

    def __init__(self, name: str, kind: SpanKind, attributes: dict[str, Any]) -> None:
        self._name, self._kind, self._attributes = name, kind, attributes
        self._scope: SpanScope | None = None
        self._at_end: dict[str, Any] = {}

    def __enter__(self) -> dict[str, Any]:
        if enabled():
            self._scope = SpanScope(self._name, kind=self._kind, attributes=self._attributes)
        return self._at_end

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        scope = self._scope
        if scope is not None:
            self._scope = None
            if exc is not None:
                scope.end(exc)
            else:
                scope.end(attributes=self._at_end)


def client_span(name: str, *, one_way: bool, attributes: dict[str, Any]) -> _ClientSpan:
    """A span around a client's call (CLIENT) or send (PRODUCER) while the block runs, if tracing is on.

    The block may add attributes to the dict it gets; they are recorded when it ends. An exception
    that leaves the block is recorded on the span and propagates.
    """
    return _ClientSpan(name, SpanKind.PRODUCER if one_way else SpanKind.CLIENT, attributes)
