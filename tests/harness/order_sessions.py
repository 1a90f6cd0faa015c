"""Test workload: an order session that records every order it applies, and its dead letters.

`orders.apply` folds each order number into the session's state, so an order applied twice
shows up twice; a ``bad`` order fails for good until `CAUSE` is fixed ("fixing the cause" before a
replay), and `orders.flaky` fails every time (after one retry). `order_dead_letters` builds the
dead-letter records of orders that failed for good (as a worker writes them), so that a replay
test needs no worker to produce them.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from actors import ObjectContext, RetryPolicy, TerminalError, VirtualObject
from actors.messages import Message, session_key
from actors.runtime.deadletters import Failure, dead_letter
from eventstore import OutRecord, Record, Topics, partition_for
from harness.faults import Cause

CAUSE = Cause()
"""Until it is fixed a bad order fails for good; then it applies."""


class Orders(BaseModel):
    applied: list[int] = Field(default_factory=list)
    """Order numbers in the order they were applied (a double application appears twice)."""


class Order(BaseModel):
    n: int
    bad: bool = False


class Applied(BaseModel):
    n: int


orders = VirtualObject("orders", state=Orders)


@orders.handler()
async def apply(ctx: ObjectContext[Orders], order: Order) -> None:
    if order.bad and not CAUSE.fixed:
        raise TerminalError(f"bad order {order.n}\nthe cause is not fixed yet")
    ctx.emit(Applied(n=order.n))


@orders.handler(retry=RetryPolicy(max_attempts=2, initial_interval=0.01, jitter=0))
async def flaky(ctx: ObjectContext[Orders], order: Order) -> None:
    raise ValueError(f"flaky {order.n}")


@orders.on_event(Applied)
def _applied(state: Orders, event: Applied) -> None:
    state.applied.append(event.n)


def order_dead_letters(topics: Topics, partitions: int, key: str, count: int) -> list[OutRecord]:
    """Dead letters (partition 0 of the dead-letter topic) of orders 0..count-1 to session `key`."""
    out = []
    for n in range(count):
        message = Message(id=f"order-{n}", o=orders.name, k=key, h=apply.name, p={"n": n}, ts=1)
        record_key = session_key(message.object, message.key)
        source = Record(topics.inbox, partition_for(record_key, partitions), n, record_key, message.encode(), (), 1)
        try:
            raise TerminalError(f"order {n} failed: the payment service was down")
        except TerminalError as exc:
            failure = Failure(exc, "terminal", 1, 1, 1, message.object, message.key, message.handler, message.id)
        letter = dead_letter(source, failure, dlq_topic=topics.dlq, group=topics.group())
        out.append(OutRecord(letter.topic, 0, letter.key, letter.value, letter.headers))
    return out
