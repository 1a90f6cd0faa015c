"""`tether saga list|show` while a saga waits on a durable backoff and messages queue behind it.

A `tether saga retry` and a retried `SagaClient.start` reaching a coordinator that waits are
written to the events topic as ``q`` entries; the readers used to take them for ``done``
entries and fail with KeyError for good. They must show the wait instead.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from click.testing import CliRunner
from harness.cli import run as run_tether
from harness.session_harness import Runtime, assert_eventually, cli_options
from harness.transfer_saga import Receipt, Transfer

from actors import RetryableError, RetryPolicy  # noqa: E402
from actors.cli.main import build  # noqa: E402
from sagas import Saga, SagaClient  # noqa: E402
from sagas.inspect import SagaRecord, read_sagas  # noqa: E402

ATTEMPTS: list[int] = []
lingering = Saga("lingering", input=Transfer)


BACKOFF = 15.0
"""The step's one backoff: long enough for a `tether` subprocess to start on a loaded machine and
queue its message behind the wait (the test looks at the wait, so it must still be there)."""


@lingering.step("settle", retry=RetryPolicy(max_attempts=2, initial_interval=BACKOFF, max_interval=BACKOFF, jitter=0.0))
async def settle(t: Transfer, key: str) -> Receipt:
    ATTEMPTS.append(1)
    if len(ATTEMPTS) == 1:
        raise RetryableError("503 Service Unavailable")
    return Receipt(id=key)


coordinator = lingering.coordinator()


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def backend(request: pytest.FixtureRequest) -> str:
    """Both backends, for the `runtime` fixture."""
    return str(request.param)


pytestmark = pytest.mark.serves(coordinator, reset=ATTEMPTS.clear)


def cli(runtime: Runtime, *args: str) -> Any:
    options = cli_options(runtime.settings)
    result = CliRunner().invoke(build(), ["saga", args[0], *options, *args[1:]], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    return result.output


async def waiting(runtime: Runtime, *, queued: int) -> SagaRecord:
    records = await read_sagas(runtime.settings)
    assert len(records) == 1, records
    kinds = [w.kind for w in records[0].waits]
    assert kinds.count("sus") == 1 and kinds.count("q") >= queued, kinds
    return records[0]


@pytest.mark.usefixtures("keep_logging", "backend")
async def test_list_and_show_work_and_show_the_wait_while_messages_queue(runtime: Runtime) -> None:
    sagas = SagaClient(runtime.client)
    handle = await sagas.start(lingering, "w1", Transfer())
    await assert_eventually(lambda: waiting(runtime, queued=0), timeout=10)

    retry = asyncio.create_task(
        run_tether(runtime.settings, "saga", "retry", "w1", "--saga", "lingering", "--timeout", str(BACKOFF + 30))
    )
    await sagas.start(lingering, "w1", Transfer())  # a retried start: the same message again
    record = await assert_eventually(lambda: waiting(runtime, queued=2), timeout=BACKOFF)
    assert record.state.status == "running"
    assert record.waiting is not None and record.waiting.startswith("backoff until ")

    rows = json.loads(await asyncio.to_thread(cli, runtime, "list", "--json"))["items"]
    assert [(r["saga_id"], r["status"]) for r in rows] == [("w1", "running")]
    assert rows[0]["waiting"].startswith("backoff until ") and "2 message(s) queued" in rows[0]["waiting"]
    table = await asyncio.to_thread(cli, runtime, "list")
    assert "running (waiting)" in table and "backoff until" in table
    shown = json.loads(await asyncio.to_thread(cli, runtime, "show", "w1", "--json"))
    assert [w["kind"] for w in shown["waits"]] == ["suspended invocation", "queued message", "queued message"]
    assert shown["state"]["status"] == "running"
    human = await asyncio.to_thread(cli, runtime, "show", "w1")
    assert "waiting: backoff until" in human

    retried = await retry
    assert "Traceback" not in retried.output, retried.output
    assert (await handle.result(timeout=BACKOFF + 30)).status == "completed"

    await assert_eventually(lambda: asyncio.to_thread(settled_sync, runtime), timeout=10)


def settled_sync(runtime: Runtime) -> None:
    rows = json.loads(cli(runtime, "list", "--json"))["items"]
    assert [(r["status"], r["waiting"]) for r in rows] == [("completed", None)], rows
