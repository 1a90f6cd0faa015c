"""Test workload: a transfer saga whose wire step may time out after the bank acted on it.

``careful`` compensates a timed-out step (``compensate_timeouts=True``); ``plain`` does not.
Every saga ends compensated: its last step always fails.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Literal

from pydantic import BaseModel

from actors import RetryableError, RetryPolicy, TerminalError, VirtualObject
from sagas import Saga
from sagas.events import SagaState


class Transfer(BaseModel):
    wire: Literal["ok", "lost-reply", "refused", "slow-once"] = "ok"
    """What the bank does with the wire: take it and answer, take it and never answer, refuse,
    or answer only after the step's timeout the first time (then at once)."""


class Receipt(BaseModel):
    id: str


LEDGER: dict[str, str] = {}
"""The bank: idempotency key -> effect."""
WIRES: Counter[str] = Counter()
"""Executions of the wire action, by key."""
UNDONE: list[tuple[str, Receipt | None]] = []
"""Compensations in the order they ran, with the result they received."""


def _transfer_saga(name: str, *, compensate_timeouts: bool) -> tuple[Saga[Transfer], VirtualObject[SagaState]]:
    saga = Saga(name, input=Transfer, retry=RetryPolicy(max_attempts=2, initial_interval=0.01))

    @saga.step("hold", compensate="release")
    async def hold(t: Transfer, key: str) -> Receipt:
        LEDGER.setdefault(key, "hold")
        return Receipt(id=key)

    @saga.compensation("hold")
    async def release(t: Transfer, held: Receipt | None, key: str) -> None:
        assert held is not None
        UNDONE.append(("hold", held))
        LEDGER.pop(held.id, None)

    @saga.step("wire", compensate="recall", timeout=0.1, compensate_timeouts=compensate_timeouts)
    async def wire(t: Transfer, key: str) -> Receipt:
        if t.wire == "refused":
            raise TerminalError("account closed")
        LEDGER.setdefault(key, "wire")  # the bank acts on the request...
        WIRES[key] += 1
        if t.wire == "lost-reply" or (t.wire == "slow-once" and WIRES[key] == 1):
            await asyncio.sleep(5)  # ...and its answer does not arrive in time
        return Receipt(id=key)

    @saga.compensation("wire")
    async def recall(t: Transfer, wired: Receipt | None, key: str) -> None:
        UNDONE.append(("wire", wired))
        LEDGER.pop(key.replace(":compensation", ":action"), None)

    @saga.step("fail")
    async def fail(t: Transfer, key: str) -> None:
        raise TerminalError("the last step always fails, so every saga compensates")

    return saga, saga.coordinator()


careful, careful_coordinator = _transfer_saga("careful", compensate_timeouts=True)
plain, plain_coordinator = _transfer_saga("plain", compensate_timeouts=False)


def reset() -> None:
    """Forget the bank's effects and the compensations seen."""
    LEDGER.clear()
    WIRES.clear()
    UNDONE.clear()
    CALLS.clear()


# -- a saga whose retries wait long enough to be durable timers ---------------------------------
CALLS: list[float] = []
"""When each attempt of ``patient``'s step ran (time.monotonic())."""

patient = Saga("patient", input=Transfer)


@patient.step("settle", retry=RetryPolicy(max_attempts=3, initial_interval=1.5, jitter=0.0))
async def settle(t: Transfer, key: str) -> Receipt:
    CALLS.append(time.monotonic())
    if len(CALLS) == 1:
        raise RetryableError("503 Service Unavailable")
    return Receipt(id=key)


patient_coordinator = patient.coordinator()
