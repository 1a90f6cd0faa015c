"""Time in sagas. A step whose attempts timed out may have taken effect: with
``compensate_timeouts`` it is compensated too (its compensation gets None as the result), in
reverse order with the rest. A long backoff between attempts is a durable timer: the
coordinator suspends, and a restart does not start the wait again. The Kafka run of the first
scenario is in tests/integration/test_sagas.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from harness.session_harness import Runtime, assert_eventually, make_settings, open_runtime
from harness.transfer_saga import (
    CALLS,
    LEDGER,
    UNDONE,
    Receipt,
    Transfer,
    careful,
    careful_coordinator,
    patient,
    patient_coordinator,
    plain,
    plain_coordinator,
    reset,
)

from actors import UsageError  # noqa: E402
from actors.cli.main import build  # noqa: E402
from actors.errors import SessionNotFoundError  # noqa: E402
from actors.inspection.views import session_view  # noqa: E402
from sagas import Saga, SagaClient  # noqa: E402

pytestmark = pytest.mark.serves(careful_coordinator, plain_coordinator, patient_coordinator, reset=reset)


async def test_a_timed_out_step_is_compensated_before_the_ones_it_followed(runtime: Runtime) -> None:
    outcome = await (await SagaClient(runtime.client).start(careful, "t1", Transfer(wire="lost-reply"))).result(
        timeout=30
    )
    assert outcome.status == "compensated" and outcome.failed_step == "wire"
    wire = outcome.step("wire")
    assert wire.uncertain and [a.error.type for a in wire.attempts if a.error] == ["TimeoutError"] * 2
    assert [(name, got) for name, got in UNDONE] == [("wire", None), ("hold", Receipt(id="careful/t1:hold:action"))]
    assert sorted(outcome.compensated_steps) == ["hold", "wire"]
    assert LEDGER == {}, "every effect, including the unanswered wire, was undone"


async def test_without_the_option_the_timed_out_effect_stays(runtime: Runtime) -> None:
    outcome = await (await SagaClient(runtime.client).start(plain, "t2", Transfer(wire="lost-reply"))).result(
        timeout=30
    )
    assert outcome.status == "compensated" and not outcome.step("wire").uncertain
    assert [name for name, _ in UNDONE] == ["hold"]
    assert LEDGER == {"plain/t2:wire:action": "wire"}, "the default trusts that a failed step did nothing"


async def test_a_refused_step_is_certain_and_not_compensated(runtime: Runtime) -> None:
    outcome = await (await SagaClient(runtime.client).start(careful, "t3", Transfer(wire="refused"))).result(timeout=30)
    assert outcome.status == "compensated" and not outcome.step("wire").uncertain
    assert [name for name, _ in UNDONE] == ["hold"]


async def test_a_step_that_completed_gets_its_result_as_always(runtime: Runtime) -> None:
    outcome = await (await SagaClient(runtime.client).start(careful, "t4", Transfer())).result(timeout=30)
    assert outcome.status == "compensated" and outcome.failed_step == "fail"
    assert UNDONE == [("wire", Receipt(id="careful/t4:wire:action")), ("hold", Receipt(id="careful/t4:hold:action"))]


def test_the_option_needs_a_compensation_that_accepts_none() -> None:
    saga = Saga("checks", input=Transfer)
    with pytest.raises(UsageError, match="needs a compensation"):
        saga.step("x", compensate_timeouts=True)

    @saga.step("y", compensate="undo_y", compensate_timeouts=True)
    async def y(t: Transfer, key: str) -> Receipt: ...

    with pytest.raises(UsageError, match="as Optional"):

        @saga.compensation("y")
        async def undo_y(t: Transfer, done: Receipt, key: str) -> None: ...


async def test_a_long_backoff_is_a_durable_timer_that_survives_a_restart(runtime: Runtime) -> None:
    handle = await SagaClient(runtime.client).start(patient, "p1", Transfer())

    async def suspended() -> dict[str, object]:
        try:
            view = await session_view(runtime.settings, patient.object_name, "p1")
        except SessionNotFoundError as exc:  # its start is not processed yet
            raise AssertionError(exc) from None
        assert [w["kind"] for w in view["waits"].values()] == ["suspended invocation"], view["waits"]
        return view

    await assert_eventually(suspended, timeout=10)
    assert len(CALLS) == 1, "the first attempt failed and the coordinator waits, out of memory"
    await runtime.restart_worker()
    outcome = await handle.result(timeout=30)
    assert outcome.status == "completed"
    assert len(CALLS) == 2, "the failed attempt was journaled: not run again after the restart"
    assert CALLS[1] - CALLS[0] >= 1.4, "the backoff was honoured across the restart"
    assert [a.error is None for a in outcome.step("settle").attempts] == [False, True]


async def test_an_attempt_that_times_out_is_retried(runtime: Runtime) -> None:
    outcome = await (await SagaClient(runtime.client).start(careful, "t5", Transfer(wire="slow-once"))).result(
        timeout=30
    )
    wire = outcome.step("wire")
    assert len(wire.attempts) == 2 and wire.attempts[1].error is None
    assert wire.attempts[0].error is not None and wire.attempts[0].error.type == "TimeoutError"
    assert "timed out after 0.1 s" in wire.attempts[0].error.message
    assert not wire.uncertain, "it succeeded in the end: its result is known"
    assert UNDONE[0] == ("wire", Receipt(id="careful/t5:wire:action")), (
        "compensated with its result, as a completed step"
    )


@pytest.mark.usefixtures("keep_logging")
def test_saga_show_marks_an_uncertain_step(tmp_path: Path, namespace: str) -> None:
    reset()
    settings = make_settings("embedded", tmp_path, namespace, partitions=2)

    async def run() -> None:
        async with open_runtime([careful_coordinator], settings) as rt:
            await (await SagaClient(rt.client).start(careful, "t6", Transfer(wire="lost-reply"))).result(timeout=30)

    asyncio.run(run())  # no worker runs from here on
    options = ["--data-dir", str(tmp_path), "-n", namespace]
    as_json = CliRunner().invoke(build(), ["saga", "show", "t6", *options, "--json"])
    assert as_json.exit_code == 0, as_json.output
    steps = {step["name"]: step for step in json.loads(as_json.output)["state"]["steps"]}
    assert (steps["wire"]["uncertain"], steps["wire"]["status"]) == (True, "compensated")
    assert not steps["hold"]["uncertain"]
    shown = CliRunner().invoke(build(), ["saga", "show", "t6", *options], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    wire = next(line for line in shown.output.splitlines() if " wire " in line)
    assert "may have taken effect" in wire and "TimeoutError" in wire, shown.output
    hold = next(line for line in shown.output.splitlines() if " hold " in line)
    assert "may have taken effect" not in hold
