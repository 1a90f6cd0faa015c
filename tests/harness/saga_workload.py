"""Test workload: a scripted booking saga, and a session that starts one.

The saga is flight -> (hotel | car) -> charge -> email (email parks instead of compensating).
What each action and compensation does is scripted by the saga's input, so a test (or a worker
subprocess: ``tether serve saga_workload:coordinator`` with this folder on PYTHONPATH) knows the
expected outcome of every saga from its input alone.

Effects go to the in-memory `EFFECTS` list, or, when ``SAGA_TEST_LEDGER`` names a file, to a
`sagas.testing.Ledger` shared by every process (with a ``call`` note per execution). Pauses for
chaos tests need ``SAGA_TEST_DIR``: the first process to reach a pause point writes a marker
file there and sleeps until it is killed; later processes pass the point.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, Field

from actors import ObjectContext, RetryableError, RetryPolicy, TerminalError, VirtualObject
from sagas import Saga, StepResults
from sagas.testing import Ledger

LEDGER_ENV = "SAGA_TEST_LEDGER"
DIR_ENV = "SAGA_TEST_DIR"
FAST = RetryPolicy(max_attempts=3, initial_interval=0.01, max_interval=0.05)


class Order(BaseModel):
    """The saga's input: a script for its actions and compensations."""

    script: dict[str, list[str]] = Field(default_factory=dict)
    """By ``step:phase``, what each execution does: ok, retry (RetryableError), boom
    (RuntimeError), fatal (TerminalError), hang (wait for `GATES`). Past the end of its list: ok.
    (Timeouts are exercised by transfer_saga.py: a pause for a chaos test must outlast the step's
    timeout, so the booking's are generous.)"""
    down: list[str] = Field(default_factory=list)
    """``step:phase`` that fail (RuntimeError) until the service is repaired: `repair()`."""
    pause: str | None = None
    """``step:phase:before`` or ``step:phase:after`` (the effect): pause there once (chaos)."""
    delay: float = 0.0
    """Seconds each execution takes before its effect (a window for kills)."""


class Ref(BaseModel):
    """What a provider returns."""

    ref: str


CALLS: Counter[str] = Counter()
"""Executions per idempotency key in this process (replayed attempts do not execute)."""
EFFECTS: list[str] = []
"""Keys in the order they first took effect (without a ledger file)."""
BROKEN: set[str] = set()
"""``step:phase`` whose service is down in this process until a test repairs it."""
GATES: dict[str, asyncio.Event] = {}


def reset() -> None:
    """Forget every call, effect, outage and gate of this process."""
    CALLS.clear()
    EFFECTS.clear()
    BROKEN.clear()
    GATES.clear()


def _ledger() -> Ledger | None:
    path = os.environ.get(LEDGER_ENV)
    return Ledger.at(path) if path else None


def _repaired() -> bool:
    folder = os.environ.get(DIR_ENV)
    return folder is not None and (Path(folder) / "repaired").exists()


def repair(folder: Path) -> None:
    """Repair every `Order.down` service, for all processes using `folder`."""
    (Path(folder) / "repaired").touch()


async def _pause(order: Order, point: str, key: str) -> None:
    folder = os.environ.get(DIR_ENV)
    if order.pause != point or folder is None:
        return
    marker = Path(folder) / f"paused-{key}-{point}".replace("/", "_")
    if marker.exists():
        return  # paused (and was killed) once already
    marker.touch()
    await asyncio.sleep(600)


async def perform(order: Order, key: str) -> Ref:
    """One execution of an action or compensation with idempotency key `key`."""
    CALLS[key] += 1
    step_phase = key.split(":", 1)[1]
    ledger = _ledger()
    if ledger is not None:
        ledger.note("call", key)
    await _pause(order, f"{step_phase}:before", key)
    script = order.script.get(step_phase, [])
    what = script[CALLS[key] - 1] if CALLS[key] <= len(script) else "ok"
    if step_phase in BROKEN or (step_phase in order.down and not _repaired()):
        raise RuntimeError(f"{step_phase} service is down")
    if what == "retry":
        raise RetryableError("429 Too Many Requests", retry_after=0.01)
    if what == "boom":
        raise RuntimeError("connection reset")
    if what == "fatal":
        raise TerminalError(f"{step_phase}: not possible")
    if what == "hang":
        await GATES.setdefault(key, asyncio.Event()).wait()
    if order.delay:
        await asyncio.sleep(order.delay)
    if ledger is not None:
        ledger.apply(key, step_phase)
    elif key not in EFFECTS:
        EFFECTS.append(key)
    await _pause(order, f"{step_phase}:after", key)
    return Ref(ref=f"ref-{key}")


booking = Saga("booking", input=Order, retry=FAST, compensation_retry=FAST)


@booking.step("flight", compensate="cancel_flight")
async def book_flight(order: Order, key: str) -> Ref:
    return await perform(order, key)


@booking.compensation("flight")
async def cancel_flight(order: Order, flight: Ref, key: str) -> None:
    assert flight.ref.endswith(":flight:action")
    await perform(order, key)


@booking.step("hotel", compensate="cancel_hotel", timeout=60)
async def book_hotel(order: Order, key: str) -> Ref:
    return await perform(order, key)


@booking.compensation("hotel")
async def cancel_hotel(order: Order, hotel: Ref, key: str) -> None:
    await perform(order, key)


@booking.step("car", compensate="return_car")
async def rent_car(order: Order, key: str) -> Ref:
    return await perform(order, key)


@booking.compensation("car")
async def return_car(order: Order, car: Ref, key: str) -> None:
    await perform(order, key)


booking.parallel("hotel", "car")


@booking.step("charge", compensate="refund")
async def charge(order: Order, key: str, done: StepResults) -> Ref:
    assert done[book_flight].ref.endswith(":flight:action")
    assert done[rent_car].ref.endswith(":car:action")
    return await perform(order, key)


@booking.compensation("charge")
async def refund(order: Order, payment: Ref, key: str) -> None:
    await perform(order, key)


@booking.step("email", on_failure="park")
async def email(order: Order, key: str) -> None:
    await perform(order, key)


coordinator = booking.coordinator()

ALL_ACTIONS = ["flight:action", "hotel:action", "car:action", "charge:action", "email:action"]
GROUPS = [["flight"], ["hotel", "car"], ["charge"], ["email"]]
COMPENSABLE = {"flight", "hotel", "car", "charge"}


def expected_compensations(failing: str) -> list[set[str]]:
    """Compensations, group by group in reverse order, when `failing` fails fatally at once."""
    done: list[list[str]] = []
    for group in GROUPS:
        if failing in group:
            done.append([s for s in group if s != failing])
            break
        done.append(group)
    groups = [{f"{s}:compensation" for s in g if s in COMPENSABLE} for g in reversed(done)]
    return [g for g in groups if g]


# -- a session that starts a saga --------------------------------------------------------------
class AgentState(BaseModel):
    trips: list[str] = Field(default_factory=list)


class Plan(BaseModel):
    trip_id: str


class Planned(BaseModel):
    trip_id: str
    status: str


agent = VirtualObject("travel_agent", state=AgentState)


@agent.handler()
async def plan(ctx: ObjectContext[AgentState], req: Plan) -> Planned:
    """Start a booking saga from a session and wait until it is durably started."""
    started = await ctx.call(booking.start, req.trip_id, Order())
    ctx.emit(Planned(trip_id=req.trip_id, status=started.status))
    return Planned(trip_id=req.trip_id, status=started.status)


@agent.on_event(Planned)
def _planned(state: AgentState, event: Planned) -> None:
    state.trips.append(event.trip_id)


workers = [coordinator, agent]
"""Everything a worker serves (``tether serve saga_workload:workers``)."""
