"""Session types that wait: timers, approvals, deadlines and slow steps (used by the waits tests)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic import BaseModel, Field

from actors import Budget, ObjectContext, RetryPolicy, TerminalError, VirtualObject


class Log(BaseModel):
    entries: list[str] = Field(default_factory=list)


class Nap(BaseModel):
    seconds: float
    tag: str


class Draft(BaseModel):
    text: str
    timeout: float | None = None


class Slow(BaseModel):
    mode: str  # "hang" | "no-heartbeat"


class Reply(BaseModel):
    text: str


class Logged(BaseModel):
    text: str


class ApprovalRequested(BaseModel):
    awakeable_id: str


waiter = VirtualObject("waiter", state=Log)


def _ledger(line: str) -> None:
    path = os.environ.get("TETHER_TEST_LEDGER")
    if path:
        with Path(path).open("a") as f:
            f.write(line + "\n")


@waiter.handler()
async def nap(ctx: ObjectContext[Log], req: Nap) -> Reply:
    ctx.emit(Logged(text=f"before {req.tag}"))
    await ctx.sleep(req.seconds)
    await ctx.run("fired", lambda: _ledger(f"fired {ctx.key} {req.tag}"))
    ctx.emit(Logged(text=f"after {req.tag}"))
    return Reply(text=req.tag)


@waiter.handler()
async def note(ctx: ObjectContext[Log], req: Nap) -> Reply:
    ctx.emit(Logged(text=f"note {req.tag}"))
    return Reply(text=req.tag)


@waiter.handler(kind="shared")
async def peek(ctx: ObjectContext[Log], req: Nap) -> Reply:
    return Reply(text=",".join(ctx.state.entries))


@waiter.handler()
async def approval(ctx: ObjectContext[Log], req: Draft) -> Reply:
    awk = ctx.awakeable(str)
    ctx.emit(ApprovalRequested(awakeable_id=awk.id))
    await ctx.run("publish", lambda: _ledger(f"awakeable {ctx.key} {awk.id}"))
    verdict = await awk.result(timeout=req.timeout)
    ctx.emit(Logged(text=f"verdict {verdict}"))
    return Reply(text=verdict)


@waiter.handler(deadline=1.0)
async def stuck(ctx: ObjectContext[Log], req: Nap) -> Reply:
    await ctx.sleep(req.seconds)
    return Reply(text="finished")


@waiter.handler(budget=Budget(retries=2))
async def greedy(ctx: ObjectContext[Log], req: Nap) -> Reply:
    async def flaky() -> str:
        _ledger(f"greedy attempt {ctx.key}")
        raise RuntimeError("provider down")

    await ctx.run("flaky", flaky, retry=RetryPolicy(max_attempts=10, initial_interval=0.01))
    return Reply(text="unreachable")


@waiter.handler(retry=RetryPolicy(max_attempts=1))
async def slow_step(ctx: ObjectContext[Log], req: Slow) -> Reply:
    attempts = 0

    async def hang() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await asyncio.sleep(3600)
        return f"ok after {attempts}"

    async def silent(heartbeat: object) -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await asyncio.sleep(3600)  # never heartbeats
        return f"ok after {attempts}"

    policy = RetryPolicy(max_attempts=3, initial_interval=0.01)
    if req.mode == "hang":
        text = await ctx.run("hang", hang, timeout=0.5, retry=policy)
    elif req.mode == "no-heartbeat":
        text = await ctx.run("silent", silent, timeout=60, heartbeat_timeout=0.3, retry=policy)
    else:
        raise TerminalError(f"unknown mode {req.mode}")
    return Reply(text=text)


@waiter.on_event(Logged)
def _logged(state: Log, event: Logged) -> None:
    state.entries.append(event.text)


@waiter.on_event(ApprovalRequested)
def _requested(state: Log, event: ApprovalRequested) -> None:
    state.entries.append("approval requested")
