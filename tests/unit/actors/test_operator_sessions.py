"""Operators' session commands: `tether sessions list` (every session and its status, from the
log) and `tether awakeable resolve|reject` (checked against the log, recorded with who)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from harness.cli import invoke, invoke_ok
from harness.session_harness import Runtime, assert_eventually
from pydantic import BaseModel

from actors import InvocationError, ObjectContext, RetryPolicy, TerminalError, VirtualObject
from actors.inspection.listing import SessionSummary, list_sessions


class NoState(BaseModel):
    """These sessions keep nothing: the tests look at their statuses, never at their state."""


class Ask(BaseModel):
    seconds: float = 0.0


class Done(BaseModel):
    pass


class Gate:
    """Holds `work` and `chores` between their steps; a new event for each test's loop."""

    event: asyncio.Event | None = None

    async def wait(self) -> None:
        assert self.event is not None
        await self.event.wait()

    def set(self) -> None:
        assert self.event is not None
        self.event.set()


RUNNING = Gate()
desk = VirtualObject("desk", state=NoState)
other = VirtualObject("other", state=NoState)


@desk.handler()
async def quick(ctx: ObjectContext[NoState], req: Ask) -> Done:
    return Done()


@desk.handler()
async def nap(ctx: ObjectContext[NoState], req: Ask) -> Done:
    await ctx.sleep(req.seconds)
    return Done()


@desk.handler()
async def approve(ctx: ObjectContext[NoState], req: Ask) -> Done:
    await ctx.awakeable(str).result()
    return Done()


@desk.handler(retry=RetryPolicy(max_attempts=1))
async def boom(ctx: ObjectContext[NoState], req: Ask) -> Done:
    raise TerminalError("no such invoice")


@desk.handler(retry=RetryPolicy(max_attempts=1), on_failure="park")
async def strict(ctx: ObjectContext[NoState], req: Ask) -> Done:
    raise TerminalError("cannot book")


@desk.handler()
async def work(ctx: ObjectContext[NoState], req: Ask) -> Done:
    await ctx.run("fetch", lambda: 1, result_type=int)
    await RUNNING.wait()
    return Done()


STEPS: list[str] = []
"""Steps that really ran (not replayed) in `chores`."""


@desk.handler()
async def chores(ctx: ObjectContext[NoState], req: Ask) -> Done:
    await ctx.run("first", lambda: STEPS.append("first"))
    await RUNNING.wait()
    await ctx.run("second", lambda: STEPS.append("second"))
    return Done()


ENTERED = Gate()
"""Set by `begin` once it runs: it has journaled nothing, so the log does not show it."""


@desk.handler()
async def begin(ctx: ObjectContext[NoState], req: Ask) -> Done:
    ENTERED.set()
    await RUNNING.wait()
    await ctx.run("after", lambda: STEPS.append("after"))
    return Done()


@other.handler()
async def ping(ctx: ObjectContext[NoState], req: Ask) -> Done:
    return Done()


def reset() -> None:
    RUNNING.event = asyncio.Event()
    ENTERED.event = asyncio.Event()
    STEPS.clear()


pytestmark = pytest.mark.serves(desk, other, reset=reset)


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
    rows: list[dict[str, Any]] = _items(await asyncio.to_thread(invoke_ok, settings, "sessions", "list", "--json"))
    assert {(r["key"], r["status"]) for r in rows} == {("a", "idle"), ("b", "waiting")}
    waiting = next(r for r in rows if r["key"] == "b")
    assert waiting["wait"]["until"].startswith("20") and waiting["last_activity"].startswith("20")
    only = await asyncio.to_thread(invoke_ok, settings, "sessions", "list", "--status", "idle", "--json")
    assert [item["key"] for item in _items(only)] == ["a"]
    recent = await asyncio.to_thread(invoke_ok, settings, "sessions", "list", "--since", "1h", "--json")
    assert len(_items(recent)) == 2
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
    history = _items(await asyncio.to_thread(invoke_ok, settings, "sessions", "history", "desk", "s1", "--json"))
    completions = [item for item in history if item["kind"] == "awk"]
    assert [(c["by"], c["result"]) for c in completions] == [(who, "yes")]


@pytest.mark.usefixtures("keep_logging")
async def test_cancel_ends_a_waiting_or_running_invocation_for_its_caller(runtime: Runtime) -> None:
    settings = runtime.settings
    client = runtime.client
    sleeping = asyncio.create_task(client.call(nap, "nap-1", Ask(seconds=3600), timeout=60))
    approving = asyncio.create_task(client.call(approve, "appr-1", Ask(), timeout=60))
    busy = asyncio.create_task(client.call(chores, "busy-1", Ask(), timeout=60))

    async def all_open() -> None:
        found = await listed(runtime)
        assert {k: found[k].status for k in ("nap-1", "appr-1", "busy-1") if k in found} == {
            "nap-1": "waiting",
            "appr-1": "suspended",
            "busy-1": "running",
        }

    await assert_eventually(all_open, timeout=30)
    for key in ("nap-1", "appr-1", "busy-1"):
        out = await asyncio.to_thread(invoke, settings, "sessions", "cancel", "desk", key, "--reason", "wrong customer")
        assert out.exit_code == 0 and "cancelled invocation" in out.output and "wrong customer" in out.output, (
            out.output
        )
    for task in (sleeping, approving):
        with pytest.raises(InvocationError) as caught:
            await task
        assert caught.value.error_type == "InvocationCancelledError" and "wrong customer" in str(caught.value)
    RUNNING.set()  # the running one goes on to its next step, where the cancellation ends it
    with pytest.raises(InvocationError) as caught:
        await busy
    assert caught.value.error_type == "InvocationCancelledError"
    assert STEPS == ["first"], "the journaled step is not run again and the next one never runs"

    found = await listed(runtime)
    assert {found[k].status for k in ("nap-1", "appr-1", "busy-1")} == {"failed"}
    assert found["nap-1"].last_error is not None and "by " in found["nap-1"].last_error["message"]
    letters = json.loads(await asyncio.to_thread(invoke_ok, settings, "dlq", "list", "--json"))
    assert letters["total"] == 0, f"a cancellation is no dead letter: {letters}"
    again = await asyncio.to_thread(invoke, settings, "sessions", "cancel", "desk", "nap-1")
    assert again.exit_code == 2 and "nothing running or waiting" in again.output, again.output


@pytest.mark.usefixtures("keep_logging")
async def test_cancel_a_queued_message_by_id_and_refuse_an_unknown_one(runtime: Runtime) -> None:
    settings = runtime.settings
    client = runtime.client
    await client.send(nap, "q-1", Ask(seconds=3600))
    queued_id = await client.send(quick, "q-1", Ask())

    async def queued() -> None:
        summary = (await listed(runtime)).get("q-1")
        assert summary is not None
        assert [what for _, what in summary.open_invocations] == ["suspended invocation", "queued message"]

    await assert_eventually(queued, timeout=30)
    wrong = await asyncio.to_thread(invoke, settings, "sessions", "cancel", "desk", "q-1", "--invocation", "nope")
    assert wrong.exit_code == 2 and "no open invocation 'nope'" in wrong.output, wrong.output
    out = await asyncio.to_thread(invoke, settings, "sessions", "cancel", "desk", "q-1", "--invocation", queued_id)
    assert out.exit_code == 0, out.output
    twice = await asyncio.to_thread(invoke, settings, "sessions", "cancel", "desk", "q-1", "--invocation", queued_id)
    assert twice.exit_code == 1 and "cancelled before" in twice.output, twice.output
    first = (await listed(runtime))["q-1"].open_invocations[0][0]
    done = await asyncio.to_thread(invoke, settings, "sessions", "cancel", "desk", "q-1", "--invocation", first)
    assert done.exit_code == 0, done.output

    async def both_ended() -> None:
        history = await asyncio.to_thread(invoke_ok, settings, "sessions", "history", "desk", "q-1", "--json")
        errors = [item.get("error") for item in _items(history) if item["kind"] == "done"]
        assert [e["type"] for e in errors if e] == ["InvocationCancelledError", "InvocationCancelledError"], errors

    await assert_eventually(both_ended, timeout=30)


@pytest.mark.usefixtures("keep_logging")
async def test_cancel_an_invocation_that_has_journaled_nothing_yet(runtime: Runtime) -> None:
    settings = runtime.settings
    client = runtime.client
    first = asyncio.create_task(client.call(begin, "new-1", Ask(), timeout=60))
    assert ENTERED.event is not None
    await asyncio.wait_for(ENTERED.event.wait(), 30)
    queued = await client.send(quick, "new-1", Ask())  # behind it, in memory only
    assert "new-1" not in await listed(runtime), "nothing of it is in the log yet"

    out = await asyncio.to_thread(invoke, settings, "sessions", "cancel", "desk", "new-1", "--reason", "typo", "--json")
    assert out.exit_code == 0, out.output
    said = json.loads(out.output)
    assert said["cancelled"] is True and said["invocation"] != queued, said
    RUNNING.set()  # its next step is where the cancellation ends it
    with pytest.raises(InvocationError) as caught:
        await first
    assert caught.value.error_type == "InvocationCancelledError" and "typo" in str(caught.value)
    assert said["by"] in str(caught.value), "the caller learns who cancelled it"
    assert STEPS == [], "no step started after the cancellation"

    async def history() -> list[dict[str, Any]]:
        out = await asyncio.to_thread(invoke_ok, settings, "sessions", "history", "desk", "new-1", "--json")
        done = [item for item in _items(out) if item["kind"] == "done"]
        assert len(done) == 2, done  # the cancelled one, then the queued one, which ran
        return done

    done = await assert_eventually(history, timeout=30)
    assert [(d.get("error") or {}).get("type") for d in done] == ["InvocationCancelledError", None], done
    again = await asyncio.to_thread(invoke, settings, "sessions", "cancel", "desk", "new-1", "--timeout", "10")
    assert again.exit_code == 2 and "nothing running or waiting" in again.output, again.output
    typo = await asyncio.to_thread(invoke, settings, "sessions", "cancel", "desk", "no-such-key", "--timeout", "10")
    assert typo.exit_code == 2, typo.output


def _items(output: str) -> list[dict[str, Any]]:
    """The items of a `--json` listing (one document: ``{"total": n, "items": [...]}``)."""
    document = json.loads(output)
    assert document["total"] == len(document["items"])
    return list(document["items"])
