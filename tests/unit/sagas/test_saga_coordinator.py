"""The saga coordinator on the embedded log: outcomes, compensation order, retries,
stuck sagas and their dead letters, operator retry, starts from sessions, and replay after a
worker stops mid-group. The same saga runs on Kafka in tests/integration/test_sagas.py."""

from __future__ import annotations

import asyncio

import pytest
from harness.saga_workload import (
    ALL_ACTIONS,
    BROKEN,
    CALLS,
    EFFECTS,
    GATES,
    Order,
    Plan,
    Ref,
    agent,
    book_flight,
    booking,
    coordinator,
    email,
    expected_compensations,
    plan,
    reset,
)
from harness.session_harness import Runtime, assert_eventually

from actors.runtime.deadletters import HANDLER, KEY  # noqa: E402
from sagas import SagaClient, SagaNotFoundError, find_saga, read_sagas  # noqa: E402

# -- fixtures and helpers ----------------------------------------------------------------------
pytestmark = pytest.mark.serves(coordinator, agent, reset=reset)


def effects(saga_id: str) -> list[str]:
    return [k.split(":", 1)[1] for k in EFFECTS if k.split(":", 1)[0].endswith(f"/{saga_id}")]


# -- tests -------------------------------------------------------------------------------------
async def test_happy_path(runtime: Runtime) -> None:
    handle = await SagaClient(runtime.client).start(booking, "t1", Order())
    outcome = await handle.result(timeout=30)
    assert outcome.status == "completed" and outcome.ok
    assert outcome.result(book_flight) == Ref(ref="ref-booking/t1:flight:action")
    assert outcome.result(email) is None
    assert sorted(effects("t1")) == sorted(ALL_ACTIONS)
    assert effects("t1")[0] == "flight:action" and effects("t1")[-2:] == ["charge:action", "email:action"]
    assert all(CALLS[k] == 1 for k in EFFECTS)
    assert [len(s.attempts) for s in outcome.steps] == [1, 1, 1, 1, 1]
    assert outcome.started_at is not None and outcome.ended_at is not None


# Failing step -> compensations, group by group in reverse order (one group is a set).
EXPECTED = {
    "flight": [],
    "hotel": [{"car:compensation"}, {"flight:compensation"}],
    "car": [{"hotel:compensation"}, {"flight:compensation"}],
    "charge": [{"hotel:compensation", "car:compensation"}, {"flight:compensation"}],
}


def test_the_expected_compensations_follow_from_the_groups() -> None:
    assert {f: expected_compensations(f) for f in EXPECTED} == EXPECTED


@pytest.mark.parametrize("failing", list(EXPECTED))
async def test_a_failing_step_compensates_what_completed_in_reverse_order(runtime: Runtime, failing: str) -> None:
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
    assert (
        CALLS["booking/r1:flight:action"] == 3
        and CALLS["booking/r1:car:action"] == 2
        and CALLS["booking/r1:hotel:action"] == 1
    )
    assert sorted(effects("r1")) == sorted(ALL_ACTIONS)


async def test_exhausted_retries_compensate(runtime: Runtime) -> None:
    order = Order(script={"charge:action": ["boom", "boom", "boom"]})
    outcome = await (await SagaClient(runtime.client).start(booking, "x1", order)).result(timeout=30)
    assert outcome.status == "compensated" and outcome.failed_step == "charge"
    assert outcome.failure is not None and outcome.failure.retryable  # retryable, but out of attempts
    assert len(outcome.step("charge").attempts) == 3
    assert sorted(outcome.compensated_steps) == ["car", "flight", "hotel"]


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
    assert CALLS["booking/s1:flight:compensation"] == 3

    # Nothing is silently abandoned: the park message is a dead letter naming the saga.
    async def parked() -> None:
        letters = [r for r in await runtime.dead_letters() if r.header(KEY) == b"s1" and r.header(HANDLER) == b"park"]
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


async def test_a_saga_stuck_on_a_park_step_can_be_cancelled_and_compensates_in_reverse(runtime: Runtime) -> None:
    BROKEN.add("email:action")
    sagas = SagaClient(runtime.client)
    handle = await sagas.start(booking, "c1", Order())
    assert (await handle.result(timeout=30)).status == "stuck"
    result = await sagas.cancel("booking", "c1", "trip called off", by="ops@test")
    assert result.cancelled and "compensating charge, car, hotel, flight" in result.message, result
    outcome = await handle.result(timeout=30)
    assert outcome.status == "cancelled" and outcome.stuck is None
    assert outcome.cancelled is not None and (outcome.cancelled.by, outcome.cancelled.reason) == (
        "ops@test",
        "trip called off",
    )
    done = [e for e in effects("c1") if e.endswith(":compensation")]
    assert done[0] == "charge:compensation" and set(done[1:3]) == {"hotel:compensation", "car:compensation"}
    assert done[3:] == ["flight:compensation"] and all(CALLS[k] == 1 for k in EFFECTS), "each once, in reverse"
    again = await sagas.cancel("booking", "c1", "twice", by="ops@test")
    assert not again.cancelled and again.status == "cancelled" and "cancelled before by ops@test" in again.message
    BROKEN.clear()
    finished = await (await sagas.start(booking, "c2", Order())).result(timeout=30)
    assert finished.status == "completed"
    late = await sagas.cancel("booking", "c2", "too late", by="ops@test")
    assert not late.cancelled and late.status == "completed"


async def test_start_is_idempotent_and_refuses_another_input(runtime: Runtime) -> None:
    sagas = SagaClient(runtime.client)
    first = await sagas.start(booking, "i1", Order())
    await sagas.start(booking, "i1", Order())
    assert (await first.result(timeout=30)).status == "completed"
    await sagas.start(booking, "i1", Order())  # after it finished: still the same saga
    assert all(CALLS[f"booking/i1:{a}"] == 1 for a in ALL_ACTIONS)
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
    await assert_eventually(
        lambda: _check(CALLS["booking/c1:car:action"] == 2 and CALLS["booking/c1:hotel:action"] == 2)
    )
    await asyncio.sleep(0.2)  # hotel's second attempt is journaled by now
    await runtime.restart_worker()
    GATES["booking/c1:car:action"].set()  # (the cancelled execution is gone; this one runs for real)
    outcome = await handle.result(timeout=30)
    assert outcome.status == "completed"
    assert CALLS["booking/c1:hotel:action"] == 2  # replayed, not re-run
    assert CALLS["booking/c1:car:action"] == 3  # the interrupted attempt ran again
    assert CALLS["booking/c1:flight:action"] == 1
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
