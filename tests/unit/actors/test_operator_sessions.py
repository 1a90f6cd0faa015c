"""Operators' session commands: `tether sessions list` (every session and its status, from the
log) and `tether awakeable resolve|reject` (checked against the log, recorded with who)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from harness.cli import invoke, invoke_ok
from harness.session_harness import Runtime, assert_eventually
from pydantic import BaseModel

from actors import ObjectContext, RetryPolicy, TerminalError, VirtualObject
from actors.inspection.listing import SessionSummary, list_sessions


class Count(BaseModel):
    n: int = 0


class Ask(BaseModel):
    seconds: float = 0.0


class Done(BaseModel):
    pass


RUNNING = asyncio.Event()
"""Holds the `work` handler between its journaled step and its end."""
desk = VirtualObject("desk", state=Count)
other = VirtualObject("other", state=Count)


@desk.handler()
async def quick(ctx: ObjectContext[Count], req: Ask) -> Done:
    return Done()


@desk.handler()
async def nap(ctx: ObjectContext[Count], req: Ask) -> Done:
    await ctx.sleep(req.seconds)
    return Done()


@desk.handler()
async def approve(ctx: ObjectContext[Count], req: Ask) -> Done:
    await ctx.awakeable(str).result()
    return Done()


@desk.handler(retry=RetryPolicy(max_attempts=1))
async def boom(ctx: ObjectContext[Count], req: Ask) -> Done:
    raise TerminalError("no such invoice")


@desk.handler(retry=RetryPolicy(max_attempts=1), on_failure="park")
async def strict(ctx: ObjectContext[Count], req: Ask) -> Done:
    raise TerminalError("cannot book")


@desk.handler()
async def work(ctx: ObjectContext[Count], req: Ask) -> Done:
    await ctx.run("fetch", lambda: 1, result_type=int)
    await RUNNING.wait()
    return Done()


@other.handler()
async def ping(ctx: ObjectContext[Count], req: Ask) -> Done:
    return Done()


pytestmark = pytest.mark.serves(desk, other, reset=RUNNING.clear)


async def listed(runtime: Runtime, **filters: object) -> dict[str, SessionSummary]:
    return {s.key: s for s in await list_sessions(runtime.settings, **filters)}  # type: ignore[arg-type]


async def test_each_status_as_the_log_tells_it(runtime: Runtime) -> None:
    client = runtime.client
    await client.call(quick, "idle-1", Ask())
    await client.call(ping, "other-1", Ask())
    await client.send(nap, "waiting-1", Ask(seconds=3600))
    await client.send(approve, "suspended-1", Ask())
    await client.send(boom, "failed-1", Ask())
    await client.send(strict, "parked-1", Ask())
    await client.send(work, "running-1", Ask())

    async def all_settled() -> dict[str, SessionSummary]:
        found = await listed(runtime)
        statuses = {key: s.status for key, s in found.items()}
        assert statuses == {
            "idle-1": "idle",
            "other-1": "idle",
            "waiting-1": "waiting",
            "suspended-1": "suspended",
            "failed-1": "failed",
            "parked-1": "parked",
            "running-1": "running",
        }, statuses
        return found

    found = await assert_eventually(all_settled, timeout=30)
    waiting = found["waiting-1"].wait
    assert waiting is not None and waiting.until_ms is not None
    assert waiting.until_ms > time.time() * 1000 + 3000 * 1000
    suspended = found["suspended-1"].wait
    assert suspended is not None and suspended.awakeable is not None and suspended.awakeable.startswith("awk:")
    assert found["failed-1"].last_error is not None and found["failed-1"].last_error["type"] == "TerminalError"
    assert found["running-1"].attempts == 1
    assert all(s.last_activity_ms for s in found.values())

    assert set(await listed(runtime, object_name="other")) == {"other-1"}
    assert set(await listed(runtime, statuses=["waiting", "suspended"])) == {"waiting-1", "suspended-1"}
    assert await listed(runtime, since_ms=int(time.time() * 1000) + 60_000) == {}

    RUNNING.set()  # the running invocation finishes: the session becomes idle
    await assert_eventually(lambda: _status(runtime, "running-1", "idle"), timeout=30)


async def _status(runtime: Runtime, key: str, status: str) -> None:
    found = await listed(runtime)
    assert found[key].status == status, found[key]


@pytest.mark.usefixtures("keep_logging")
async def test_the_command_lists_filters_and_prints_json(runtime: Runtime) -> None:
    await runtime.client.call(quick, "a", Ask())
    await runtime.client.send(nap, "b", Ask(seconds=3600))

    async def both() -> None:
        found = await listed(runtime)
        assert {k: s.status for k, s in found.items()} == {"a": "idle", "b": "waiting"}

    await assert_eventually(both, timeout=30)
    settings = runtime.settings
    table = await asyncio.to_thread(invoke_ok, settings, "sessions", "list")
    assert "desk" in table and "waiting" in table and "suspended invocation until" in table
    rows = [
        json.loads(line)
        for line in (await asyncio.to_thread(invoke_ok, settings, "sessions", "list", "--json")).splitlines()
    ]
    assert {(r["key"], r["status"]) for r in rows} == {("a", "idle"), ("b", "waiting")}
    waiting = next(r for r in rows if r["key"] == "b")
    assert waiting["wait"]["until"].startswith("20") and waiting["last_activity"].startswith("20")
    only = await asyncio.to_thread(invoke_ok, settings, "sessions", "list", "--status", "idle", "--json")
    assert [json.loads(line)["key"] for line in only.splitlines()] == ["a"]
    recent = await asyncio.to_thread(invoke_ok, settings, "sessions", "list", "--since", "1h", "--json")
    assert len(recent.splitlines()) == 2
    wrong = await asyncio.to_thread(invoke, settings, "sessions", "list", "--since", "yesterday-ish")
    assert wrong.exit_code == 2 and "cannot read 'yesterday-ish' as a time" in wrong.output


@pytest.mark.usefixtures("keep_logging")
async def test_awakeable_resolve_checks_the_id_and_records_who(runtime: Runtime) -> None:
    settings = runtime.settings
    await runtime.client.send(approve, "s1", Ask())

    async def suspended() -> str:
        found = await listed(runtime)
        assert "s1" in found and found["s1"].status == "suspended", found
        wait = found["s1"].wait
        assert wait is not None and wait.awakeable is not None
        return wait.awakeable

    awk = await assert_eventually(suspended, timeout=30)
    typo = awk[:-1] + ("9" if awk[-1] != "9" else "8")
    wrong = await asyncio.to_thread(invoke, settings, "awakeable", "resolve", typo, '"yes"')
    assert wrong.exit_code == 2 and "no session waits on awakeable" in wrong.output, wrong.output
    assert (await listed(runtime))["s1"].status == "suspended", "a refused typo changes nothing"

    done = await asyncio.to_thread(invoke, settings, "awakeable", "resolve", awk, '"yes"', "--timeout", "30")
    assert done.exit_code == 0 and done.output.startswith("resolved by "), done.output
    who = done.output.strip().removeprefix("resolved by ")
    await assert_eventually(lambda: _status(runtime, "s1", "idle"), timeout=30)

    again = await asyncio.to_thread(invoke, settings, "awakeable", "reject", awk, "too late")
    assert again.exit_code == 1 and f"already completed by {who}" in again.output, again.output
    history = json.loads(
        "["
        + ",".join(
            (await asyncio.to_thread(invoke_ok, settings, "sessions", "history", "desk", "s1", "--json")).splitlines()
        )
        + "]"
    )
    completions = [item for item in history if item["kind"] == "awk"]
    assert [(c["by"], c["result"]) for c in completions] == [(who, "yes")]
