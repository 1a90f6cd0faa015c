"""Sticky rebalances on a real broker, two workers in one process: what stays is not restored.

A second worker joining takes half the partitions; the first keeps the other half, and keeps
the very processors it had (resumed in the next generation, not restored). When the second
leaves, the first keeps its own again and restores only the leaver's. With
``kafka.rebalance=eager`` every partition the first worker holds afterwards is a new processor.
The subprocess version, with SIGKILL and calls probing throughout, is
tests/chaos/test_survivor_availability.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.probe_sessions import PROBE, Item, append, probe
from harness.session_harness import WAIT, assert_eventually, keys_on_partition, settings_for

from actors import Client, Settings, Worker

pytestmark = [pytest.mark.kafka]

PARTITIONS = 4


def _holds(worker: Worker, count: int) -> None:
    assert len(worker.processors) == count and not worker._restoring, sorted(worker.processors)


async def _call_everywhere(client: Client, round_: int) -> None:
    for p in range(PARTITIONS):
        key = keys_on_partition("sticky", 1, PARTITIONS, partition=p, obj="probe")[0]
        reply = await client.call(append, key, Item(value=str(round_)), timeout=WAIT)
        assert reply.values == [str(r) for r in range(round_ + 1)]


@pytest.mark.parametrize("transactions", ["per_partition", "per_worker"])
async def test_a_join_and_a_leave_move_only_what_balance_needs(
    request: pytest.FixtureRequest, namespace: str, tmp_path: Path, transactions: str
) -> None:
    PROBE.reset()
    base = settings_for(request, "kafka", tmp_path, namespace, partitions=PARTITIONS)
    settings = base.model_copy(update={"kafka": base.kafka.model_copy(update={"transactions": transactions})})
    async with Worker([probe], settings) as first, Client.connect(settings) as client:
        await assert_eventually(lambda: _holds(first, PARTITIONS))
        await _call_everywhere(client, 0)
        original = dict(first.processors)
        second = Worker([probe], settings)
        await second.start()
        try:
            await assert_eventually(lambda: _holds(second, PARTITIONS // 2))
            await assert_eventually(lambda: _holds(first, PARTITIONS // 2))
            assert all(first.processors[p] is original[p] for p in first.processors), "restored, not kept"
            assert first.kept == PARTITIONS // 2
            await _call_everywhere(client, 1)
            kept = dict(first.processors)
        finally:
            await second.stop()  # leaves the group
        await assert_eventually(lambda: _holds(first, PARTITIONS))
        assert all(first.processors[p] is kept[p] for p in kept), "its own partitions were restored"
        assert all(first.processors[p] is not original[p] for p in set(original) - set(kept))
        await _call_everywhere(client, 2)


async def test_eager_rebalances_restore_every_partition(
    request: pytest.FixtureRequest, namespace: str, tmp_path: Path
) -> None:
    PROBE.reset()
    base = settings_for(request, "kafka", tmp_path, namespace, partitions=PARTITIONS)
    settings: Settings = base.model_copy(update={"kafka": base.kafka.model_copy(update={"rebalance": "eager"})})
    async with Worker([probe], settings) as first, Client.connect(settings) as client:
        await assert_eventually(lambda: _holds(first, PARTITIONS))
        await _call_everywhere(client, 0)
        original = dict(first.processors)
        async with Worker([probe], settings) as second:
            await assert_eventually(lambda: _holds(second, PARTITIONS // 2))
            await assert_eventually(lambda: _holds(first, PARTITIONS // 2))
            assert all(first.processors[p] is not original[p] for p in first.processors)
            assert first.kept == 0
            await _call_everywhere(client, 1)
