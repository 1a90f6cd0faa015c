"""Fallbacks, circuit breakers, oversize messages and restarting an invocation from a step."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from harness import resilient_sessions as app
from harness.session_harness import settings_for

from actors import Client, InvocationError, Settings, Worker
from actors.errors import MessageTooLargeError
from actors.inspection.views import restart_invocation
from actors.runtime.circuits import Breakers
from eventstore import OutRecord, Topics, open_log, partition_for


@pytest.fixture(params=["embedded", "kafka"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, namespace: str) -> Settings:
    app.CALLS.clear()
    Breakers.reset()
    return settings_for(request, request.param, tmp_path, namespace)


async def test_fallback_after_transient_failures(settings: Settings, client: Client) -> None:
    async with Worker([app.assistant], settings):
        answer = await client.call(app.ask, "f1", app.Ask(question="why"))
    assert answer.text == "small says: why"
    assert app.CALLS == {"big": 2, "small": 1}


async def test_circuit_opens_and_fails_fast_for_other_sessions(settings: Settings, client: Client) -> None:
    async with Worker([app.assistant], settings):
        with pytest.raises(InvocationError):
            await client.call(app.guarded, "c1", app.Ask(question="q"))
        assert app.CALLS["provider"] == 2  # two failures open the breaker
        with pytest.raises(InvocationError, match="circuit 'provider' is open"):
            await client.call(app.guarded, "c2", app.Ask(question="q", primary_up=True))
        assert app.CALLS["provider"] == 2  # the open breaker did not call the provider


async def test_oversize_message_is_refused_by_the_client_and_dead_lettered_by_the_worker(
    settings: Settings, client: Client
) -> None:
    big = "x" * (settings.runtime.max_message_bytes + 10)
    with pytest.raises(MessageTooLargeError):
        await client.send(app.ask, "o1", app.Ask(question=big))
    # Another producer may still write one: the worker dead-letters it and goes on.
    topics = Topics(settings.namespace)
    log = open_log(settings)
    await log.start()
    try:
        key = b"assistant/o1"
        await log.append([OutRecord(topics.inbox, partition_for(key, 2), key, b"\x81" + big.encode()[:1_100_000])])
        async with Worker([app.assistant], settings):
            deadline = time.monotonic() + 30
            letters: list[object] = []
            while not letters:
                assert time.monotonic() < deadline
                letters = [r async for r in log.read(topics.dlq, 0)]
                await asyncio.sleep(0.1)
            assert (await client.call(app.pipeline, "o2", app.Ask(question="still"))).text.startswith("still")
        record = letters[0]
        assert record.header("tether.category") == b"oversize"  # type: ignore[attr-defined]
        assert record.value == b"\x81" + big.encode()[:1_100_000]  # type: ignore[attr-defined]
    finally:
        await log.close()


async def test_restart_from_step_reuses_earlier_steps(settings: Settings, client: Client) -> None:
    async with Worker([app.assistant], settings):
        first = await client.call(app.pipeline, "r1", app.Ask(question="q"))
        assert first.text == "q-0|q-1|q-2"
        new_id = await restart_invocation(settings, "assistant", "r1", from_step=2, payload={"question": "z"})
        deadline = time.monotonic() + 30
        while len((await client.state("assistant", "r1"))["state"]["answers"]) < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    state = await_state = None
    del state, await_state
    assert app.CALLS == {"part0": 1, "part1": 1, "part2": 2}  # steps 0-1 reused, step 2 ran again
    assert new_id.endswith(tuple("0123456789abcdef"))
