"""`tracing.current_traceparent` writes what the W3C propagator writes; unsampled spans stay bare."""

from __future__ import annotations

from typing import Any

import pytest
from harness.spans import in_memory_spans
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util._once import Once
from pydantic import ValidationError

from actors.observability import tracing
from actors.observability.scope import InvocationScope
from actors.protocol.inbox import Message

SAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
NOT_SAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"


def _propagated() -> str | None:
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def test_the_traceparent_is_the_propagators_for_a_root_a_sampled_and_an_unsampled_parent() -> None:
    with in_memory_spans():
        assert tracing.current_traceparent() is None  # no current span
        tracer = tracing.tracer()
        for parent in (None, tracing.parent_of(SAMPLED), tracing.parent_of(NOT_SAMPLED)):
            with tracer.start_as_current_span("s", context=parent):
                written = tracing.current_traceparent()
                assert written is not None and written == _propagated()
                assert tracing.parent_of(written) is not None
    assert tracing.current_traceparent() is None  # no provider: nothing is propagated


HEADERS = (
    SAMPLED,
    NOT_SAMPLED,
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03",  # flags beyond sampled
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper case: the propagator's call
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future",  # a later version
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # the forbidden version
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # version 00 with more
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa_ba902b7-01",  # not hex
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
    "garbage",
)


def test_a_parent_is_read_as_the_w3c_propagator_reads_it() -> None:
    """`parent_of` parses Tether's own form itself (it is cheaper): every header, well formed or
    not, names the same parent (or none) as the propagator's."""
    for header in HEADERS:
        ctx = tracing.parent_of(header)
        ours = trace.get_current_span(ctx).get_span_context() if ctx is not None else None
        theirs = trace.get_current_span(TraceContextTextMapPropagator().extract({"traceparent": header}))
        expected = theirs.get_span_context() if theirs.get_span_context().is_valid else None
        assert ours == expected, header
        if ours is not None:
            assert (ours.is_remote, ours.trace_flags, ours.trace_state) == (
                expected.is_remote,  # type: ignore[union-attr]
                expected.trace_flags,  # type: ignore[union-attr]
                expected.trace_state,  # type: ignore[union-attr]
            ), header
    assert tracing.parent_of(None) is None and tracing.parent_of("") is None


def _message(tp: str | None) -> Message:
    return Message(id="m1", o="Counter", k="k1", h="add", p={}, ts=0, tp=tp)


def test_an_invocation_whose_span_is_not_sampled_exports_nothing_and_passes_its_context_on() -> None:
    with in_memory_spans() as spans:
        with InvocationScope("ns", _message(NOT_SAMPLED), object_label="Counter", handler_label="add") as scope:
            scope.error = ValueError("boom")
            sent = tracing.current_traceparent()
        assert spans.get_finished_spans() == ()
    assert sent is not None and sent.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-") and sent.endswith("-00")


def test_enabled_follows_the_provider_as_it_is_set_and_removed() -> None:
    assert not tracing.enabled()
    with in_memory_spans():
        assert tracing.enabled()
    assert not tracing.enabled()
    off = TracerProvider(sampler=ALWAYS_OFF)
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace.set_tracer_provider(off)
    try:
        assert tracing.enabled()
    finally:
        trace._TRACER_PROVIDER = None
        trace._TRACER_PROVIDER_SET_ONCE = Once()
    assert not tracing.enabled()


def test_a_step_gets_a_span_under_a_recording_invocation_and_none_under_an_unsampled_one() -> None:
    with in_memory_spans() as spans:
        for tp in (SAMPLED, NOT_SAMPLED):
            message = _message(tp)
            with InvocationScope("ns", message, object_label="Counter", handler_label="add"):
                step = tracing.step_span(message, 1, "work", 0)
                if step is not None:
                    step.end(attributes={"tether.attempts": 1, "tether.cost": 0.0})
            assert (step is None) == (tp == NOT_SAMPLED)
        step_span, invocation_span = spans.get_finished_spans()
    assert step_span.name == "step work" and step_span.parent is not None
    assert step_span.parent.span_id == invocation_span.context.span_id
    assert dict(step_span.attributes or {}) == {
        "tether.object": "Counter",
        "tether.key": "k1",
        "tether.handler": "add",
        "tether.invocation_id": message.invocation_id,
        "tether.attempt": 1,
        "tether.step": "work",
        "tether.step_index": 0,
        "tether.attempts": 1,
        "tether.cost": 0.0,
    }


def test_without_trace_unsampled_an_unsampled_invocation_runs_in_its_senders_context() -> None:
    """`RuntimeSettings.trace_unsampled = False`: no span under an unsampled parent, the sender's
    context passed on as it came; a sampled parent still gets its span."""
    with in_memory_spans() as spans:
        for on in (True, False):
            tracing.trace_unsampled(on)
            try:
                with InvocationScope("ns", _message(NOT_SAMPLED), object_label="Counter", handler_label="add") as scope:
                    sent = tracing.current_traceparent()
                    assert tracing.step_span(scope.message, 1, "work", 0) is None
                    assert scope.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
                with InvocationScope("ns", _message(SAMPLED), object_label="Counter", handler_label="add"):
                    sampled = tracing.current_traceparent()
            finally:
                tracing.trace_unsampled("auto")
            assert (sent == NOT_SAMPLED) is (not on), "a span of its own gets a new span id"
            assert sampled is not None and sampled != SAMPLED and sampled.endswith("-01")
            assert tracing.current_traceparent() is None, "the sender's context is not left behind"
        assert [s.name for s in spans.get_finished_spans()] == ["Counter.add", "Counter.add"], "the sampled ones"


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from actors.settings import Settings

    monkeypatch.delenv("TETHER_RUNTIME__TRACE_UNSAMPLED", raising=False)
    assert Settings().runtime.trace_unsampled == "auto"
    for text, value in (("false", False), ("true", True), ("auto", "auto")):
        monkeypatch.setenv("TETHER_RUNTIME__TRACE_UNSAMPLED", text)
        assert Settings().runtime.trace_unsampled == value and type(Settings().runtime.trace_unsampled) is type(value)
    monkeypatch.setenv("TETHER_RUNTIME__TRACE_UNSAMPLED", "sometimes")
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    ("sampler", "drops"),
    [
        (None, True),  # the SDK's default: ParentBased(ALWAYS_ON)
        (ParentBased(TraceIdRatioBased(0.1)), True),  # OTEL_TRACES_SAMPLER=parentbased_traceidratio
        (ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON), False),
        (ALWAYS_ON, False),
    ],
)
def test_auto_leaves_out_the_span_only_where_the_sampler_would_drop_it(sampler: Any, drops: bool) -> None:
    """ "auto": no span under an unsampled parent exactly when the sampler drops such spans anyway."""
    assert tracing._trace_unsampled == "auto", "the default"
    with in_memory_spans(sampler) as spans:
        with InvocationScope("ns", _message(NOT_SAMPLED), object_label="Counter", handler_label="add"):
            sent = tracing.current_traceparent()
        assert (sent == NOT_SAMPLED) is drops, "no span of its own: the sender's traceparent passes on"
        recorded = [s.name for s in spans.get_finished_spans()]
    assert recorded == ([] if drops else ["Counter.add"]), "a sampler that records such spans still gets them"
