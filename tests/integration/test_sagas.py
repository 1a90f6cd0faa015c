"""Sagas on the real Kafka broker: the happy path, a failure at each step in turn with exactly
the right compensations in reverse order, a saga started by a session, and a compensation that
keeps failing: stuck, dead-lettered on the dlq topic, and finished by `tether saga retry`; a step
that timed out after acting is compensated; a long backoff is a durable timer across a restart."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from harness.cli import run_ok
from harness.saga_workload import (
    ALL_ACTIONS,
    BROKEN,
    CALLS,
    EFFECTS,
    Order,
    Plan,
    agent,
    book_flight,
    booking,
    coordinator,
    expected_compensations,
    plan,
    reset,
)
from harness.session_harness import Runtime, assert_eventually, make_settings, open_runtime

from actors.runtime.deadletters import CATEGORY, EXCEPTION_MESSAGE, HANDLER, KEY, OBJECT  # noqa: E402
from sagas import SagaClient  # noqa: E402

pytestmark = [pytest.mark.kafka, pytest.mark.serves(coordinator, agent, reset=reset, backend="kafka")]


def effects(saga_id: str) -> list[str]:
    return [k.split(":", 1)[1] for k in EFFECTS if k.split(":", 1)[0].endswith(f"/{saga_id}")]


async def test_happy_path(runtime: Runtime) -> None:
    outcome = await (await SagaClient(runtime.client).start(booking, "trip-1", Order())).result(timeout=60)
    assert outcome.status == "completed"
    assert outcome.result(book_flight).ref == "ref-booking/trip-1:flight:action"
    assert sorted(effects("trip-1")) == sorted(ALL_ACTIONS)
    assert all(n == 1 for n in CALLS.values())


@pytest.mark.parametrize("failing", ["flight", "hotel", "car", "charge"])
async def test_failure_at_each_step_compensates_in_reverse_order(runtime: Runtime, failing: str) -> None:
    saga_id = f"trip-{failing}"
    order = Order(script={f"{failing}:action": ["fatal"]})
    outcome = await (await SagaClient(runtime.client).start(booking, saga_id, order)).result(timeout=60)
    assert outcome.status == "compensated" and outcome.failed_step == failing
    compensations = [e for e in effects(saga_id) if e.endswith(":compensation")]
    expected = expected_compensations(failing)
    groups, at = [], 0
    for group in expected:
        groups.append(set(compensations[at : at + len(group)]))
        at += len(group)
    assert groups == expected and at == len(compensations)
    assert f"{failing}:action" not in effects(saga_id)
    assert all(n == 1 for n in CALLS.values())


async def test_a_session_starts_a_saga(runtime: Runtime) -> None:
    reply = await runtime.client.call(plan, "alice", Plan(trip_id="agent-trip"), timeout=60)
    assert reply.status == "running"
    outcome = await SagaClient(runtime.client).handle(booking, "agent-trip").result(timeout=60)
    assert outcome.status == "completed"
    state = await runtime.state("travel_agent", "alice")
    assert state["trips"] == ["agent-trip"]


async def test_stuck_compensation_is_dead_lettered_and_finished_by_tether_saga_retry(runtime: Runtime) -> None:
    BROKEN.add("flight:compensation")
    handle = await SagaClient(runtime.client).start(booking, "trip-stuck", Order(script={"charge:action": ["fatal"]}))
    outcome = await handle.result(timeout=60)
    assert outcome.status == "stuck" and outcome.stuck is not None and outcome.stuck.steps == ["flight"]
    assert sorted(outcome.compensated_steps) == ["car", "hotel"]

    async def dead_letter() -> object:
        found = [
            r for r in await runtime.dead_letters() if r.header(KEY) == b"trip-stuck" and r.header(HANDLER) == b"park"
        ]
        assert len(found) == 1
        return found[0]

    letter = await assert_eventually(dead_letter, timeout=60)
    assert letter.header(OBJECT) == b"saga.booking"  # type: ignore[attr-defined]
    assert letter.header(CATEGORY) == b"terminal"  # type: ignore[attr-defined]
    message = letter.header(EXCEPTION_MESSAGE).decode()  # type: ignore[attr-defined]
    assert "compensation of flight failed for good" in message and "tether saga retry trip-stuck" in message

    shown = await tether(runtime, "saga", "show", "trip-stuck", "--json")
    assert json.loads(shown)["state"]["status"] == "stuck"
    BROKEN.clear()  # the operator fixes the cause
    out = await tether(runtime, "saga", "retry", "trip-stuck")
    assert "resumed its compensation" in out
    outcome = await handle.result(timeout=60)
    assert outcome.status == "compensated" and outcome.resumes == 1
    assert effects("trip-stuck")[-1] == "flight:compensation"
    assert CALLS["booking/trip-stuck:flight:compensation"] == 4  # 3 failed before the fix, 1 after
    listed = await tether(runtime, "saga", "list", "--status", "compensated", "--json")
    assert [item["saga_id"] for item in json.loads(listed)["items"]] == ["trip-stuck"]


@asynccontextmanager
async def bank(coordinator: Any, kafka_bootstrap: str, namespace: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    """A runtime on Kafka serving one of `harness.transfer_saga`'s coordinators, the bank reset first."""
    from harness.transfer_saga import reset

    reset()
    settings = make_settings("kafka", tmp_path, namespace, bootstrap=kafka_bootstrap, partitions=2)
    async with open_runtime([coordinator], settings) as rt:
        yield rt


async def test_a_step_that_timed_out_after_acting_is_compensated(
    kafka_bootstrap: str, namespace: str, tmp_path: Path
) -> None:
    from harness.transfer_saga import LEDGER, UNDONE, Transfer, careful, careful_coordinator

    async with bank(careful_coordinator, kafka_bootstrap, namespace, tmp_path) as rt:
        handle = await SagaClient(rt.client).start(careful, "wire-1", Transfer(wire="lost-reply"))
        outcome = await handle.result(timeout=60)
    assert outcome.status == "compensated" and outcome.step("wire").uncertain
    assert [name for name, _ in UNDONE] == ["wire", "hold"] and UNDONE[0][1] is None
    assert LEDGER == {}


async def test_a_long_backoff_waits_on_a_durable_timer_across_a_restart(
    kafka_bootstrap: str, namespace: str, tmp_path: Path
) -> None:
    from harness.transfer_saga import CALLS, Transfer, patient, patient_coordinator

    from actors.errors import SessionNotFoundError
    from actors.inspection.views import session_view

    async with bank(patient_coordinator, kafka_bootstrap, namespace, tmp_path) as rt:
        handle = await SagaClient(rt.client).start(patient, "backoff-1", Transfer())

        async def suspended() -> None:
            try:
                view = await session_view(rt.settings, patient.object_name, "backoff-1")
            except SessionNotFoundError as exc:  # its start is not processed yet
                raise AssertionError(exc) from None
            assert [w["kind"] for w in view["waits"].values()] == ["suspended invocation"], view["waits"]

        await assert_eventually(suspended, timeout=30)
        assert len(CALLS) == 1
        await rt.restart_worker()
        outcome = await handle.result(timeout=60)
    assert outcome.status == "completed"
    assert len(CALLS) == 2, "the failed attempt was journaled: not run again after the restart"
    assert CALLS[1] - CALLS[0] >= 1.4, "the backoff was honoured across the restart"


async def tether(runtime: Runtime, *args: str) -> str:
    """``tether ARGS`` against the runtime's namespace, as an operator runs it; its output."""
    return await run_ok(runtime.settings, *args)
