"""Durable waits on both backends: timers, awakeables, deadlines, step timeouts, budgets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from harness.session_harness import settings_for
from harness.waiting_sessions import (
    Draft,
    Nap,
    Slow,
    approval,
    greedy,
    nap,
    note,
    peek,
    slow_step,
    stuck,
    waiter,
)

from actors import Client, InvocationError, Settings, Worker


@pytest.fixture(params=["embedded", "kafka"])
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    ledger = tmp_path / "ledger.txt"
    ledger.touch()
    monkeypatch.setenv("TETHER_TEST_LEDGER", str(ledger))
    return settings_for(request, request.param, tmp_path, namespace)


def ledger_lines(settings: Settings) -> list[str]:
    return (Path(settings.data_dir) / "ledger.txt").read_text().splitlines()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_timer_that_elapses_while_no_worker_runs_fires_once_after_restart(
    settings: Settings, client: Client
) -> None:
    async with Worker([waiter], settings):
        reply = asyncio.create_task(client.call(nap, "s1", Nap(seconds=1.0, tag="t1"), timeout=60))
        # Events emitted before a wait commit with the suspension: visible while it waits.
        await eventually(lambda: _has(client, "s1", "before t1"))
        await client.send(note, "s1", Nap(seconds=0, tag="queued"))
        # Shared handlers answer while the session waits; exclusive messages queue behind it.
        seen = await client.call(peek, "s1", Nap(seconds=0, tag=""))
        assert seen.text == "before t1"
    await asyncio.sleep(1.5)  # the timer falls due while no worker runs
    assert not reply.done()
    async with Worker([waiter], settings):
        assert (await reply).text == "t1"
        await eventually(lambda: _has(client, "s1", "note queued"))
        state = await client.state("waiter", "s1")
        assert state["state"]["entries"] == ["before t1", "after t1", "note queued"]
    async with Worker([waiter], settings):  # another restart must not fire it again
        await asyncio.sleep(0.5)
        assert (await client.state("waiter", "s1"))["version"] == 3  # suspend, done, note
    assert ledger_lines(settings).count("fired s1 t1") == 1


async def _has(client: Client, key: str, entry: str) -> bool:
    state = await client.state("waiter", key)
    return entry in state["state"]["entries"]


async def _awakeable_id(settings: Settings, key: str) -> str:
    for line in ledger_lines(settings):
        if line.startswith(f"awakeable {key} "):
            return line.split(" ", 2)[2]
    return ""


async def test_approval_after_two_restarts_resumes_and_rejection_fails(settings: Settings, client: Client) -> None:
    async with Worker([waiter], settings):
        approved = asyncio.create_task(client.call(approval, "a1", Draft(text="draft"), timeout=90))
        rejected = asyncio.create_task(client.call(approval, "a2", Draft(text="draft"), timeout=90))

        async def published() -> bool:
            return bool(await _awakeable_id(settings, "a1")) and bool(await _awakeable_id(settings, "a2"))

        await eventually(published)
    for _ in range(2):
        async with Worker([waiter], settings):
            await asyncio.sleep(0.3)
    assert not approved.done() and not rejected.done()
    async with Worker([waiter], settings):
        assert await client.resolve(await _awakeable_id(settings, "a1"), "ship it")
        assert not await client.resolve(await _awakeable_id(settings, "a1"), "too late")  # first wins
        assert (await approved).text == "ship it"
        assert await client.reject(await _awakeable_id(settings, "a2"), "needs work")
        with pytest.raises(InvocationError, match="needs work"):
            await rejected


async def test_awakeable_timeout_fails_the_invocation(settings: Settings, client: Client) -> None:
    async with Worker([waiter], settings):
        with pytest.raises(InvocationError, match="timed out"):
            await client.call(approval, "a3", Draft(text="d", timeout=0.5), timeout=60)


async def test_deadline_ends_a_stuck_invocation_with_a_recorded_timeout(settings: Settings, client: Client) -> None:
    async with Worker([waiter], settings):
        with pytest.raises(InvocationError) as info:
            await client.call(stuck, "d1", Nap(seconds=30, tag="x"), timeout=60)
        assert info.value.error_type == "DeadlineExceededError"
        from actors.inspection.views import session_history

        history = await session_history(settings, "waiter", "d1")
        done = [e for e in history if e["kind"] == "done"]
        assert done and done[-1]["error"]["type"] == "DeadlineExceededError"


@pytest.mark.parametrize("mode", ["hang", "no-heartbeat"])
async def test_step_timeouts_retry_the_step(settings: Settings, client: Client, mode: str) -> None:
    async with Worker([waiter], settings):
        started = time.monotonic()
        reply = await client.call(slow_step, f"h-{mode}", Slow(mode=mode), timeout=60)
        assert reply.text == "ok after 2"
        assert time.monotonic() - started < 30  # far below the 3600 s the first attempt hangs


async def test_retry_budget_stops_a_retry_loop(settings: Settings, client: Client) -> None:
    async with Worker([waiter], settings):
        with pytest.raises(InvocationError) as info:
            await client.call(greedy, "g1", Nap(seconds=0, tag=""), timeout=60)
        assert info.value.error_type == "BudgetExceededError"
    assert ledger_lines(settings).count("greedy attempt g1") == 3  # 1 try + 2 budgeted retries


async def test_delayed_send_is_delivered_after_its_delay_even_across_a_restart(
    settings: Settings, client: Client
) -> None:
    async with Worker([waiter], settings):
        await client.send(note, "late", Nap(seconds=0, tag="hello"), delay=1.0)
        await asyncio.sleep(0.3)
        assert (await client.state("waiter", "late"))["version"] == 0
    await asyncio.sleep(1.0)
    async with Worker([waiter], settings):
        await eventually(lambda: _has(client, "late", "note hello"))
