"""A session parked behind its dead letter waits for an operator; replay runs first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from harness.faults import Cause
from harness.session_harness import settings_for
from pydantic import BaseModel, Field

from actors import Client, InvocationError, ObjectContext, RetryPolicy, Settings, TerminalError, VirtualObject, Worker
from dlq import DeadLetters


class Ledger(BaseModel):
    entries: list[str] = Field(default_factory=list)


class Entry(BaseModel):
    text: str


class Recorded(BaseModel):
    text: str


CAUSE = Cause()
books = VirtualObject("books", state=Ledger)


@books.handler(on_failure="park", retry=RetryPolicy(max_attempts=1))
async def record(ctx: ObjectContext[Ledger], req: Entry) -> Entry:
    if req.text.startswith("bad") and not CAUSE.fixed:
        raise TerminalError(f"cannot book {req.text}")
    ctx.emit(Recorded(text=req.text))
    return req


@books.handler(kind="shared")
async def read(ctx: ObjectContext[Ledger], req: Entry) -> Entry:
    return Entry(text=",".join(ctx.state.entries))


@books.on_event(Recorded)
def _recorded(state: Ledger, event: Recorded) -> None:
    state.entries.append(event.text)


@pytest.fixture(params=["embedded", "kafka"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, namespace: str) -> Settings:
    CAUSE.reset()
    return settings_for(request, request.param, tmp_path, namespace)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def entries(client: Client, key: str) -> list[str]:
    return list((await client.state("books", key))["state"]["entries"])


@pytest.mark.parametrize("resolution", ["replay", "discard"])
async def test_parked_session_waits_for_its_dead_letter(settings: Settings, client: Client, resolution: str) -> None:
    async with Worker([books], settings):
        await client.call(record, "acct", Entry(text="first"))
        with pytest.raises(InvocationError):
            await client.call(record, "acct", Entry(text="bad-2"))
        await client.send(record, "acct", Entry(text="third"))
        await asyncio.sleep(1.0)
        assert await entries(client, "acct") == ["first"]  # parked: "third" waits
        assert (await client.call(read, "acct", Entry(text=""))).text == "first"  # shared reads answer
        async with DeadLetters(settings) as dead:
            (letter,) = await dead.list()
            assert letter.park_awakeable
            if resolution == "replay":
                CAUSE.fix()
                report = await dead.replay([letter.id])
                assert report.counts.get("replayed") == 1
            else:
                await dead.discard([letter.id], reason="not needed")
        expected = ["first", "bad-2", "third"] if resolution == "replay" else ["first", "third"]
        await eventually(lambda: _equals(client, expected))
    async with Worker([books], settings):  # a restart keeps it unparked and applies nothing twice
        await client.call(record, "acct", Entry(text="fourth"))
        assert await entries(client, "acct") == [*expected, "fourth"]


async def _equals(client: Client, expected: list[str]) -> bool:
    return await entries(client, "acct") == expected
