"""One transaction in flight for all of a worker's partitions, fenced by the group (KIP-447).

`GroupCommitWriter` wraps the worker's one transactional writer (an aiokafka producer whose
offset commits speak ``TxnOffsetCommit`` v3 with the consumer's membership: `kip447`) and
group-commits: the partitions' commits made while a transaction is in flight share the next
one. The coordinator refuses the offset commit of a member the group has moved on from, so a
zombie's transaction can only abort and none of its records becomes visible
(`ProducerFencedError`).

Two rules make it safe to hand partitions over without fencing a transactional id per
partition:
- every transaction commits offsets (the fence is the offset commit: a transaction without one
  would commit whatever the group did);
- a new owner waits until no transaction is open on the partition (`KafkaLog.settle`): one
  that passed its offset commit before the rebalance may still commit, and its records (every
  one acknowledged before the offsets are sent) hold back the partition's last stable offset
  until it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from ..errors import ProducerFencedError, UsageError
from ..log import Transaction
from ..records import OutRecord, TopicPartition


class FencingWriter(Protocol):
    """The transactional writer a `GroupCommitWriter` commits through."""

    @property
    def transactional_id(self) -> str:
        """The id that fences older writers."""

    @property
    def fenced(self) -> bool:
        """A newer writer took the transactional id."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """Open a transaction that commits on exit and aborts if the block raises."""

    async def close(self) -> None:
        """Release the writer."""


@dataclass(slots=True)
class _Commit:
    records: Sequence[OutRecord]
    group_id: str
    offsets: Mapping[TopicPartition, int]
    done: asyncio.Future[None]


class GroupCommitWriter:
    """Group commit over one fencing writer: one transaction in flight, shared by every caller."""

    def __init__(self, writer: FencingWriter) -> None:
        self._writer = writer
        self._queue: list[_Commit] = []
        self._flusher: asyncio.Task[None] | None = None
        self.transactions = 0
        """Transactions committed (for tests and stats)."""

    @property
    def transactional_id(self) -> str:
        """The worker's transactional id."""
        return self._writer.transactional_id

    @property
    def fenced(self) -> bool:
        """A newer producer took the transactional id: nothing more can be committed."""
        return self._writer.fenced

    async def commit(
        self,
        records: Sequence[OutRecord],
        *,
        group_id: str | None = None,
        offsets: Mapping[TopicPartition, int] | None = None,
    ) -> None:
        """Append `records` and commit `offsets` for `group_id` atomically, in a shared transaction.

        Calls made while a transaction is in flight share the next one; each returns once it
        committed, or raises what failed it (the same error for every call it carried).

        Raises:
            UsageError: no offsets or no group (nothing would fence the transaction).
            ProducerFencedError: the group moved on from this member, or a newer producer took
                the transactional id; nothing of the transaction is visible.
        """
        if not offsets or group_id is None:
            raise UsageError("a group-fenced transaction must commit offsets for a group")
        if self._writer.fenced:
            raise ProducerFencedError(f"transactional writer {self.transactional_id} was fenced")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Commit(records, group_id, offsets, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=f"group-commit-{self.transactional_id}")
        await asyncio.shield(done)

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                async with self._writer.transaction() as txn:
                    for commit in batch:
                        for record in commit.records:
                            await txn.send(record)
                    offsets: dict[str, dict[TopicPartition, int]] = {}
                    for commit in batch:  # later commits of a partition carry its later offsets
                        offsets.setdefault(commit.group_id, {}).update(commit.offsets)
                    for group_id, group_offsets in offsets.items():
                        txn.commit_offsets(group_id, group_offsets)
            except BaseException as exc:
                for commit in batch:
                    if not commit.done.done():
                        commit.done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            self.transactions += 1
            for commit in batch:
                if not commit.done.done():
                    commit.done.set_result(None)

    def shared(self) -> SharedGroupWriter:
        """A handle for one partition's processor; closing it leaves this writer open."""
        return SharedGroupWriter(self)

    async def close(self) -> None:
        """Finish the transaction in flight, then close the producer."""
        if self._flusher is not None and not self._flusher.done():
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._writer.close()


class SharedGroupWriter:
    """One partition's view of a worker's `GroupCommitWriter` (a `TransactionalWriter`)."""

    def __init__(self, writer: GroupCommitWriter) -> None:
        self._writer = writer

    @property
    def transactional_id(self) -> str:
        """The worker's transactional id."""
        return self._writer.transactional_id

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """Not offered: a partition's writes go through the shared, group-committed `commit`."""
        raise UsageError("a shared group writer commits through commit() only")

    async def commit(
        self,
        records: Sequence[OutRecord],
        *,
        group_id: str | None = None,
        offsets: Mapping[TopicPartition, int] | None = None,
    ) -> None:
        """Group-commit `records` and `offsets` with what the worker's other partitions commit."""
        await self._writer.commit(records, group_id=group_id, offsets=offsets)

    async def close(self) -> None:
        """Nothing: the worker closes its writer."""
