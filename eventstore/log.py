"""The contract every log backend keeps: Kafka and the embedded file log alike.

Guarantees, for both backends:
- Appends through a `TransactionalWriter` are atomic: the records of one transaction and the
  consumer offsets committed with it become visible together, or (on abort, crash or fencing)
  never. Readers only ever see committed records (``read_committed``).
- Opening a writer with a transactional id fences every older writer with the same id: their
  next commit raises `ProducerFencedError` and nothing of theirs becomes visible.
- Offsets within a partition only grow; reading from an offset returns records in offset order.
  They are not dense: on Kafka, aborted records and transaction markers take offsets too, so
  count records, never offset differences.
- Every call returns only once its effect is durable (acks from all in-sync replicas, or fsync'd
  to the file log).
- Visibility. Reads through the log instance that committed (`read`, `end_offset`,
  `committed`) see the commit as soon as it returns. Other instances and processes see it
  shortly after: Kafka writes commit markers asynchronously, usually within milliseconds.
  Opening a writer completes every earlier transaction of its transactional id first, so a
  new owner that opens its writer and *then* reads sees everything the old owner committed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from .errors import UsageError
from .records import OutRecord, Record, TopicPartition
from .topics import TopicSpec


class Transaction(Protocol):
    """The body of one open transaction."""

    async def send(self, record: OutRecord) -> None:
        """Add a record; it becomes visible when the transaction commits."""

    def commit_offsets(self, group_id: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit consumer offsets (next offset to read) as part of this transaction."""


class TransactionalWriter(Protocol):
    """A fencing, transactional writer; one per transactional id at a time."""

    @property
    def transactional_id(self) -> str:
        """The id that fences older writers."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """Open a transaction that commits on exit and aborts if the block raises.

        Raises:
            ProducerFencedError: a newer writer took this transactional id.
        """

    async def commit(
        self,
        records: Sequence[OutRecord],
        *,
        group_id: str | None = None,
        offsets: Mapping[TopicPartition, int] | None = None,
    ) -> None:
        """Append `records` and commit `offsets` for `group_id` in one transaction.

        Backends inherit this from the protocol: it is `transaction` with a fixed body.
        """
        if offsets and group_id is None:
            raise UsageError("committing offsets needs a group_id")
        async with self.transaction() as txn:
            for r in records:
                await txn.send(r)
            if offsets and group_id is not None:
                txn.commit_offsets(group_id, offsets)

    async def close(self) -> None:
        """Release the writer; an open transaction is aborted."""


class PartitionListener(Protocol):
    """Told when the group gives partitions to this member or takes them away."""

    async def on_assigned(self, partitions: set[int]) -> None:
        """Partitions now owned; called before records of them are fetched."""

    async def on_revoked(self, partitions: set[int]) -> None:
        """Partitions about to be taken away; stop writing for them before returning."""


class LogConsumer(Protocol):
    """Fetches committed records of one topic, for a group member or a manual reader."""

    async def fetch(self, timeout: float, max_records: int = 2000) -> list[Record]:
        """Return the next records (possibly none after `timeout` seconds)."""

    def seek(self, partition: int, offset: int) -> None:
        """Fetch `partition` from `offset` next."""

    def assignment(self) -> set[int]:
        """Partitions currently fetched."""

    def position(self, partition: int) -> int | None:
        """The offset `fetch` returns next for `partition`; None if not known (not assigned yet).

        Past the transaction markers after the records returned so far (Kafka), so a reader
        that has finished everything up to its position has no lag, where its committed
        offset (the last record's plus one) still lags the end offset by the markers.
        """

    async def close(self) -> None:
        """Leave the group (if any) and release resources."""


class EventLog(Protocol):
    """A partitioned, transactional log of records."""

    async def start(self) -> None:
        """Connect; raises `LogUnavailableError` when the log cannot be reached."""

    async def close(self) -> None:
        """Release every connection; idempotent."""

    async def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create missing topics; existing ones are left alone (idempotent)."""

    async def partition_count(self, topic: str) -> int:
        """Number of partitions of `topic`; raises `TopicError` if it does not exist."""

    async def append(self, records: Sequence[OutRecord]) -> None:
        """Append outside any transaction; durable on return. Not atomic across records."""

    def read(self, topic: str, partition: int, start: int = 0, end: int | None = None) -> AsyncIterator[Record]:
        """Committed records of a partition from `start` up to `end` (default: the end now)."""

    async def end_offset(self, topic: str, partition: int) -> int:
        """The offset after the last committed record (Kafka: last stable offset)."""

    async def settled_end_offset(self, topic: str, partition: int, timeout: float) -> int:
        """`end_offset` once every transaction that had written to the partition has ended.

        Those that had written to it when called; it waits at most `timeout` seconds (then it
        is `end_offset` as it is).

        For readers that must see what another process committed just before: Kafka makes a
        committed transaction visible to read_committed readers only once its markers are
        written, after the writer's commit returned (its records are in the partition already).
        """

    async def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        """The earliest offset whose record's time is at or after `timestamp_ms`.

        Kafka's offsets-for-times; the end offset when there is none.
        """

    async def committed(self, group_id: str, tp: TopicPartition) -> int | None:
        """The committed offset of a group on a partition, or None."""

    async def writer(self, transactional_id: str) -> TransactionalWriter:
        """A ready transactional writer; fences every older writer with this id."""

    async def consumer(
        self,
        topic: str,
        *,
        group_id: str | None = None,
        listener: PartitionListener | None = None,
        partitions: Mapping[int, int] | None = None,
    ) -> LogConsumer:
        """A consumer of `topic`.

        With `group_id` and `listener` the group assigns partitions and each starts at the
        group's committed offset (or the beginning). With `partitions` (partition -> start
        offset, -1 for the end) the reader is manual and joins no group.
        """
