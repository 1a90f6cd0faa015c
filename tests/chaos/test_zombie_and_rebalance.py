"""Zombie fencing and rebalances: a partition has one writer at a time, and moving partitions
between workers under load loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from harness.ledger_chaos import LedgerLoad, TwoLedgerWorkers, ledger_lines, verify
from harness.probe_sessions import PROBE, Item, append, gated_step, new_id, probe
from harness.session_harness import (
    WAIT,
    WorkerProcess,
    assert_eventually,
    keys_on_partition,
    open_runtime,
    read_invocations,
    settings_for,
)

from actors import Client, Worker  # noqa: E402
from eventstore import EventLog, ProducerFencedError, Topics, open_log  # noqa: E402

pytestmark = [pytest.mark.slow]


class _ManualConsumer:
    """Stands in for the group consumer of a worker whose partitions the test hands over."""

    def __init__(self) -> None:
        self.positions: dict[int, int] = {}

    def seek(self, partition: int, offset: int) -> None:
        self.positions[partition] = offset

    def assignment(self) -> set[int]:
        return {0}  # the partition the test hands over

    def position(self, partition: int) -> int | None:
        return self.positions.get(partition)

    async def close(self) -> None:
        pass


async def _feed(log: EventLog, topic: str, partition: int, start: int, processor: object) -> None:
    """Deliver inbox records to `processor` as the worker's fetch loop would."""
    consumer = await log.consumer(topic, partitions={partition: start})
    try:
        while True:
            for record in await consumer.fetch(0.1):
                processor.submit(record)  # type: ignore[attr-defined]
    finally:
        await consumer.close()


@pytest.mark.parametrize("backend", ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
async def test_zombie_worker_is_fenced(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, namespace: str
) -> None:
    """A second worker takes partition 0 from a live first one: the first one's next commit
    raises ProducerFencedError and none of it becomes visible; the new owner finishes the work."""
    PROBE.reset()
    settings = settings_for(request, backend, tmp_path, namespace, partitions=2)
    key = keys_on_partition("z", 1, 2, partition=0, obj="probe")[0]
    other = keys_on_partition("z", 1, 2, partition=1, obj="probe")[0]
    async with open_runtime([probe], settings) as rt:
        first = rt.worker
        assert first is not None
        assert (await rt.client.call(append, key, Item(value="before"), timeout=WAIT)).values == ["before"]
        zombie = (await rt.processors())[0]
        message_id = new_id()
        call = asyncio.create_task(
            rt.client.call(gated_step, key, Item(value="fx", gate="g"), timeout=WAIT, idempotency_key=message_id)
        )

        def blocked_and_idle() -> None:
            assert PROBE.started == ["g"]
            # Nothing left to commit: the zombie's next transaction is the step's journal entry.
            assert zombie.commits.committed == zombie.offsets.watermark()
            assert zombie.commits.pending_records == 0

        await assert_eventually(blocked_and_idle)

        second = Worker([probe], settings)
        await second._log.start()
        second._partitions = settings.partitions
        manual = _ManualConsumer()
        second._consumer = manual  # type: ignore[assignment]
        feeding: asyncio.Task[None] | None = None
        try:
            await second._take(0)  # a new writer for {ns}-pp-0: fences the first worker
            PROBE.open("g")

            def fenced() -> None:
                assert isinstance(zombie.failed, ProducerFencedError), zombie.failed
                assert 0 not in first.processors

            await assert_eventually(fenced)
            assert PROBE.executions["fx"] == 1  # the zombie ran the step but could not journal it
            invocations = await read_invocations(rt.log, rt.topics)
            assert (message_id, 0) not in invocations.steps
            assert message_id not in invocations.done
            assert not call.done()
            # The first worker goes on with the partition it still owns.
            assert (await rt.client.call(append, other, Item(value="p1"), timeout=WAIT)).values == ["p1"]

            # The new owner resumes at the committed offset and finishes the invocation.
            owner = second.processors[0]
            feeding = asyncio.create_task(_feed(rt.log, rt.topics.inbox, 0, manual.positions[0], owner))
            reply = await asyncio.wait_for(call, WAIT)
            assert reply.values == ["before", "fx:2"]
            assert PROBE.executions["fx"] == 2
            invocations = await read_invocations(rt.log, rt.topics)
            assert invocations.steps[(message_id, 0)]["r"] == 2
            assert invocations.done[message_id]["r"] == {"values": ["before", "fx:2"]}
            assert invocations.duplicate_done == [] and invocations.duplicate_steps == []
        finally:
            if feeding is not None:
                feeding.cancel()
                await asyncio.gather(feeding, return_exceptions=True)
            await second.stop()


@pytest.mark.kafka
@pytest.mark.parametrize("transactions", ["per_partition", "per_worker"])
async def test_rebalance_under_load_loses_and_duplicates_nothing(
    kafka_bootstrap: str, namespace: str, tmp_path: Path, transactions: str
) -> None:
    """A second worker joins under load and later leaves on SIGTERM; exactly once throughout."""
    workers = TwoLedgerWorkers.make(kafka_bootstrap, namespace, tmp_path, TETHER_KAFKA__TRANSACTIONS=transactions)
    settings, ledger, a, b = workers.settings, workers.ledger, workers.a, workers.b
    log = open_log(settings)
    a.start()
    try:
        await log.start()
        async with Client.connect(settings) as client:
            load = LedgerLoad(client, [f"r{i}" for i in range(12)], 0, seed=11, pause=(0.1, 0.5))
            stop = asyncio.Event()
            running = asyncio.create_task(load.run(until=stop))

            async def progress(worker: WorkerProcess, lines: int = 20) -> None:
                start = ledger_lines(ledger)

                def grew() -> None:
                    assert worker.alive(), worker.output()[-3000:]
                    assert ledger_lines(ledger) >= start + lines, "no progress"

                await assert_eventually(grew, timeout=60)

            await progress(a)
            b.start()
            await assert_eventually(lambda: b.assert_restored(why="no partition assigned yet"), timeout=60)
            await progress(b)
            restores_before_leave = a.restored_partitions()
            assert b.terminate() == 0, b.output()[-3000:]
            await assert_eventually(
                lambda: a.assert_restored(restores_before_leave, "the partitions of the leaver were not taken over"),
                timeout=60,
            )
            await progress(a)
            assert not running.done()
            stop.set()
            await asyncio.wait_for(running, 120)
            await load.barriers()
            try:
                verdict = await verify(load, client, log, Topics(settings.namespace), ledger)
            except AssertionError:
                print(a.logs(), b.logs())
                raise
            print(
                f"{load.done_ops} operations, {len(verdict.invocations.done)} invocations, "
                f"{verdict.reexecuted} effects ran again, {load.call_retries} call retries"
            )
            pids = {json.loads(line)["pid"] for line in ledger.read_text().splitlines()}
            assert b.pid in pids, "the second worker ran no invocation"
            assert a.alive()
    finally:
        a.cleanup()
        b.cleanup()
        await log.close()
