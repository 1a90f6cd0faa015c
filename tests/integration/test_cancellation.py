"""Operators' cancellations on both backends: an invocation that has journaled nothing yet
(`tether sessions cancel` by session key), and a saga as a whole (`tether saga cancel`),
between steps and while a step runs: the completed steps are compensated in reverse, once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from harness.cancel_sessions import EFFECTS, GATES, HOOKS, STEPS, Empty, Trip, begin, coordinator, desk, reset, trip
from harness.cli import invoke
from harness.session_harness import Runtime, assert_eventually, open_runtime, settings_for

from actors import InvocationError
from actors.inspection.listing import list_sessions
from actors.protocol import Message
from sagas import CancelRequest, SagaClient, SagaNotFoundError, find_saga


def _last_json(output: str) -> Any:
    """The command's JSON document (the in-process worker's log lines may come first)."""
    start = output.find("\n{") + 1 if not output.startswith("{") else 0
    return json.loads(output[start:])


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path, namespace: str) -> AsyncIterator[Runtime]:
    reset()
    settings = settings_for(request, request.param, tmp_path, namespace, partitions=2)
    async with open_runtime([desk, coordinator], settings) as rt:
        yield rt


async def test_cancel_an_invocation_that_journaled_nothing(runtime: Runtime) -> None:
    call = asyncio.create_task(runtime.client.call(begin, "k1", Empty(), timeout=60))
    await asyncio.wait_for(GATES.entered.wait(), 30)
    assert [s.key for s in await list_sessions(runtime.settings)] == [], "the log shows nothing of it yet"
    out = await asyncio.to_thread(
        invoke, runtime.settings, "sessions", "cancel", "canceldesk", "k1", "--reason", "wrong user", "--json"
    )
    assert out.exit_code == 0, out.output
    said = _last_json(out.output)
    assert said["cancelled"] is True
    GATES.release.set()
    with pytest.raises(InvocationError) as caught:
        await call
    assert caught.value.error_type == "InvocationCancelledError" and "wrong user" in str(caught.value)
    assert STEPS == [], "its first step never ran"
    [summary] = await list_sessions(runtime.settings)
    assert summary.status == "failed" and summary.last_error is not None
    assert said["by"] in summary.last_error["message"], "who cancelled it is in the history"


async def _cancel_and_settle(runtime: Runtime, saga_id: str) -> None:
    outcome = await SagaClient(runtime.client).handle(trip, saga_id).result(timeout=60)
    assert outcome.status == "cancelled", outcome
    assert outcome.cancelled is not None and outcome.cancelled.reason == "customer left"


async def test_cancel_a_saga_between_steps(runtime: Runtime) -> None:
    client = runtime.client

    async def cancel_now() -> None:  # inside a's action: durable before the next advance
        await client.send(trip.cancel, "s1", CancelRequest(by="ops@test", reason="customer left"))

    HOOKS["a"] = cancel_now
    await SagaClient(client).start(trip, "s1", Trip())
    await _cancel_and_settle(runtime, "s1")
    assert EFFECTS == ["a:action", "a:compensation"], "b never started; a was undone once"
    record = await find_saga(runtime.settings, "s1")
    assert [s.status for s in record.state.steps] == ["compensated", "pending", "pending"]
    shown = await asyncio.to_thread(invoke, runtime.settings, "saga", "show", "s1")
    assert shown.exit_code == 0 and "cancelled" in shown.output and "ops@test" in shown.output, shown.output


async def test_cancel_a_saga_while_a_step_runs(runtime: Runtime) -> None:
    client = runtime.client
    held = asyncio.Event()

    async def hold() -> None:
        held.set()
        await GATES.release.wait()

    HOOKS["b"] = hold
    await SagaClient(client).start(trip, "s2", Trip())
    await asyncio.wait_for(held.wait(), 30)
    cancelling = asyncio.create_task(
        asyncio.to_thread(
            invoke, runtime.settings, "saga", "cancel", "s2", "--reason", "customer left", "--json", "--timeout", "60"
        )
    )

    async def cancel_queued() -> None:  # durable behind the running step, which it waits for
        messages = [Message.decode(r.value) for r in await runtime.records(runtime.topics.inbox)]
        assert any(m.handler == "cancel" and m.key == "s2" for m in messages)

    await assert_eventually(cancel_queued, timeout=60)
    assert not cancelling.done()
    GATES.release.set()
    out = await cancelling
    assert out.exit_code == 0, out.output
    said = _last_json(out.output)
    assert said["cancelled"] is True and "compensating b, a" in said["message"], said
    await _cancel_and_settle(runtime, "s2")
    assert EFFECTS == ["a:action", "b:action", "b:compensation", "a:compensation"], EFFECTS
    again = await asyncio.to_thread(invoke, runtime.settings, "saga", "cancel", "s2", "--json")
    assert again.exit_code == 1 and "cancelled before" in _last_json(again.output)["message"], again.output
    listed = await asyncio.to_thread(invoke, runtime.settings, "saga", "list", "--status", "cancelled", "--json")
    assert [item["saga_id"] for item in _last_json(listed.output)["items"]] == ["s2"], listed.output


async def test_cancel_a_saga_that_waits_to_retry_a_step(runtime: Runtime) -> None:
    client = runtime.client
    attempts: list[str] = []

    async def fail_once() -> None:
        attempts.append("b")
        if len(attempts) == 1:
            raise RuntimeError("provider down")

    HOOKS["b"] = fail_once
    await SagaClient(client).start(trip, "s3", Trip())

    async def waiting() -> None:
        try:
            record = await find_saga(runtime.settings, "s3")
        except SagaNotFoundError:
            raise AssertionError("not in the log yet") from None
        assert record.waiting, "b's retry waits on a durable timer"

    await assert_eventually(waiting, timeout=30)
    result = await SagaClient(client).cancel("canceltrip", "s3", "customer left", by="ops@test", timeout=30)
    assert result.cancelled, result
    await _cancel_and_settle(runtime, "s3")
    assert attempts == ["b"], "the retry it waited for never started"
    assert EFFECTS == ["a:action", "a:compensation"], EFFECTS
    record = await find_saga(runtime.settings, "s3")
    assert [s.status for s in record.state.steps] == ["compensated", "pending", "pending"]
