"""Session types the console's tests browse: orders that fail for good until the cause is fixed."""

from __future__ import annotations

from pydantic import BaseModel, Field

from actors import ObjectContext, TerminalError, VirtualObject

FIXED = {"value": False}
"""Set to True to "fix the cause": a replayed order then succeeds."""


class Orders(BaseModel):
    placed: list[str] = Field(default_factory=list)


class Order(BaseModel):
    item: str
    bad: bool = False


class Receipt(BaseModel):
    text: str


class Placed(BaseModel):
    item: str


orders = VirtualObject("orders", state=Orders)


@orders.handler()
async def place(ctx: ObjectContext[Orders], order: Order) -> Receipt:
    price = await ctx.run("price", lambda: len(order.item) * 10)
    if order.bad and not FIXED["value"]:
        raise TerminalError(f"cannot place {order.item}: the warehouse refused it")
    ctx.emit(Placed(item=order.item))
    return Receipt(text=f"placed {order.item} for {price}")


@orders.on_event(Placed)
def placed(state: Orders, event: Placed) -> None:
    state.placed.append(event.item)


def reset() -> None:
    FIXED["value"] = False


class Hold(BaseModel):
    seconds: float = 3600.0


@orders.handler()
async def hold(ctx: ObjectContext[Orders], req: Hold) -> None:
    await ctx.sleep(req.seconds)  # a durable timer the operator cancels
