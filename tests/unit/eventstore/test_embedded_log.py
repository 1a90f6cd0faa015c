"""What the embedded log does beyond the contract that test_log_conformance.py checks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventstore import EmbeddedLog, OutRecord, Record, TopicPartition, TopicSpec


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[str, set[int]]] = []

    async def on_assigned(self, partitions: set[int]) -> None:
        self.events.append(("assigned", partitions))

    async def on_revoked(self, partitions: set[int]) -> None:
        self.events.append(("revoked", partitions))


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EmbeddedLog]:
    """A started embedded log in `tmp_path`, closed after the test (whether it passed or not)."""
    log = EmbeddedLog(tmp_path)
    await log.start()
    yield log
    await log.close()


async def test_compacted_topic_keeps_latest_per_key_within_one_commit(log: EmbeddedLog) -> None:
    await log.create_topics([TopicSpec("c", 1, {"cleanup.policy": "compact"})])
    await log.append([OutRecord("c", 0, b"a", b"a1"), OutRecord("c", 0, b"b", b"b1")])
    writer = await log.writer("w")
    await writer.commit(
        [
            OutRecord("c", 0, b"a", b"a2"),
            OutRecord("c", 0, b"a", b"a3"),
            OutRecord("c", 0, None, b"unkeyed"),
        ]
    )
    records = [r async for r in log.read("c", 0)]
    assert [(r.offset, r.key, r.value) for r in records] == [
        (1, b"b", b"b1"),
        (3, b"a", b"a3"),
        (4, None, b"unkeyed"),
    ]
    assert await log.end_offset("c", 0) == 5


async def test_one_group_member_owns_every_partition_until_it_closes(log: EmbeddedLog) -> None:
    await log.create_topics([TopicSpec("t", 2)])
    await log.append([OutRecord("t", p, b"k", b"%d-%d" % (p, i)) for p in (0, 1) for i in (0, 1)])
    writer = await log.writer("w")
    await writer.commit([], group_id="g", offsets={TopicPartition("t", 1): 1})

    first_listener, second_listener = Listener(), Listener()
    first = await log.consumer("t", group_id="g", listener=first_listener)
    second = await log.consumer("t", group_id="g", listener=second_listener)
    got = await first.fetch(1.0)
    assert sorted((r.partition, r.offset) for r in got) == [(0, 0), (0, 1), (1, 1)]
    assert await second.fetch(0.3) == []
    assert second.assignment() == set() and second_listener.events == []

    await first.close()
    assert first_listener.events == [("assigned", {0, 1}), ("revoked", {0, 1})]
    deadline = time.monotonic() + 5
    taken: list[Record] = []
    while len(taken) < 3 and time.monotonic() < deadline:
        taken += await second.fetch(0.1)
    assert second_listener.events == [("assigned", {0, 1})]
    assert sorted((r.partition, r.offset) for r in taken) == [(0, 0), (0, 1), (1, 1)]
    await second.close()


async def test_a_loop_of_writes_lets_the_event_loop_run_other_tasks(log: EmbeddedLog) -> None:
    # A client's burst of sends in a worker's process must not starve the worker: SQLite never
    # makes a write wait, so each write yields once (W4-embedded stalled the loop for seconds).
    await log.create_topics([TopicSpec("t", 1)])
    ticks: list[int] = []

    async def other() -> None:
        for n in range(3):
            ticks.append(n)
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    for n in range(3):
        await log.append([OutRecord("t", 0, None, bytes([n]))])
    writer = await log.writer("w")
    await writer.commit([OutRecord("t", 0, None, b"x")])
    assert ticks == [0, 1, 2], "the other task ran between the writes, not after them"
    await task
