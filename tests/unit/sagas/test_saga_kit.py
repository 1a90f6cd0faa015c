"""Sagas on the test kit: an hour-long backoff between attempts is a durable timer that a restart
keeps, in virtual time (tests/unit/sagas/test_saga_timeouts.py has the same on real time, with
1.5 s)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from actors import RetryableError, RetryPolicy
from actors.testing import SessionTestKit
from sagas import Saga
from sagas.testing import SagaProbe, run_saga

pytestmark = pytest.mark.timeout(30)


class Order(BaseModel):
    amount: float = 10.0


class Receipt(BaseModel):
    id: str


hourly = Saga("hourly", input=Order)


@hourly.step("settle", retry=RetryPolicy(max_attempts=3, initial_interval=3600, max_interval=7200, jitter=0.0))
async def settle(order: Order, key: str) -> Receipt:
    return Receipt(id=key)


coordinator = hourly.coordinator()


async def test_an_hour_long_backoff_is_a_durable_timer_that_survives_a_restart() -> None:
    async with SessionTestKit(coordinator) as kit:
        started = kit.now
        with SagaProbe(hourly) as probe:
            probe.fail("settle", RetryableError("503 Service Unavailable"), at=[1])
            await kit.send(hourly.start, "o1", Order())
            (wait,) = kit.waits()
            assert wait.wake_at is not None and (wait.wake_at - started).total_seconds() == pytest.approx(3600, abs=1)
            await kit.restart()  # the coordinator waits out of memory: rebuilt from the log
            assert len(kit.waits()) == 1
            outcome = await run_saga(kit, hourly, "o1", Order())  # the same start: applied once
        assert outcome.status == "completed"
        assert [(c.attempt, c.failed) for c in probe.calls] == [(1, "RetryableError"), (2, None)]
        assert (kit.now - started).total_seconds() == pytest.approx(3600, abs=1)
