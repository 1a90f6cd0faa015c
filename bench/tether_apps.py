"""The session types Tether's benchmarks run; worker subprocesses import them by name.

- ``counter``: the peer's Counter (bench/peer_restate/service.py) as a Tether virtual object:
  ``add(n)`` emits ``Added`` and returns the new value; ``add_with_step`` does the same after one
  journaled ``ctx.run`` step, ``add_3step`` after three; shared ``get`` reads. Served with
  ``tether serve bench.tether_apps:counter``.
- ``dead_end``: a handler that fails for good (``TerminalError``) until its payload is fixed,
  as W7's replay does (transform `fix`), to make dead letters quickly and replay them.
- ``trip_saga``: a three-step saga whose third step fails for good when the input asks for it
  (W6); ``saga_coordinator`` is its coordinator. Left ``None`` when the ``sagas`` package is
  missing, so the other types still load.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from actors import ObjectContext, TerminalError, VirtualObject
from bench import observability_switch as switch
from bench._harness import tracing

if os.environ.get(tracing.TRACING_ENV):  # a worker of `python -m bench overhead`'s "on" arm
    tracing.install(report_at_exit=True)
if os.environ.get(switch.SWITCH_ENV):  # a worker of `python -m bench overhead --interleaved`
    switch.listen(Path(os.environ[switch.SWITCH_ENV]))

REPLAY_PREFIX = "dlq-replay:"
"""Message ids of replays from the dead-letter queue start with this (see dlq.replayer)."""


class CounterState(BaseModel):
    count: int = 0


class Add(BaseModel):
    n: int = 1


class Empty(BaseModel):
    pass


class Value(BaseModel):
    value: int


class Added(BaseModel):
    n: int


counter: VirtualObject[CounterState] = VirtualObject("Counter", state=CounterState)


@counter.on_event(Added)
def _added(state: CounterState, event: Added) -> None:
    state.count += event.n


@counter.handler()
async def add(ctx: ObjectContext[CounterState], payload: Add) -> Value:
    """Add n and return the new value (one event, no step)."""
    ctx.emit(Added(n=payload.n))
    return Value(value=ctx.state.count)


@counter.handler()
async def add_with_step(ctx: ObjectContext[CounterState], payload: Add) -> Value:
    """As ``add``, with one journaled step computing the new value (as the peer does)."""
    current = ctx.state.count
    value = await ctx.run("step", lambda: current + payload.n, result_type=int)
    ctx.emit(Added(n=payload.n))
    assert ctx.state.count == value
    return Value(value=value)


@counter.handler()
async def add_3step(ctx: ObjectContext[CounterState], payload: Add) -> Value:
    """As ``add``, with three journaled steps before the event."""
    current = ctx.state.count
    value = await ctx.run("step1", lambda: current, result_type=int)
    value = await ctx.run("step2", lambda: value + payload.n, result_type=int)
    value = await ctx.run("step3", lambda: value, result_type=int)
    ctx.emit(Added(n=payload.n))
    return Value(value=value)


@counter.handler(kind="shared")
async def get(ctx: ObjectContext[CounterState], payload: Empty) -> Value:
    """The current value (0 for a new key)."""
    return Value(value=ctx.state.count)


# -- W7: dead letters ------------------------------------------------------------------------

dead_end: VirtualObject[CounterState] = VirtualObject("DeadEnd", state=CounterState)


dead_end.on_event(Added)(_added)  # the counter's fold: the same state and event


class Attempt(BaseModel):
    n: int = 1
    fixed: bool = False
    """Set by W7's replay transform (`fix`), as an operator replays a dead letter with its fix."""


def fix(payload: Any) -> Any:  # noqa: ANN401 - a dead letter's payload, as plain data
    """W7's replay transform: the dead letter's payload with its fix."""
    return {**payload, "fixed": True}


@dead_end.handler()
async def process(ctx: ObjectContext[CounterState], payload: Attempt) -> Value:
    """Fail for good until the payload is fixed: a first delivery is dead-lettered, its replay
    (through `fix`) succeeds. (The invocation id cannot tell a replay: it is a hash.)"""
    if not payload.fixed:
        raise TerminalError("bench: rejected until fixed, so that it is dead-lettered")
    ctx.emit(Added(n=payload.n))
    return Value(value=ctx.state.count)


# -- W6: sagas -------------------------------------------------------------------------------


class TripInput(BaseModel):
    trip: int
    fail: bool = False
    """Make the third step fail for good, so that the first two are compensated."""


class Ref(BaseModel):
    ref: str


trip_saga: Any = None
saga_coordinator: Any = None

try:
    from sagas import Saga
except ImportError:  # the sagas package is not there yet: W6 skips, the rest still loads
    pass
else:
    _saga: Saga[TripInput] = Saga("bench_trip", input=TripInput)

    def _step(name: str, undo: str, *, can_fail: bool = False) -> None:
        """Add step `name` to the saga: its action returns the session key as its reference, and
        fails for good on a trip marked to fail when `can_fail`; its compensation, `undo`, does
        nothing (the bench measures the coordinator, not the side effects)."""

        async def action(trip: TripInput, key: str) -> Ref:
            if can_fail and trip.fail:
                raise TerminalError(f"bench: trip {trip.trip} fails at {name} (injected failure)")
            return Ref(ref=key)

        async def compensation(trip: TripInput, result: Ref, key: str) -> None:
            return None

        compensation.__name__ = undo  # the name the step declares (compensate=...)
        _saga.step(name, compensate=undo)(action)
        _saga.compensation(name)(compensation)

    _step("reserve", "release")
    _step("charge", "refund")
    _step("confirm", "unconfirm", can_fail=True)

    trip_saga = _saga
    saga_coordinator = _saga.coordinator()
