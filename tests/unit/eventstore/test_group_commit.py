"""GroupCommitWriter without a broker: what it puts in each transaction, and how failures spread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import pytest

from eventstore import ProducerFencedError, UsageError
from eventstore.kafka.group_writer import GroupCommitWriter
from eventstore.records import OutRecord, TopicPartition


class _Txn:
    def __init__(self) -> None:
        self.records: list[OutRecord] = []
        self.offsets: dict[str, dict[TopicPartition, int]] = {}

    async def send(self, record: OutRecord) -> None:
        self.records.append(record)

    def commit_offsets(self, group_id: str, offsets: Mapping[TopicPartition, int]) -> None:
        self.offsets.setdefault(group_id, {}).update(offsets)


class _Writer:
    """Commits after `gate` opens; fails the transaction while `failure` is set."""

    def __init__(self) -> None:
        self.committed: list[_Txn] = []
        self.gate = asyncio.Event()
        self.failure: Exception | None = None
        self.fenced = False
        self.closed = False

    @property
    def transactional_id(self) -> str:
        return "t-worker"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Txn]:
        txn = _Txn()
        yield txn
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        self.committed.append(txn)

    async def close(self) -> None:
        self.closed = True


def _record(p: int, n: int) -> OutRecord:
    return OutRecord("events", p, b"k", b"%d" % n)


def _offset(p: int, n: int) -> dict[TopicPartition, int]:
    return {TopicPartition("inbox", p): n}


async def test_commits_made_while_one_is_in_flight_share_the_next_transaction() -> None:
    inner = _Writer()
    writer = GroupCommitWriter(inner)
    first = asyncio.create_task(writer.commit([_record(0, 0)], group_id="g", offsets=_offset(0, 1)))
    await asyncio.sleep(0.01)  # the first transaction is in flight, held at the gate
    rest = [
        asyncio.create_task(writer.commit([_record(p % 2, p)], group_id="g", offsets=_offset(p % 2, p + 1)))
        for p in range(1, 7)
    ]
    await asyncio.sleep(0.01)
    assert not first.done()
    inner.gate.set()
    await asyncio.gather(first, *rest)
    assert [len(t.records) for t in inner.committed] == [1, 6]
    # One offset per partition, the last asked for (later commits of a partition carry later offsets).
    assert inner.committed[1].offsets == {"g": {TopicPartition("inbox", 0): 7, TopicPartition("inbox", 1): 6}}
    assert writer.transactions == 2
    await writer.close()
    assert inner.closed


async def test_a_failed_transaction_fails_every_commit_it_carried_and_the_next_one_goes_on() -> None:
    inner = _Writer()
    writer = GroupCommitWriter(inner)
    inner.failure = ProducerFencedError("the group moved on")
    inner.gate.set()
    results = await asyncio.gather(
        *(writer.commit([_record(p, p)], group_id="g", offsets=_offset(p, 1)) for p in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(r, ProducerFencedError) for r in results), results
    assert inner.committed == []
    inner.failure = None
    await writer.commit([_record(0, 9)], group_id="g", offsets=_offset(0, 2))
    assert [t.records for t in inner.committed] == [[_record(0, 9)]]


async def test_a_commit_without_offsets_is_refused_and_a_fenced_writer_commits_nothing() -> None:
    inner = _Writer()
    inner.gate.set()
    writer = GroupCommitWriter(inner)
    with pytest.raises(UsageError, match="must commit offsets"):
        await writer.commit([_record(0, 0)])
    with pytest.raises(UsageError, match="must commit offsets"):
        await writer.commit([_record(0, 0)], group_id="g", offsets={})
    inner.fenced = True
    with pytest.raises(ProducerFencedError):
        await writer.commit([_record(0, 0)], group_id="g", offsets=_offset(0, 1))
    assert inner.committed == []
    shared = writer.shared()
    with pytest.raises(UsageError, match="commit\\(\\) only"):
        shared.transaction()
    await shared.close()  # leaves the worker's writer open
    assert not inner.closed
