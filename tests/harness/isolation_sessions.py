"""Session types for the isolation, replay-fidelity and limits tests (issue 11).

`acct` adds to a counter through a journaled step and reports what its context derived (ids,
uuids, random draws), so a test can tell whether two sessions given the same idempotency key
stayed apart. `typed` runs steps returning a model, a dataclass and a list of models and
records the types it got live and on replay. `big` writes oversized step results, replies and
events on request. `STEPS` counts real step executions per session.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from actors import ObjectContext, RetryableError, RetryPolicy, VirtualObject

STEPS: Counter[str] = Counter()
"""Real executions of each session's steps (``{key}:{step}``)."""
SEEN: list[dict[str, Any]] = []
"""What the `typed` handler observed, one entry per attempt."""
GATES: dict[str, asyncio.Event] = {}


def gate(name: str) -> asyncio.Event:
    return GATES.setdefault(name, asyncio.Event())


def reset() -> None:
    STEPS.clear()
    SEEN.clear()
    GATES.clear()


# -- acct: a counter whose step result and derived ids tell sessions apart ---------------------
class Total(BaseModel):
    n: int = 0
    log: list[str] = Field(default_factory=list)


class Add(BaseModel):
    by: int
    gate: str | None = None
    work: float = 0.0
    """Seconds the step's side effect takes (a window for a kill to land in)."""


class Added(BaseModel):
    by: int
    tag: str


class Receipt(BaseModel):
    key: str
    by: int
    total: int
    invocation_id: str
    uuid: str
    random: float
    step_key: str
    """The key the journaled step saw (from the step's own result)."""


acct = VirtualObject("acct", state=Total, retry=RetryPolicy(max_attempts=3, initial_interval=0.01))


@acct.on_event(Added)
def _added(state: Total, event: Added) -> None:
    state.n += event.by
    state.log.append(event.tag)


@acct.handler()
async def add(ctx: ObjectContext[Total], req: Add) -> Receipt:
    """Add `by` (through a journaled step that records which session ran it)."""

    async def effect() -> dict[str, Any]:
        STEPS[f"{ctx.key}:effect"] += 1
        if req.work:
            await asyncio.sleep(req.work)
        return {"key": ctx.key, "by": req.by}

    seen = await ctx.run("effect", effect)
    if req.gate is not None:
        await gate(req.gate).wait()
    ctx.emit(Added(by=req.by, tag=f"{ctx.key}:{req.by}"))
    return Receipt(
        key=ctx.key,
        by=req.by,
        total=ctx.state.n,
        invocation_id=ctx.invocation_id,
        uuid=str(ctx.uuid()),
        random=ctx.random.random(),
        step_key=str(seen["key"]),
    )


@acct.handler()
async def poke_state(ctx: ObjectContext[Total], req: Add) -> Total:
    """Writes `ctx.state` directly (the mistake the runtime must refuse)."""
    ctx.state.n += req.by
    return Total(n=ctx.state.n)


@acct.handler()
async def poke_nested(ctx: ObjectContext[Total], req: Add) -> Total:
    """Mutates a list inside `ctx.state` (the same mistake, one level down)."""
    ctx.state.log.append(f"direct:{req.by}")
    return Total(n=ctx.state.n)


@acct.handler()
async def poke_after_emit(ctx: ObjectContext[Total], req: Add) -> Total:
    """Emits an event, then writes the state the fold produced (still refused)."""
    ctx.emit(Added(by=req.by, tag="legit"))
    ctx.state.n = -1
    return Total(n=ctx.state.n)


@acct.handler(kind="shared")
async def poke_shared(ctx: ObjectContext[Total], req: Add) -> Total:
    """A shared handler that writes state (refused too)."""
    ctx.state.log.append("shared")
    return Total(n=ctx.state.n)


# -- typed: step results keep their type on replay ---------------------------------------------
class Doc(BaseModel):
    url: str
    words: int


@dataclasses.dataclass
class Hit:
    title: str
    score: float


class Fetch(BaseModel):
    fail_first: bool = True
    gate: str | None = None


class Kinds(BaseModel):
    kinds: list[str]


typed = VirtualObject("typed", state=Total, retry=RetryPolicy(max_attempts=3, initial_interval=0.01))


def fetch_doc() -> Doc:
    return Doc(url="https://example.com", words=42)


def rank_hits() -> list[Hit]:
    return [Hit("a", 0.9), Hit("b", 0.5)]


@typed.handler()
async def gather(ctx: ObjectContext[Total], req: Fetch) -> Kinds:
    """Steps returning a model (annotated function), a list of dataclasses (annotated) and a list
    of models (a lambda with `result_type=`); records the values it got on each attempt."""
    doc = await ctx.run("fetch", fetch_doc)
    hits = await ctx.run("rank", rank_hits)
    docs = await ctx.run("more", lambda: [Doc(url="u1", words=1), Doc(url="u2", words=2)], result_type=list[Doc])
    SEEN.append({"attempt": ctx.attempt, "doc": doc, "hits": hits, "docs": docs})
    if req.gate is not None:
        await gate(req.gate).wait()
    if req.fail_first and ctx.attempt == 1:
        raise RetryableError("fail after the steps so the retry replays them")
    return Kinds(kinds=[type(doc).__name__, type(hits[0]).__name__, type(docs[0]).__name__])


@typed.handler()
async def gather_slowly(ctx: ObjectContext[Total], req: Fetch) -> Kinds:
    """The steps of `gather`, then a pause (a window for a kill -9), then the types it holds and
    whether they equal the values the steps return live."""
    doc = await ctx.run("fetch", fetch_doc)
    hits = await ctx.run("rank", rank_hits)
    docs = await ctx.run("more", lambda: [Doc(url="u1", words=1), Doc(url="u2", words=2)], result_type=list[Doc])
    await asyncio.sleep(2.0)
    same = doc == fetch_doc() and hits == rank_hits() and docs == [Doc(url="u1", words=1), Doc(url="u2", words=2)]
    return Kinds(kinds=[type(doc).__name__, type(hits[0]).__name__, type(docs[0]).__name__, f"equal={same}"])


@typed.handler()
async def undeclared(ctx: ObjectContext[Total], req: Fetch) -> Kinds:
    """A lambda step returning a model without declaring its type: refused live."""
    doc = await ctx.run("fetch", lambda: Doc(url="x", words=1))
    return Kinds(kinds=[type(doc).__name__])


# -- big: records over the size limit ----------------------------------------------------------
class Size(BaseModel):
    what: str
    """``step``, ``reply``, ``events`` or ``none``."""
    bytes: int = 2 * 1024 * 1024


class Blob(BaseModel):
    data: str


class Grew(BaseModel):
    data: str


big = VirtualObject("big", state=Total, retry=RetryPolicy(max_attempts=2, initial_interval=0.01))


@big.on_event(Grew)
def _grew(state: Total, event: Grew) -> None:
    state.n += len(event.data)


@big.handler()
async def produce(ctx: ObjectContext[Total], req: Size) -> Blob:
    """Writes an oversized step result, reply or event set, as `req.what` says."""
    if req.what == "step":
        await ctx.run("fetch page", lambda: "x" * req.bytes)
    if req.what == "events":
        for _ in range(4):
            ctx.emit(Grew(data="e" * (req.bytes // 4)))
    if req.what == "reply":
        return Blob(data="r" * req.bytes)
    return Blob(data="small")


SERVED = [acct, typed, big]
"""What the chaos tests' worker subprocess serves (``isolation_sessions:SERVED``)."""
