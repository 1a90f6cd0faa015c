"""Kit semantics equal the runtime's: one scenario on the `SessionTestKit` and on a real worker on
the Kafka broker gives identical replies (and typed errors), events, states and steps.

The scenario: the README agent (a duplicate idempotency key, a step retried after a 429, a step
that fails for good), and the README's approval flow (`examples/approval_flow.py`: a 30 s durable
sleep, an awakeable resolved with "yes", a step with a fallback and a circuit). The
same `StepStubs` inject the failures in both runs (the real worker takes them as
`step_overrides`); only the clock differs (virtual in the kit, real on the broker).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from harness.examples import example
from harness.session_harness import settings_for
from pydantic import BaseModel

from actors import Client, RetryableError, Settings, TerminalError, Worker
from actors.protocol.entries import Done, Step, Suspend
from actors.testing import SessionHistory, SessionTestKit, StepStubs, read_history
from eventstore import Topics, open_log
from eventstore.errors import TetherError

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

quickstart = example("quickstart")
approval = example("approval_flow")


OBJECTS = [quickstart.agent, approval.agent]
SESSIONS = [("agent", "s1"), ("agent", "s2"), ("publisher", "p1")]


class Driver:
    """What the scenario does, on the kit or on a real worker."""

    call: Callable[..., Awaitable[Any]]
    start: Callable[..., Awaitable[Any]]
    result: Callable[[Any], Awaitable[Any]]
    resolve: Callable[[str, Any], Awaitable[Any]]
    state: Callable[[str, str], Awaitable[dict[str, Any]]]
    tick: Callable[[], Awaitable[None]]
    """Let time go on a little (virtual time on the kit, real time on the worker)."""


def outcome(reply: Any, error: BaseException | None) -> Any:
    if error is not None:
        return {"error": type(error).__name__, "message": str(error)}
    return reply.model_dump(mode="json") if isinstance(reply, BaseModel) else reply


async def scenario(d: Driver, stubs: StepStubs) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["first"] = await d.call(quickstart.ask, "s1", quickstart.Ask(question="why?"), "a1")
    out["duplicate"] = await d.call(quickstart.ask, "s1", quickstart.Ask(question="why?"), "a1")
    stubs.fail("tool:web", RetryableError("429"), times=1)
    out["retried"] = await d.call(quickstart.ask, "s2", quickstart.Ask(question="and?"), "a2")
    stubs.fail("llm:draft", TerminalError("the model refused"), times=1)
    out["failed"] = await d.call(quickstart.ask, "s2", quickstart.Ask(question="no"), "a3")
    pending = await d.start(approval.publish, "p1", approval.Draft(text="publish"), "p-1")
    deadline = time.monotonic() + 90  # the flow sleeps 30 s first (real seconds on the worker)
    while (await d.state("publisher", "p1")).get("waiting_for") is None:
        assert time.monotonic() < deadline, "the publisher never asked"
        await d.tick()
    awakeable = (await d.state("publisher", "p1"))["waiting_for"]
    await d.resolve(awakeable, "yes")
    out["approved"] = await d.result(pending)
    for name, key in SESSIONS:
        out[f"state {name}/{key}"] = await d.state(name, key)
    return out


def journal(history: SessionHistory) -> list[Any]:
    """What a session's log says happened, without times: steps, events, replies, waits."""
    seen: list[Any] = []
    for record in history.records:
        if record.topic != "events":
            continue
        entry = record.entry()
        if isinstance(entry, Step):
            # timers journal their due time: wall-clock on the broker, virtual on the kit
            timed = entry.name == "sleep" or entry.name.startswith(("awakeable-timeout", "deadline"))
            result = "<due time>" if timed else entry.result
            seen.append(("step", entry.message_id, entry.index, entry.name, entry.attempts, result, entry.error))
        elif isinstance(entry, Done):
            seen.append(
                ("done", entry.message_id, entry.handler, entry.events, entry.reply, entry.error, entry.version)
            )
        elif isinstance(entry, Suspend):
            seen.append(("wait", entry.message_id, entry.events, entry.emitted, entry.awakeable is not None))
        else:
            seen.append((entry.kind, entry.message_id))
    return seen


async def on_kit(data_dir: Path) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    async with SessionTestKit(OBJECTS, partitions=2, data_dir=data_dir) as kit:
        d = Driver()

        async def call(handler: Any, key: str, payload: BaseModel, mid: str) -> Any:
            result = await kit.call(handler, key, payload, idempotency_key=mid)
            return outcome(result.reply, result.error)

        async def state(name: str, key: str) -> dict[str, Any]:
            return kit.state(name, key).model_dump(mode="json")

        async def result(pending: Any) -> Any:
            done = await pending.result()
            return outcome(done.reply, done.error)

        d.call = call
        d.start = lambda h, k, p, mid: kit.start(h, k, p, idempotency_key=mid)
        d.result = result
        d.resolve = kit.resolve
        d.state = state
        d.tick = lambda: kit.advance(seconds=1.0)
        out = await scenario(d, kit.stubs)
        journals = {f"{n}/{k}": journal(SessionHistory.from_json(await kit.history(n, k))) for n, k in SESSIONS}
    return out, journals


async def on_worker(settings: Settings) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    stubs = StepStubs()
    async with Worker(OBJECTS, settings, step_overrides=stubs), Client.connect(settings) as client:
        d = Driver()

        async def call(handler: Any, key: str, payload: BaseModel, mid: str) -> Any:
            try:
                return outcome(await client.call(handler, key, payload, idempotency_key=mid, timeout=60), None)
            except TetherError as exc:
                return outcome(None, exc)

        async def start(handler: Any, key: str, payload: BaseModel, mid: str) -> Any:
            return asyncio.ensure_future(call(handler, key, payload, mid))

        async def result(pending: Any) -> Any:
            return await pending

        async def state(name: str, key: str) -> dict[str, Any]:
            return (await client.state(name, key))["state"]  # type: ignore[no-any-return]

        async def resolve(awakeable: str, value: Any) -> Any:
            return await client.resolve(awakeable, value)

        d.call, d.start, d.result, d.resolve, d.state = call, start, result, resolve, state
        d.tick = lambda: asyncio.sleep(0.2)
        out = await scenario(d, stubs)
    log = open_log(settings)
    await log.start()
    try:
        topics = Topics(settings.namespace)
        journals = {f"{n}/{k}": journal(await read_history(log, topics, n, k)) for n, k in SESSIONS}
    finally:
        await log.close()
    return out, journals


async def test_the_kit_and_a_real_worker_on_kafka_agree(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> None:
    kit_out, kit_journals = await on_kit(tmp_path / "kit")
    real_out, real_journals = await on_worker(settings_for(request, "kafka", tmp_path / "real", namespace))
    assert kit_out == real_out
    assert kit_journals == real_journals
    # the scenario did what it says
    assert kit_out["duplicate"] == kit_out["first"]
    assert kit_out["failed"]["error"] == "InvocationError"
    assert kit_out["approved"] == {"text": "polished: publish"}
    assert [e[4] for e in kit_journals["agent/s2"] if e[0] == "step" and e[3] == "tool:web"] == [2]
