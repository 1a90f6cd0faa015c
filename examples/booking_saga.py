"""A trip booking saga: a flight, then a hotel and a car side by side, a card charge, an email.

Run it (embedded log, no broker needed)::

    python examples/booking_saga.py

Two trips are booked. The second asks for a convertible, which the car rental does not have:
the car step fails for good, so the steps that completed are undone in reverse order (the hotel,
then the flight). The "travel API" here is a file that honours idempotency keys, so you can see
every effect, and that each one happened once. To serve the saga from a worker instead::

    tether serve booking_saga:coordinator      # from this directory
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from pydantic import BaseModel

from actors import Client, RetryPolicy, Settings, TerminalError, Worker
from sagas import Saga, SagaClient, StepResults
from sagas.testing import Ledger


class Trip(BaseModel):
    """What the traveller asked for."""

    traveller: str
    city: str
    nights: int
    car: str = "compact"


class Booking(BaseModel):
    """A reservation made by a provider."""

    ref: str
    price: float


class Payment(BaseModel):
    """A card charge."""

    charge_id: str
    amount: float


# -- the outside world: every call carries the idempotency key the saga derived ------------
LEDGER = Ledger(os.environ.get("BOOKING_LEDGER", Path(tempfile.gettempdir()) / "booking-ledger.jsonl"))


async def provider(op: str, key: str, price: float = 0.0) -> Booking:
    """Book or cancel something; a repeated key returns the first answer and changes nothing."""
    await asyncio.sleep(0.05)  # the network
    saga_id, step, _ = key.split(":")
    _, stored = LEDGER.apply(key, op, result={"ref": f"{step}-{saga_id}", "price": price})
    return Booking.model_validate(stored)


# -- the saga: read it top to bottom ---------------------------------------------------------
booking = Saga("booking", input=Trip)


@booking.step("flight", compensate="cancel_flight", timeout=10)
async def book_flight(trip: Trip, key: str) -> Booking:
    """Book the flight; the key makes a repeated request harmless."""
    return await provider("book flight", key, price=320.0)


@booking.compensation("flight")
async def cancel_flight(trip: Trip, flight: Booking, key: str) -> None:
    """Cancel the flight booked by `book_flight`."""
    await provider("cancel flight", key)


@booking.step("hotel", compensate="cancel_hotel", timeout=10)
async def book_hotel(trip: Trip, key: str) -> Booking:
    """Book the hotel."""
    return await provider("book hotel", key, price=110.0 * trip.nights)


@booking.compensation("hotel")
async def cancel_hotel(trip: Trip, hotel: Booking, key: str) -> None:
    """Cancel the hotel."""
    await provider("cancel hotel", key)


@booking.step("car", compensate="return_car", timeout=10)
async def rent_car(trip: Trip, key: str) -> Booking:
    """Rent the car (fails for good when no car of that kind is left)."""
    if trip.car == "convertible":
        # Fatal: no retry will help. A RetryableError (or any other exception) is retried.
        raise TerminalError(f"no convertibles left in {trip.city}")
    return await provider("rent car", key, price=45.0 * trip.nights)


@booking.compensation("car")
async def return_car(trip: Trip, car: Booking, key: str) -> None:
    """Cancel the car rental."""
    await provider("cancel car", key)


booking.parallel("hotel", "car")


@booking.step("charge", compensate="refund", retry=RetryPolicy(max_attempts=5))
async def charge_card(trip: Trip, key: str, done: StepResults) -> Payment:
    """Charge the card with the total of the bookings before it."""
    amount = done[book_flight].price + done[book_hotel].price + done[rent_car].price
    await provider("charge card", key, price=amount)
    return Payment(charge_id=f"charge-{key.split(':')[0]}", amount=amount)


@booking.compensation("charge")
async def refund(trip: Trip, payment: Payment, key: str) -> None:
    """Refund the charge."""
    await provider("refund card", key, price=payment.amount)


@booking.step("email", on_failure="park")  # past the point of no return: retry, never undo
async def send_confirmation(trip: Trip, key: str) -> None:
    """Email the confirmation."""
    await provider("email confirmation", key)


coordinator = booking.coordinator()


# -- run it ---------------------------------------------------------------------------------
async def main() -> int:
    """Book two trips; the second fails at the car rental and is compensated."""
    data_dir = Path(tempfile.mkdtemp(prefix="tether-booking-"))
    LEDGER.path = data_dir / "travel-api.jsonl"
    settings = Settings(data_dir=data_dir, namespace="booking", partitions=2, backend="embedded")
    trips = {
        "trip-1": Trip(traveller="Ada", city="Lisbon", nights=3),
        "trip-2": Trip(traveller="Grace", city="Lisbon", nights=2, car="convertible"),
    }
    async with Worker([coordinator], settings), Client.connect(settings) as client:
        sagas = SagaClient(client)
        handles = [await sagas.start(booking, saga_id, trip) for saga_id, trip in trips.items()]
        outcomes = [await h.result(timeout=60) for h in handles]
    for outcome in outcomes:
        trip = trips[outcome.saga_id]
        if outcome.ok:
            summary = f"charged {outcome.result(charge_card).amount:.2f}"
        else:
            summary = f"{outcome.failed_step} failed: {outcome.failure.message if outcome.failure else ''}"
        print(f"\n{outcome.saga_id} ({trip.traveller}, {trip.car} car): {outcome.status}, {summary}")
        for entry in LEDGER.entries():
            if entry["key"].startswith(f"booking/{outcome.saga_id}:"):
                print(f"  {entry['op']:<20} {entry['key']}")
    print(f"\ninspect them: tether saga show trip-2 --data-dir {data_dir} -n booking")
    completed = outcomes[0].status == "completed"
    compensated = outcomes[1].compensated_steps == ["flight", "hotel"]
    once = not LEDGER.duplicates()
    return 0 if completed and compensated and once else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
