"""Session types the console's tests browse: orders that fail for good until the cause is fixed."""

from __future__ import annotations

from pydantic import BaseModel, Field

from actors import ObjectContext, RetryPolicy, TerminalError, VirtualObject
from harness.faults import Cause
from harness.models import Note
from sagas import Saga

CAUSE = Cause()
"""Until it is fixed a bad order fails for good; a replayed order then succeeds."""


class Orders(BaseModel):
    placed: list[str] = Field(default_factory=list)


class Order(BaseModel):
    item: str
    bad: bool = False


class Placed(BaseModel):
    item: str


orders = VirtualObject("orders", state=Orders)


@orders.handler()
async def place(ctx: ObjectContext[Orders], order: Order) -> Note:
    price = await ctx.run("price", lambda: len(order.item) * 10)
    if order.bad and not CAUSE.fixed:
        raise TerminalError(f"cannot place {order.item}: the warehouse refused it")
    ctx.emit(Placed(item=order.item))
    return Note(text=f"placed {order.item} for {price}")


@orders.on_event(Placed)
def placed(state: Orders, event: Placed) -> None:
    state.placed.append(event.item)


def shout(payload: dict[str, object]) -> dict[str, object]:
    """A replay transform (``harness.console_sessions:shout``): the item in capitals."""
    return {**payload, "item": str(payload["item"]).upper()}


def reset() -> None:
    CAUSE.reset()
    RELEASE_BROKEN["value"] = False


class Hold(BaseModel):
    seconds: float = 3600.0


@orders.handler()
async def hold(ctx: ObjectContext[Orders], req: Hold) -> None:
    await ctx.sleep(req.seconds)  # a durable timer the operator cancels


class Shipment(BaseModel):
    card: str = "ok"


class Reservation(BaseModel):
    id: str


RELEASE_BROKEN = {"value": False}
"""While True, the release compensation fails for good: the saga gets stuck."""

shipment = Saga("shipment", input=Shipment, retry=RetryPolicy(max_attempts=2, initial_interval=0.01, jitter=0))


@shipment.step("reserve", compensate="release")
async def reserve(s: Shipment, key: str) -> Reservation:
    return Reservation(id=key)


@shipment.compensation("reserve")
async def release(s: Shipment, held: Reservation | None, key: str) -> None:
    if RELEASE_BROKEN["value"]:
        raise TerminalError("the warehouse is offline")


@shipment.step("charge")
async def charge(s: Shipment, key: str) -> None:
    if s.card == "declined":
        raise TerminalError("card declined")


shipment_coordinator = shipment.coordinator()


class Approval(BaseModel):
    verdict: str


@orders.handler()
async def approve(ctx: ObjectContext[Orders], req: Hold) -> Approval:
    decision = ctx.awakeable(str)  # a human approval an operator gives in the console
    return Approval(verdict=await decision.result(timeout=req.seconds))
