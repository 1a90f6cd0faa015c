"""Test workload: a ledger session whose journaled side effects append to an external file.

Workers run it as ``tether serve ledger_sessions:ledger`` with this folder on PYTHONPATH. Each
effect appends one fsync'd JSON line ``{"ik", "token", "pid"}`` to the file named by
``TETHER_TEST_LEDGER`` and returns the random token, which the step journal records: a chaos
test can then tell the journaled execution of a step from executions that were never journaled.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid

from pydantic import BaseModel, Field

from actors import ObjectContext, VirtualObject
from harness.models import Empty

LEDGER_ENV = "TETHER_TEST_LEDGER"


class LedgerState(BaseModel):
    count: int = 0
    tags: list[str] = Field(default_factory=list)
    relayed: int = 0
    asked: list[int] = Field(default_factory=list)
    """Counts that `ask` calls got back from their targets."""


class Op(BaseModel):
    tag: str
    target: str | None = None
    """For `relay`: the key that receives an `apply` after this invocation commits."""
    work: float = 0.0
    """Seconds the side effect takes (a window for a kill to land in)."""


class Count(BaseModel):
    count: int


class Applied(BaseModel):
    tag: str


class Relayed(BaseModel):
    tag: str
    target: str


class Asked(BaseModel):
    tag: str
    target: str
    count: int


def write_ledger(ik: str) -> str:
    """Record one execution of the effect with idempotency key `ik`; return its token."""
    token = uuid.uuid4().hex
    path = os.environ.get(LEDGER_ENV)
    if path:
        line = json.dumps({"ik": ik, "token": token, "pid": os.getpid()}) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    return token


async def effect(ik: str, work: float) -> str:
    if work:
        await asyncio.sleep(work)
    return write_ledger(ik)


ledger = VirtualObject("ledger", state=LedgerState)


@ledger.handler()
async def apply(ctx: ObjectContext[LedgerState], op: Op) -> Count:
    await ctx.run("effect", lambda: effect(f"{ctx.invocation_id}:effect", op.work))
    ctx.emit(Applied(tag=op.tag))
    return Count(count=ctx.state.count)


@ledger.handler()
async def relay(ctx: ObjectContext[LedgerState], op: Op) -> Count:
    assert op.target is not None
    await ctx.run("effect", lambda: effect(f"{ctx.invocation_id}:effect", op.work))
    ctx.send(apply, op.target, Op(tag=f"{op.tag}@{ctx.key}", work=op.work))
    ctx.emit(Relayed(tag=op.tag, target=op.target))
    return Count(count=ctx.state.count)


@ledger.handler()
async def ask(ctx: ObjectContext[LedgerState], op: Op) -> Count:
    """Call `apply` on `op.target` (a journaled call) and record the count it replied with."""
    assert op.target is not None
    await ctx.run("effect", lambda: effect(f"{ctx.invocation_id}:effect", op.work))
    reply = await ctx.call(apply, op.target, Op(tag=f"{op.tag}?{ctx.key}", work=op.work))
    ctx.emit(Asked(tag=op.tag, target=op.target, count=reply.count))
    return Count(count=ctx.state.count)


@ledger.handler(kind="shared")
async def get(ctx: ObjectContext[LedgerState], _: Empty) -> Count:
    return Count(count=ctx.state.count)


@ledger.on_event(Applied)
def _applied(state: LedgerState, event: Applied) -> None:
    state.count += 1
    state.tags.append(event.tag)


@ledger.on_event(Relayed)
def _relayed(state: LedgerState, event: Relayed) -> None:
    state.relayed += 1


@ledger.on_event(Asked)
def _asked(state: LedgerState, event: Asked) -> None:
    state.asked.append(event.count)
