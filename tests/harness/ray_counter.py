"""Test workload: a counter session (the Ray worker tests, whose workers import it too, and the
secured-cluster round trip in test_kafka_security)."""

from __future__ import annotations

from pydantic import BaseModel

from actors import ObjectContext, VirtualObject


class CounterState(BaseModel):
    value: int = 0
    adds: int = 0


class Add(BaseModel):
    n: int = 1


class Added(BaseModel):
    n: int


class Total(BaseModel):
    value: int
    adds: int


counter = VirtualObject("ray_counter", state=CounterState)


@counter.handler()
async def add(ctx: ObjectContext[CounterState], payload: Add) -> Total:
    ctx.emit(Added(n=payload.n))
    return Total(value=ctx.state.value, adds=ctx.state.adds)


@counter.on_event(Added)
def added(state: CounterState, event: Added) -> None:
    state.value += event.n
    state.adds += 1
