"""Test workload: a counter session (the Ray worker tests, whose workers import it too, and the
secured-cluster round trip in test_kafka_security)."""

from __future__ import annotations

from pydantic import BaseModel

from actors import ObjectContext, VirtualObject
from harness.models import Add, Added


class Total(BaseModel):
    """The counter's state, and what `add` replies."""

    value: int = 0
    adds: int = 0


counter = VirtualObject("ray_counter", state=Total)


@counter.handler()
async def add(ctx: ObjectContext[Total], payload: Add) -> Total:
    ctx.emit(Added(n=payload.n))
    return ctx.state


@counter.on_event(Added)
def added(state: Total, event: Added) -> None:
    state.value += event.n
    state.adds += 1
