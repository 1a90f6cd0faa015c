"""OpenTelemetry traces: one connected trace across sessions and a saga; replay makes no second span.

The test process installs an SDK tracer provider with an in-memory exporter (and removes it at
the end, so other tests run untraced). Worker subprocesses export to a JSON-lines file as each
span ends (`observed_sessions.FileSpanExporter`), so a worker killed with SIGKILL keeps the
spans it finished before the kill.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import observed_sessions as obs
from harness.session_harness import (
    WorkerProcess,
    assert_eventually,
    make_settings,
    open_runtime,
    settings_for,
    worker_env,
)
from harness.spans import in_memory_spans
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from actors import Client, RuntimeSettings
from actors.messages import Message
from sagas import SagaClient

BOTH = pytest.mark.parametrize("backend", ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """An SDK provider with an in-memory exporter for this test only."""
    with in_memory_spans() as exporter:
        yield exporter


def _hex(span: ReadableSpan) -> tuple[str, str, str | None]:
    ctx = span.get_span_context()
    assert ctx is not None
    parent = format(span.parent.span_id, "016x") if span.parent is not None else None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"), parent


@BOTH
async def test_a_call_through_two_sessions_and_a_saga_is_one_connected_trace(
    request: pytest.FixtureRequest, backend: str, namespace: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    settings = settings_for(request, backend, tmp_path, namespace, partitions=2)
    async with open_runtime([obs.front, obs.back, obs.trip_coordinator], settings) as rt:
        answer = await rt.client.call(obs.hop, "k1", obs.Note(text="rome"), timeout=60)
        assert answer.text == "pong rome"
        outcome = await SagaClient(rt.client).handle(obs.trip, "trip-k1").result(timeout=60)
        assert outcome.ok

        def finished() -> list[ReadableSpan]:
            found = list(spans.get_finished_spans())
            names = [s.name for s in found]
            assert "saga.trip.advance" in names and names.count("step train:action") == 1, names
            return found

        found = await assert_eventually(finished)
    root = [s for s in found if s.name == "call front.hop"]
    assert len(root) == 1 and root[0].parent is None
    trace_id = _hex(root[0])[0]
    # The test's own polling of the saga's status (`handle.result`) is a trace of its own.
    found = [s for s in found if _hex(s)[0] == trace_id]
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in found:
        by_name.setdefault(span.name, []).append(span)
    expected = [
        "front.hop",
        "step call back.ping",
        "call back.ping",
        "back.ping",
        "step echo",
        "saga.trip.start",
        "saga.trip.advance",
        "step hotel:action",
        "step train:action",
    ]
    for name in expected:
        assert name in by_name, f"no span {name!r} in {sorted(by_name)}"
    ids = {_hex(s)[1] for s in found}
    for span in found:
        parent = _hex(span)[2]
        assert span is root[0] or parent in ids, f"{span.name}'s parent is not in the trace"
    # The parents are the causal ones: the caller's step, the call, the invocation.
    parent_name = {_hex(s)[1]: s.name for s in found}

    def parent_of(name: str) -> str:
        parent = _hex(by_name[name][0])[2]
        assert parent is not None
        return parent_name[parent]

    assert parent_of("front.hop") == "call front.hop"
    assert parent_of("step call back.ping") == "front.hop"
    assert parent_of("call back.ping") == "step call back.ping"
    assert parent_of("back.ping") == "call back.ping"
    assert parent_of("saga.trip.start") == "front.hop"
    inv = by_name["back.ping"][0]
    assert inv.attributes is not None
    assert inv.attributes["tether.object"] == "back" and inv.attributes["tether.key"] == "b-k1"
    assert inv.attributes["tether.handler"] == "ping" and inv.attributes["tether.attempt"] == 1


async def test_a_failed_invocation_records_its_error_redacted(
    tmp_path: Path, namespace: str, spans: InMemorySpanExporter
) -> None:
    settings = make_settings("embedded", tmp_path, namespace)
    async with open_runtime([obs.leaky], settings) as rt:
        with pytest.raises(Exception, match="failed"):
            await rt.client.call(obs.fail, "x", obs.Note(), timeout=30)

        def failed() -> ReadableSpan:
            found = [s for s in spans.get_finished_spans() if s.name == "leaky.fail"]
            assert len(found) == 1
            return found[0]

        span = await assert_eventually(failed)
    assert span.status.status_code == trace.StatusCode.ERROR
    events = [e for e in span.events if e.name == "exception"]
    assert len(events) == 1 and events[0].attributes is not None
    assert events[0].attributes["exception.type"].endswith("TerminalError")
    text = json.dumps([dict(e.attributes or {}) for e in span.events]) + (span.status.description or "")
    assert obs.SECRET not in text and "***" in text


def _read_spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@BOTH
async def test_a_kill_between_steps_2_and_3_gives_one_execution_span_per_step(
    request: pytest.FixtureRequest, backend: str, namespace: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    settings = settings_for(
        request, backend, tmp_path / "data", namespace, partitions=2, runtime=RuntimeSettings(checkpoint_every=4)
    )
    span_file, steps_log, gate = tmp_path / "spans.jsonl", tmp_path / "steps.log", tmp_path / "gate"
    env = worker_env(
        settings, TETHER_TEST_SPANS=str(span_file), TETHER_TEST_STEPS_LOG=str(steps_log), TETHER_TEST_GATE=str(gate)
    )
    worker = WorkerProcess("harness.observed_sessions:objects", env, tmp_path)
    worker.start()
    try:
        async with Client.connect(settings) as client:
            call = asyncio.create_task(client.call(obs.run, "k1", obs.Note(), timeout=120))

            def third_started() -> None:
                assert steps_log.exists() and "s3-started" in steps_log.read_text()

            await assert_eventually(third_started, timeout=60)
            first_pid = worker.kill_and_restart(meanwhile=gate.touch)
            answer = await call
            assert answer.text == "s1,s2,s3,s4,s5"
            client_spans = [s for s in spans.get_finished_spans() if s.name == "call five.run"]
        assert len(client_spans) == 1
        trace_id = _hex(client_spans[0])[0]
        executed = [line.split() for line in steps_log.read_text().splitlines()]
        assert [name for name, _ in executed] == ["s1", "s2", "s3-started", "s3-started", "s3", "s4", "s5"]

        def exported() -> list[dict[str, Any]]:
            found = _read_spans(span_file)
            assert len([s for s in found if s["name"] == "five.run"]) == 1, [s["name"] for s in found]
            return found

        found = await assert_eventually(exported)
        steps = [s for s in found if s["name"].startswith("step s")]
        assert sorted(s["name"] for s in steps) == ["step s1", "step s2", "step s3", "step s4", "step s5"]
        pids = {s["name"]: s["pid"] for s in steps}
        assert pids["step s1"] == pids["step s2"] == first_pid
        assert pids["step s3"] == pids["step s4"] == pids["step s5"] == worker.pid != first_pid
        invocation = next(s for s in found if s["name"] == "five.run")
        assert {s["trace_id"] for s in found} == {trace_id}, "a worker's spans left the caller's trace"
        assert all(s["parent_id"] == invocation["span_id"] for s in steps if s["pid"] == worker.pid)
        assert all(s["attributes"]["tether.step"] == s["name"][5:] for s in steps)
    finally:
        worker.cleanup()


def test_an_untraced_message_has_no_trace_context() -> None:
    message = Message(id="m", o="a", k="k", h="h", p=None, ts=1)
    assert message.trace_parent is None and "tp" not in message.to_wire()


@BOTH
async def test_a_resumed_invocation_links_to_the_span_that_resolved_its_awakeable(
    request: pytest.FixtureRequest, backend: str, namespace: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    """The resolver's trace leads to the run it resumed: that run's span links to the resolve call."""
    from harness import waiting_sessions as waits

    settings = settings_for(request, backend, tmp_path, namespace, partitions=1)
    async with open_runtime([waits.waiter], settings) as rt:
        call = asyncio.create_task(
            rt.client.call(waits.approval, "w1", waits.Draft(text="d"), timeout=60, idempotency_key="m-1")
        )
        waits_on: list[str] = []

        async def waiting() -> None:
            processor = (await rt.processors())[0]
            waits_on[:] = [w.awakeable for w in processor.waits.suspended.values() if w.awakeable]
            assert waits_on, "suspended on its awakeable"

        await assert_eventually(waiting)
        (awakeable,) = waits_on
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("operator approves") as approving:
            assert await rt.client.resolve(awakeable, "ship it")
        assert (await call).text == "ship it"
    resolver_trace = approving.get_span_context().trace_id
    runs = [s for s in spans.get_finished_spans() if s.name == "waiter.approval"]
    assert len(runs) == 2, [s.name for s in spans.get_finished_spans()]  # suspended, then resumed
    first, resumed = sorted(runs, key=lambda s: s.start_time or 0)
    assert not first.links
    assert [link.context.trace_id for link in resumed.links] == [resolver_trace]
    assert resumed.context is not None and resumed.context.trace_id != resolver_trace, "its own trace, linked"
