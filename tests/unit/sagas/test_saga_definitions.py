"""Saga definitions: how a saga is declared, and the misuse caught at definition time."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import sagas
from actors import RetryPolicy, UsageError, VirtualObject
from sagas import Saga, StepResults, idempotency_key
from sagas.events import SagaState


class Trip(BaseModel):
    city: str


class Other(BaseModel):
    x: int = 0


class Ref(BaseModel):
    ref: str


def test_exports_are_pinned_and_sorted() -> None:
    assert sagas.__all__ == sorted(sagas.__all__)
    assert {"Saga", "SagaClient", "SagaHandle", "SagaOutcome", "idempotency_key"} <= set(sagas.__all__)
    for name in sagas.__all__:
        assert hasattr(sagas, name), name


def test_idempotency_key_is_derived_not_random() -> None:
    assert idempotency_key("booking", "trip-7", "flight", "action") == "booking/trip-7:flight:action"
    assert idempotency_key("booking", "trip-7", "flight", "compensation") == "booking/trip-7:flight:compensation"
    # Two saga types under one id never share a key; sagas started by 0.1 keep the old form.
    assert idempotency_key("refund", "trip-7", "flight", "action") != idempotency_key(
        "booking", "trip-7", "flight", "action"
    )
    assert SagaState(saga="booking", saga_id="trip-7").effect_key("flight", "action") == "trip-7:flight:action"
    scoped = SagaState(saga="booking", saga_id="trip-7", scoped_keys=True)
    assert scoped.effect_key("flight", "action") == "booking/trip-7:flight:action"


def _booking() -> Saga[Trip]:
    booking = Saga("booking", input=Trip, retry=RetryPolicy(max_attempts=2))

    @booking.step("flight", compensate="cancel_flight", timeout=5)
    async def book_flight(trip: Trip, key: str) -> Ref:
        return Ref(ref=key)

    @booking.compensation("flight", retry=RetryPolicy(max_attempts=7))
    async def cancel_flight(trip: Trip, flight: Ref, key: str) -> None:
        return None

    @booking.step("hotel", compensate="cancel_hotel")
    async def book_hotel(trip: Trip, key: str) -> Ref:
        return Ref(ref=key)

    @booking.compensation(book_hotel)
    async def cancel_hotel(trip: Trip, hotel: Ref, key: str) -> None:
        return None

    @booking.step("car")
    async def rent_car(trip: Trip, key: str, done: StepResults) -> None:
        return None

    @booking.step("email", on_failure="park")
    async def email(trip: Trip, key: str) -> None:
        return None

    booking.parallel("hotel", rent_car)
    return booking


def test_a_saga_reads_as_a_list_of_steps() -> None:
    booking = _booking()
    assert [s.name for s in booking.steps] == ["flight", "hotel", "car", "email"]
    assert [[s.name for s in g] for g in booking.groups()] == [["flight"], ["hotel", "car"], ["email"]]
    flight, hotel, car, email = booking.steps
    assert flight.compensation is not None and flight.compensation.name == "cancel_flight"
    assert flight.compensation.retry.max_attempts == 7
    assert flight.retry.max_attempts == 2 and flight.timeout == 5
    assert flight.result_type is Ref and car.result_type is None
    assert car.wants_results and not flight.wants_results
    assert email.on_failure == "park" and email.compensation is None


def test_coordinator_is_a_virtual_object_keyed_by_saga_id() -> None:
    booking = _booking()
    obj = booking.coordinator()
    assert isinstance(obj, VirtualObject)
    assert obj is booking.coordinator()
    assert obj.name == "saga.booking" == booking.object_name
    assert set(obj.handlers) == {"start", "advance", "park", "retry", "cancel", "status"}
    assert obj.handlers["status"].kind == "shared"
    assert booking.start.input_type is Trip and booking.start.output_type is SagaState
    assert [s.group for s in booking.steps] == [0, 1, 1, 2]


async def test_steps_are_callable_directly() -> None:
    booking = _booking()
    flight = booking.steps[0]
    assert await flight(Trip(city="Lisbon"), "k") == Ref(ref="k")
    assert flight.revive({"ref": "r"}) == Ref(ref="r")


def test_frozen_once_the_coordinator_is_built() -> None:
    booking = _booking()
    booking.coordinator()
    with pytest.raises(UsageError, match="after coordinator"):

        @booking.step("late")
        async def late(trip: Trip, key: str) -> None: ...


def test_misuse_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="pydantic model"):
        Saga("s", input=dict)  # type: ignore[type-var]
    with pytest.raises(UsageError, match="no '/'"):
        Saga("a/b", input=Trip)
    saga = Saga("s", input=Trip)
    with pytest.raises(UsageError, match="async"):
        saga.step("sync")(lambda trip, key: None)  # type: ignore[arg-type, return-value]

    with pytest.raises(UsageError, match="parameters"):

        @saga.step("one")
        async def one(trip: Trip) -> None: ...  # type: ignore[type-var]

    with pytest.raises(UsageError, match="pydantic model or None"):

        @saga.step("int")
        async def returns_int(trip: Trip, key: str) -> int: ...  # type: ignore[type-var]

    with pytest.raises(UsageError, match="saga's input is Trip"):

        @saga.step("other")
        async def other(x: Other, key: str) -> None: ...  # type: ignore[arg-type]

    @saga.step("a", compensate="undo_a")
    async def a(trip: Trip, key: str) -> Ref: ...

    with pytest.raises(UsageError, match="already has a step"):

        @saga.step("a")
        async def again(trip: Trip, key: str) -> None: ...

    with pytest.raises(UsageError, match="compensate='undo_a' but none is registered"):
        saga.coordinator()


@pytest.mark.parametrize(
    ("step", "name", "match"),
    [
        ("a", "wrong_name", "declares compensate='undo_a'"),
        ("zzz", "undo_zzz", "no such step"),
        ("b", "undo_b", "declares no compensation"),
    ],
)
def test_a_compensation_must_be_the_one_its_step_declares(step: str, name: str, match: str) -> None:
    saga = Saga("s", input=Trip)

    @saga.step("a", compensate="undo_a")
    async def a(trip: Trip, key: str) -> Ref: ...

    @saga.step("b")
    async def b(trip: Trip, key: str) -> None: ...

    async def compensation(trip: Trip, r: Ref | None, key: str) -> None: ...

    compensation.__name__ = name
    with pytest.raises(UsageError, match=match):
        saga.compensation(step)(compensation)


def test_parallel_groups_must_be_consecutive() -> None:
    saga = Saga("p", input=Trip)
    for name in ("a", "b", "c"):

        async def fn(trip: Trip, key: str) -> None: ...

        fn.__name__ = name
        saga.step()(fn)
    with pytest.raises(UsageError, match="consecutive"):
        saga.parallel("a", "c")
    with pytest.raises(UsageError, match="two or more"):
        saga.parallel("a")
    with pytest.raises(UsageError, match="no step"):
        saga.parallel("a", "zz")
    saga.parallel("b", "a")
    assert [[s.name for s in g] for g in saga.groups()] == [["a", "b"], ["c"]]
    with pytest.raises(UsageError, match="already in a parallel group"):
        saga.parallel("b", "c")


def test_a_saga_needs_steps() -> None:
    with pytest.raises(UsageError, match="no steps"):
        Saga("empty", input=Trip).coordinator()
