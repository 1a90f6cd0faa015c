"""Test workload for in-process workers: a list session whose handlers report to a `Probe`.

Handlers can block on named gates (to hold an invocation open), count how often steps really
run, and fail on chosen attempts. Tests reset `PROBE` before each use.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

from pydantic import BaseModel, Field

from actors import ObjectContext, RetryableError, RetryPolicy, VirtualObject
from harness.models import Empty

FAST_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.01, max_interval=1.0)


class Probe:
    """What handlers observed: started gates, step executions, attempts, values."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.started: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.executions: Counter[str] = Counter()
        self.attempts: list[tuple[str, int, float]] = []
        self.seen: list[dict[str, Any]] = []

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    def open(self, name: str) -> None:
        self.gate(name).set()

    def execute(self, name: str) -> int:
        """A step body: count the execution and return the count."""
        self.executions[name] += 1
        return self.executions[name]


PROBE = Probe()


class Items(BaseModel):
    values: list[str] = Field(default_factory=list)


class Item(BaseModel):
    value: str
    gate: str | None = None
    """Block the invocation until the test opens this gate."""


class Relay(BaseModel):
    target: str
    value: str
    fail_first: bool = False
    """Fail the first attempt after the send/call, so the retry must not repeat it."""


class Observed(BaseModel):
    attempt: int
    uuids: list[str]
    now: str
    random: float
    step: int = 0


class Appended(BaseModel):
    value: str


probe = VirtualObject("probe", state=Items, retry=FAST_RETRY)


@probe.on_event(Appended)
def _appended(state: Items, event: Appended) -> None:
    state.values.append(event.value)


@probe.handler()
async def append(ctx: ObjectContext[Items], item: Item) -> Items:
    """Append `item.value`, optionally waiting for a gate first."""
    if item.gate is not None:
        PROBE.started.append(item.gate)
        await PROBE.gate(item.gate).wait()
    ctx.emit(Appended(value=item.value))
    return Items(values=ctx.state.values)


@probe.handler()
async def gated_step(ctx: ObjectContext[Items], item: Item) -> Items:
    """Wait for a gate, then run a journaled step, then append."""
    assert item.gate is not None
    PROBE.started.append(item.gate)
    await PROBE.gate(item.gate).wait()
    count = await ctx.run("effect", lambda: PROBE.execute(item.value))
    ctx.emit(Appended(value=f"{item.value}:{count}"))
    return Items(values=ctx.state.values)


@probe.handler()
async def resumable(ctx: ObjectContext[Items], item: Item) -> Observed:
    """Observe the deterministic context, run a step, then wait for a gate."""
    observed = Observed(
        attempt=ctx.attempt, uuids=[str(ctx.uuid())], now=ctx.now().isoformat(), random=ctx.random.random()
    )
    PROBE.seen.append(observed.model_dump())
    count = await ctx.run("effect", lambda: PROBE.execute(item.value))
    if item.gate is not None:
        PROBE.started.append(item.gate)
        await PROBE.gate(item.gate).wait()
    ctx.emit(Appended(value=f"{item.value}:{count}"))
    observed.step = count
    return observed


@probe.handler(kind="shared")
async def peek(ctx: ObjectContext[Items], _: Empty) -> Items:
    return Items(values=ctx.state.values)


@probe.handler(kind="shared")
async def contains(ctx: ObjectContext[Items], item: Item) -> Items:
    """A shared handler with a required field."""
    return Items(values=[v for v in ctx.state.values if v == item.value])


@probe.handler()
async def replayed_steps(ctx: ObjectContext[Items], item: Item) -> Observed:
    """Two steps with a retryable failure between them: step 1 must run once in total."""
    first = await ctx.run("first", lambda: PROBE.execute(f"{item.value}:first"))
    PROBE.attempts.append((item.value, ctx.attempt, time.monotonic()))
    if ctx.attempt == 1:
        raise RetryableError("fail after the first step")
    second = await ctx.run("second", lambda: PROBE.execute(f"{item.value}:second"))
    ctx.emit(Appended(value=f"{item.value}:{first}:{second}"))
    return Observed(attempt=ctx.attempt, uuids=[], now="", random=0.0, step=first)


@probe.handler()
async def mismatched(ctx: ObjectContext[Items], item: Item) -> Items:
    """The step name changes between attempts: the retry cannot replay its journal."""
    await ctx.run(f"step-{ctx.attempt}", lambda: PROBE.execute(f"{item.value}:{ctx.attempt}"))
    if ctx.attempt == 1:
        raise RetryableError("retry with a different step")
    ctx.emit(Appended(value=item.value))
    return Items(values=ctx.state.values)


@probe.handler()
async def deterministic(ctx: ObjectContext[Items], item: Item) -> Observed:
    """uuid(), now() and random must be the same on the retry."""
    observed = Observed(
        attempt=ctx.attempt,
        uuids=[str(ctx.uuid()), str(ctx.uuid())],
        now=ctx.now().isoformat(),
        random=ctx.random.random(),
    )
    PROBE.seen.append(observed.model_dump())
    await asyncio.sleep(0.02)  # the retry happens measurably later in wall-clock time
    if ctx.attempt == 1:
        raise RetryableError("once more")
    return observed


@probe.handler()
async def slow_down(ctx: ObjectContext[Items], item: Item) -> Items:
    """Asks for a retry after `float(item.value)` seconds, once."""
    PROBE.attempts.append(("handler", ctx.attempt, time.monotonic()))
    if ctx.attempt == 1:
        raise RetryableError("429 Too Many Requests", retry_after=float(item.value))
    return Items(values=ctx.state.values)


def _flaky_step(retry_after: float) -> str:
    PROBE.attempts.append(("step", PROBE.execute("flaky"), time.monotonic()))
    if PROBE.executions["flaky"] == 1:
        raise RetryableError("step rate-limited", retry_after=retry_after)
    return "ok"


@probe.handler()
async def slow_step(ctx: ObjectContext[Items], item: Item) -> Items:
    """A step that asks for a retry after `float(item.value)` seconds, once."""
    result = await ctx.run("flaky", lambda: _flaky_step(float(item.value)))
    ctx.emit(Appended(value=result))
    return Items(values=ctx.state.values)


@probe.handler()
async def always_fails(ctx: ObjectContext[Items], item: Item) -> Items:
    PROBE.attempts.append((item.value, ctx.attempt, time.monotonic()))
    raise RuntimeError(f"broken on purpose ({item.value})")


@probe.handler()
async def relay(ctx: ObjectContext[Items], req: Relay) -> Items:
    """Send `append(value)` to `target`; optionally fail the first attempt after sending."""
    ctx.send(append, req.target, Item(value=req.value))
    PROBE.attempts.append((req.value, ctx.attempt, time.monotonic()))
    if req.fail_first and ctx.attempt == 1:
        raise RetryableError("fail after the send")
    ctx.emit(Appended(value=f"sent {req.value}"))
    return Items(values=ctx.state.values)


@probe.handler()
async def ask(ctx: ObjectContext[Items], req: Relay) -> Items:
    """Call `append(value)` on `target` and return its reply."""
    reply = await ctx.call(append, req.target, Item(value=req.value))
    PROBE.attempts.append((req.value, ctx.attempt, time.monotonic()))
    if req.fail_first and ctx.attempt == 1:
        raise RetryableError("fail after the call")
    ctx.emit(Appended(value=f"asked {req.value}"))
    return reply


def new_id() -> str:
    return uuid.uuid4().hex
