"""`tracing.client_span`: a span around the block, its error recorded, attributes set at the end."""

from __future__ import annotations

import pytest
from harness.spans import in_memory_spans
from opentelemetry import trace

from actors.observability import tracing


def test_a_block_that_succeeds_ends_its_span_with_the_attributes_it_added() -> None:
    with in_memory_spans() as spans:
        with tracing.client_span("send a.b", one_way=True, attributes={"tether.object": "a"}) as at_end:
            at_end["tether.message_id"] = "m1"
        (span,) = spans.get_finished_spans()
    assert span.name == "send a.b" and span.kind == trace.SpanKind.PRODUCER
    assert dict(span.attributes or {}) == {"tether.object": "a", "tether.message_id": "m1"}
    assert span.status.status_code == trace.StatusCode.UNSET


def test_a_block_that_raises_records_the_error_and_re_raises_it() -> None:
    with in_memory_spans() as spans:
        with pytest.raises(ValueError, match="no such key"):
            with tracing.client_span("call a.b", one_way=False, attributes={}) as at_end:
                at_end["tether.message_id"] = "never recorded"
                raise ValueError("no such key")
        (span,) = spans.get_finished_spans()
    assert span.kind == trace.SpanKind.CLIENT
    assert span.status.status_code == trace.StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]
    assert "tether.message_id" not in (span.attributes or {})


def test_without_a_tracer_provider_the_block_runs_and_nothing_is_traced() -> None:
    assert not tracing.enabled()
    with tracing.client_span("send a.b", one_way=True, attributes={}) as at_end:
        at_end["x"] = 1
    assert at_end == {"x": 1}
