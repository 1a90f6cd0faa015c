"""The saga coordinator on the embedded log: outcomes, compensation order, retries, timeouts,
stuck sagas and their dead letters, operator retry, starts from sessions, and replay after a
worker stops mid-group. The same saga runs on Kafka in tests/integration/test_sagas.py."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "workloads"))

from session_harness import Runtime, assert_eventually, make_settings, open_runtime  # noqa: E402

from actors import ObjectContext, RetryableError, RetryPolicy, TerminalError, VirtualObject  # noqa: E402
from actors.deadletters import HANDLER, KEY  # noqa: E402
from sagas import Saga, SagaClient, SagaNotFoundError, StepResults, find_saga, read_sagas  # noqa: E402

FAST = RetryPolicy(max_attempts=3, initial_interval=0.01, max_interval=0.05)


# -- a scripted booking saga -------------------------------------------------------------------
class Order(BaseModel):
    """What each execution of an action or compensation does, by "step:phase" and execution
    number: ok, retry (RetryableError), boom (RuntimeError), fatal (TerminalError), hang (wait
    for the test), slow (exceed the 0.2 s timeout). Past the end of its list: ok."""

    script: dict[str, list[str]] = Field(default_factory=dict)


class Ref(BaseModel):
    ref: str


CALLS: Counter[str] = Counter()
"""Executions per idempotency key (replayed attempts do not execute)."""
EFFECTS: list[str] = []
"""Keys in the order they first took effect: the outside world, honouring idempotency keys."""
BROKEN: set[str] = set()
"""``step:phase`` whose service is down until a test repairs it."""
GATES: dict[str, asyncio.Event] = {}


async def perform(order: Order, key: str) -> Ref:
    CALLS[key] += 1
    step_phase = key.split(":", 1)[1]
    script = order.script.get(step_phase, [])
    what = script[CALLS[key] - 1] if CALLS[key] <= len(script) else "ok"
    if step_phase in BROKEN:
        raise RuntimeError(f"{step_phase} service is down")
    if what == "retry":
        raise RetryableError("429 Too Many Requests", retry_after=0.01)
    if what == "boom":
        raise RuntimeError("connection reset")
    if what == "fatal":
        raise TerminalError(f"{step_phase}: not possible")
    if what == "hang":
        await GATES.setdefault(key, asyncio.Event()).wait()
    if what == "slow":
        await asyncio.sleep(2)
    if key not in EFFECTS:
        EFFECTS.append(key)
    return Ref(ref=f"ref-{key}")


booking = Saga("booking", input=Order, retry=FAST, compensation_retry=FAST)


@booking.step("flight", compensate="cancel_flight")
async def book_flight(order: Order, key: str) -> Ref:
    return await perform(order, key)


@booking.compensation("flight")
async def cancel_flight(order: Order, flight: Ref, key: str) -> None:
    assert flight.ref.endswith(":flight:action")
    await perform(order, key)


@booking.step("hotel", compensate="cancel_hotel", timeout=0.2)
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
    started = await ctx.call(booking.start, req.trip_id, Order())
    ctx.emit(Planned(trip_id=req.trip_id, status=started.status))
    return Planned(trip_id=req.trip_id, status=started.status)


@agent.on_event(Planned)
def _planned(state: AgentState, event: Planned) -> None:
    state.trips.append(event.trip_id)


# -- fixtures and helpers ----------------------------------------------------------------------
@pytest.fixture
async def runtime(tmp_path: Path, namespace: str) -> AsyncIterator[Runtime]:
    CALLS.clear()
    EFFECTS.clear()
    BROKEN.clear()
    GATES.clear()
    settings = make_settings("embedded", tmp_path, namespace, partitions=2)
    async with open_runtime([coordinator, agent], settings) as rt:
        yield rt


def effects(saga_id: str) -> list[str]:
    return [k.split(":", 1)[1] for k in EFFECTS if k.startswith(f"{saga_id}:")]


ALL_ACTIONS = ["flight:action", "hotel:action", "car:action", "charge:action", "email:action"]


# -- tests -------------------------------------------------------------------------------------
async def test_happy_path(runtime: Runtime) -> None:
    handle = await SagaClient(runtime.client).start(booking, "t1", Order())
    outcome = await handle.result(timeout=30)
    assert outcome.status == "completed" and outcome.ok
    assert outcome.result(book_flight) == Ref(ref="ref-t1:flight:action")
    assert outcome.result(email) is None
    assert sorted(effects("t1")) == sorted(ALL_ACTIONS)
    assert effects("t1")[0] == "flight:action" and effects("t1")[-2:] == ["charge:action", "email:action"]
    assert all(CALLS[k] == 1 for k in EFFECTS)
    assert [len(s.attempts) for s in outcome.steps] == [1, 1, 1, 1, 1]
    assert outcome.started_at is not None and outcome.ended_at is not None


# Failing step -> compensations, group by group in reverse order (one group may be a set).
EXPECTED = {
    "flight": [],
    "hotel": [{"car:compensation"}, {"flight:compensation"}],
    "car": [{"hotel:compensation"}, {"flight:compensation"}],
    "charge": [{"hotel:compensation", "car:compensation"}, {"flight:compensation"}],
}


@pytest.mark.parametrize("failing", list(EXPECTED))
async def test_a_failing_step_compensates_what_completed_in_reverse_order(
    runtime: Runtime, failing: str
) -> None:
    saga_id = f"fail-{failing}"
    order = Order(script={f"{failing}:action": ["fatal"]})
    outcome = await (await SagaClient(runtime.client).start(booking, saga_id, order)).result(timeout=30)
    assert outcome.status == "compensated"
    assert outcome.failed_step == failing and outcome.failure is not None
    assert outcome.failure.type == "TerminalError" and not outcome.failure.retryable
    done = effects(saga_id)
    compensations = [e for e in done if e.endswith(":compensation")]
    groups, at = [], 0
    for group in EXPECTED[failing]:
        groups.append(set(compensations[at : at + len(group)]))
        at += len(group)
    assert groups == EXPECTED[failing] and at == len(compensations)
    assert f"{failing}:action" not in done and f"{failing}:compensation" not in done
    assert outcome.step(failing).status == "failed"
    assert sorted(outcome.compensated_steps) == sorted(c.split(":")[0] for c in compensations)
    assert all(n == 1 for n in CALLS.values())  # nothing was retried: a fatal error is final


async def test_retryable_errors_are_retried_with_backoff_then_succeed(runtime: Runtime) -> None:
    order = Order(script={"flight:action": ["retry", "boom"], "car:action": ["retry"]})
    outcome = await (await SagaClient(runtime.client).start(booking, "r1", order)).result(timeout=30)
    assert outcome.status == "completed"
    flight = outcome.step("flight")
    assert [a.error.type if a.error else None for a in flight.attempts] == ["RetryableError", "RuntimeError", None]
    assert [a.n for a in flight.attempts] == [1, 2, 3]
    assert flight.attempts[0].ended <= flight.attempts[1].started
    assert CALLS["r1:flight:action"] == 3 and CALLS["r1:car:action"] == 2 and CALLS["r1:hotel:action"] == 1
    assert sorted(effects("r1")) == sorted(ALL_ACTIONS)


async def test_exhausted_retries_compensate(runtime: Runtime) -> None:
    order = Order(script={"charge:action": ["boom", "boom", "boom"]})
    outcome = await (await SagaClient(runtime.client).start(booking, "x1", order)).result(timeout=30)
    assert outcome.status == "compensated" and outcome.failed_step == "charge"
    assert outcome.failure is not None and outcome.failure.retryable  # retryable, but out of attempts
    assert len(outcome.step("charge").attempts) == 3
    assert sorted(outcome.compensated_steps) == ["car", "flight", "hotel"]


async def test_an_attempt_that_times_out_is_retried(runtime: Runtime) -> None:
    order = Order(script={"hotel:action": ["slow"]})
    outcome = await (await SagaClient(runtime.client).start(booking, "to1", order)).result(timeout=30)
    assert outcome.status == "completed"
    hotel = outcome.step("hotel")
    assert len(hotel.attempts) == 2
    assert hotel.attempts[0].error is not None and hotel.attempts[0].error.type == "TimeoutError"
    assert "timed out after 0.2 s" in hotel.attempts[0].error.message


async def test_a_compensation_that_keeps_failing_parks_the_saga_until_retried(runtime: Runtime) -> None:
    BROKEN.add("flight:compensation")
    order = Order(script={"car:action": ["fatal"]})
    sagas = SagaClient(runtime.client)
    handle = await sagas.start(booking, "s1", order)
    outcome = await handle.result(timeout=30)
    assert outcome.status == "stuck" and outcome.stuck is not None
    assert outcome.stuck.phase == "compensation" and outcome.stuck.steps == ["flight"]
    assert "tether saga retry s1" in outcome.stuck.reason
    assert outcome.step("hotel").status == "compensated"
    assert outcome.step("flight").status == "compensation_failed"
    assert CALLS["s1:flight:compensation"] == 3

    # Nothing is silently abandoned: the park message is a dead letter naming the saga.
    async def parked() -> None:
        letters = [
            r for r in await runtime.dead_letters()
            if r.header(KEY) == b"s1" and r.header(HANDLER) == b"park"
        ]
        assert len(letters) == 1

    await assert_eventually(parked)
    record = await find_saga(runtime.settings, "s1")
    assert record.state.status == "stuck" and record.failures and record.failures[0]["handler"] == "park"

    BROKEN.clear()  # the operator fixes the cause ...
    result = await handle.retry()  # ... and retries (`tether saga retry s1`)
    assert result.resumed and result.status == "compensating"
    outcome = await handle.result(timeout=30)
    assert outcome.status == "compensated" and outcome.resumes == 1
    assert effects("s1") == ["flight:action", "hotel:action", "hotel:compensation", "flight:compensation"]
    flight = outcome.step("flight")
    assert len(flight.compensation_attempts) == 4 and flight.compensation_error is None
    again = await handle.retry()
    assert not again.resumed and again.status == "compensated"


async def test_a_park_step_is_not_compensated_but_retried_by_an_operator(runtime: Runtime) -> None:
    BROKEN.add("email:action")
    sagas = SagaClient(runtime.client)
    handle = await sagas.start(booking, "p1", Order())
    outcome = await handle.result(timeout=30)
    assert outcome.status == "stuck" and outcome.stuck is not None and outcome.stuck.phase == "action"
    assert outcome.compensated_steps == []
    BROKEN.clear()
    assert (await sagas.retry("booking", "p1")).resumed
    outcome = await handle.result(timeout=30)
    assert outcome.status == "completed"
    assert len(outcome.step("email").attempts) == 4
    assert sorted(effects("p1")) == sorted(ALL_ACTIONS)


async def test_start_is_idempotent_and_refuses_another_input(runtime: Runtime) -> None:
    sagas = SagaClient(runtime.client)
    first = await sagas.start(booking, "i1", Order())
    await sagas.start(booking, "i1", Order())
    assert (await first.result(timeout=30)).status == "completed"
    await sagas.start(booking, "i1", Order())  # after it finished: still the same saga
    assert all(CALLS[f"i1:{a}"] == 1 for a in ALL_ACTIONS)
    await sagas.start(booking, "i1", Order(script={"flight:action": ["fatal"]}))

    async def refused() -> None:
        letters = [r for r in await runtime.dead_letters() if r.header(KEY) == b"i1"]
        assert len(letters) == 1 and letters[0].header(HANDLER) == b"start"

    await assert_eventually(refused)
    assert (await first.status()).status == "completed"


async def test_a_session_starts_a_saga_with_ctx_call(runtime: Runtime) -> None:
    reply = await runtime.client.call(plan, "alice", Plan(trip_id="from-agent"), timeout=30)
    assert reply.status == "running"
    outcome = await SagaClient(runtime.client).handle(booking, "from-agent").result(timeout=30)
    assert outcome.status == "completed"


async def test_a_worker_stopped_mid_group_replays_the_journaled_attempts(runtime: Runtime) -> None:
    # Round 1: hotel and car fail (retryable); round 2: hotel succeeds while car hangs. The
    # worker stops then. Its successor must replay both rounds from the journal (same order,
    # no JournalMismatchError), run only car's second attempt again, and finish the saga.
    order = Order(script={"hotel:action": ["retry"], "car:action": ["boom", "hang"]})
    handle = await SagaClient(runtime.client).start(booking, "c1", order)
    await assert_eventually(lambda: _check(CALLS["c1:car:action"] == 2 and CALLS["c1:hotel:action"] == 2))
    await asyncio.sleep(0.2)  # hotel's second attempt is journaled by now
    await runtime.restart_worker()
    GATES["c1:car:action"].set()  # (the cancelled execution is gone; this one runs for real)
    outcome = await handle.result(timeout=30)
    assert outcome.status == "completed"
    assert CALLS["c1:hotel:action"] == 2  # replayed, not re-run
    assert CALLS["c1:car:action"] == 3  # the interrupted attempt ran again
    assert CALLS["c1:flight:action"] == 1
    assert [len(outcome.step(s).attempts) for s in ("hotel", "car")] == [2, 2]


async def test_sagas_are_read_from_the_log_without_a_worker(runtime: Runtime) -> None:
    sagas = SagaClient(runtime.client)
    await (await sagas.start(booking, "l1", Order())).result(timeout=30)
    await (await sagas.start(booking, "l2", Order(script={"car:action": ["fatal"]}))).result(timeout=30)
    await runtime.stop_worker()
    records = {r.saga_id: r for r in await read_sagas(runtime.settings)}
    assert {k: r.state.status for k, r in records.items()} == {"l1": "completed", "l2": "compensated"}
    assert records["l1"].saga == "booking" and records["l1"].version >= 4
    one = await find_saga(runtime.settings, "l2", saga="booking")
    assert one.state.step("car").error is not None
    with pytest.raises(SagaNotFoundError):
        await find_saga(runtime.settings, "nope")


def _check(condition: bool) -> None:
    assert condition
