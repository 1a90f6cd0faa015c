"""One transactional producer for all of a worker's partitions, fenced by the group (KIP-447).

aiokafka commits offsets in a transaction with ``TxnOffsetCommit`` v0, which names only the
group, so the broker accepts a zombie's commit after a rebalance; Tether's workers therefore
fence with one transactional id per input partition (`KafkaWriter`). This writer sends the
records and offsets of a transaction through kafka-python 3's producer instead, whose
``TxnOffsetCommit`` v3 carries the member id, generation and group instance id of the consumer
that read the input (`GroupMetadata`, from the aiokafka consumer's coordinator). Once the group
has moved on, the coordinator rejects that commit, the transaction can only abort, and none of
its records becomes visible: `ProducerFencedError`.

Two rules make it safe to hand partitions over without fencing a transactional id:
- every transaction commits offsets (the fence is the offset commit: a transaction without one
  would commit whatever the group did);
- records are flushed before the offsets are sent, so a transaction that passed its offset
  commit before a rebalance already holds back the last stable offset of every partition it
  wrote: a new owner that waits for the LSO to reach the high watermark sees its outcome.

kafka-python's producer is blocking; each transaction runs in a worker thread
(`asyncio.to_thread`), one at a time. The runtime does not use this writer yet (see README,
"What fences what").
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import LogUnavailableError, ProducerFencedError, UsageError
from ..records import OutRecord, TopicPartition

with warnings.catch_warnings():
    # kafka-python 3.0 loads its protocol schemas with importlib.resources' deprecated open_text.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaProducer
    from kafka import errors as kafka_errors
    from kafka.structs import ConsumerGroupMetadata, OffsetAndMetadata
    from kafka.structs import TopicPartition as KafkaPythonTP


@dataclass(frozen=True, slots=True)
class GroupMetadata:
    """A consumer's group membership: what the coordinator checks an offset commit against."""

    group_id: str
    generation: int
    member_id: str
    instance_id: str | None = None


OnCommitted = Callable[[list[Any], dict[str, dict[TopicPartition, int]], str], None]
"""Told what a transaction wrote (record metadata, offsets) and its transactional id, once it committed."""


class KafkaGroupWriter:
    """A transactional writer whose offset commits are fenced by the consumer group's generation."""

    def __init__(
        self,
        producer: Any,  # noqa: ANN401 - kafka-python is untyped
        transactional_id: str,
        membership: Callable[[], GroupMetadata],
        on_committed: OnCommitted | None = None,
    ) -> None:
        self._producer = producer
        self._id = transactional_id
        self._membership = membership
        self._on_committed = on_committed
        self._fenced = False
        self._lock = asyncio.Lock()
        self._queue: list[tuple[GroupTransaction, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        options: Mapping[str, Any],
        transactional_id: str,
        membership: Callable[[], GroupMetadata],
        on_committed: OnCommitted | None = None,
    ) -> KafkaGroupWriter:
        """Start a kafka-python transactional producer with `options` (`client_kwargs(..., "kafka-python")`).

        Raises:
            LogUnavailableError: the cluster could not be reached or refused the producer.
        """

        def start() -> Any:  # noqa: ANN401 - kafka-python is untyped
            producer = KafkaProducer(
                **options, transactional_id=transactional_id, enable_idempotence=True, acks="all", linger_ms=1
            )
            try:
                producer.init_transactions()
            except BaseException:
                producer.close(timeout=1)
                raise
            return producer

        try:
            producer = await asyncio.to_thread(start)
        except kafka_errors.KafkaError as exc:
            raise LogUnavailableError(f"cannot open transactional producer {transactional_id!r}: {exc}") from exc
        return cls(producer, transactional_id, membership, on_committed)

    @property
    def transactional_id(self) -> str:
        """The producer's transactional id (fences older producers with the same id too)."""
        return self._id

    @property
    def fenced(self) -> bool:
        """A newer producer took the transactional id: this writer can commit nothing more."""
        return self._fenced

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[GroupTransaction]:
        """Collect a transaction's records and offsets; commit them on exit, in a thread.

        Raises:
            UsageError: the transaction commits no offsets (nothing would fence it).
            ProducerFencedError: the group moved on (stale generation or member) or a newer
                producer took the transactional id; nothing of the transaction is visible.
        """
        if self._fenced:
            raise ProducerFencedError(f"transactional writer {self._id} was fenced")
        txn = GroupTransaction()
        yield txn
        if not txn.offsets:
            raise UsageError("a group-fenced transaction must commit offsets: they are what fences it")
        await self._run(txn)

    async def commit(
        self,
        records: Sequence[OutRecord],
        *,
        group_id: str | None = None,
        offsets: Mapping[TopicPartition, int] | None = None,
    ) -> None:
        """Append `records` and commit `offsets` for `group_id`, atomically (group commit).

        Calls made while a transaction is in flight share the next one: one transaction in
        flight carries what all of them asked for, and each returns once it committed (or
        raises what failed it: the same error for all of them).

        Raises:
            UsageError: no offsets or no group (nothing would fence the transaction).
            ProducerFencedError: see `transaction`.
        """
        if not offsets or group_id is None:
            raise UsageError("a group-fenced transaction must commit offsets for a group")
        if self._fenced:
            raise ProducerFencedError(f"transactional writer {self._id} was fenced")
        txn = GroupTransaction()
        txn.records.extend(records)
        txn.commit_offsets(group_id, offsets)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((txn, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=f"group-commit-{self._id}")
        await asyncio.shield(done)

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            merged = GroupTransaction()
            for txn, _ in batch:
                merged.records.extend(txn.records)
                for group_id, offsets in txn.offsets.items():
                    merged.commit_offsets(group_id, offsets)
            try:
                await self._run(merged)
            except BaseException as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def _run(self, txn: GroupTransaction) -> None:
        async with self._lock:
            metadata = await asyncio.to_thread(self._commit, txn)
        if self._on_committed is not None:
            self._on_committed(metadata, txn.offsets, self._id)

    def _commit(self, txn: GroupTransaction) -> list[Any]:
        producer = self._producer
        try:
            producer.begin_transaction()
            futures = [
                producer.send(r.topic, r.value, key=r.key, partition=r.partition, headers=list(r.headers))
                for r in txn.records
            ]
            # Every record is in the log before the offsets commit: see the module docstring.
            producer.flush()
            metadata = [f.get(0) for f in futures]
            for group_id, offsets in txn.offsets.items():
                membership = self._membership()
                if membership.generation < 0 or not membership.member_id:
                    # The coordinator accepts a transactional commit that names no member and
                    # generation (v0 compatibility): a consumer that lost its membership (it
                    # resets both) must not send one.
                    raise kafka_errors.CommitFailedError(f"not a member of group {group_id!r} now")
                if membership.group_id != group_id:
                    raise UsageError(f"offsets for group {group_id!r}, but the membership is {membership.group_id!r}")
                producer.send_offsets_to_transaction(
                    {KafkaPythonTP(tp.topic, tp.partition): OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()},
                    ConsumerGroupMetadata(
                        membership.group_id, membership.generation, membership.member_id, membership.instance_id
                    ),
                )
            producer.commit_transaction()
            return metadata
        except (kafka_errors.CommitFailedError, kafka_errors.FencedInstanceIdError) as exc:
            self._abort()
            raise ProducerFencedError(
                f"transactional writer {self._id}: the group moved on, its offset commit was refused ({exc})"
            ) from exc
        except kafka_errors.ProducerFencedError as exc:
            self._fenced = True
            raise ProducerFencedError(f"transactional writer {self._id} was fenced by a newer producer") from exc
        except kafka_errors.KafkaError as exc:
            self._abort()
            raise LogUnavailableError(f"transaction of {self._id} failed: {exc}") from exc
        except BaseException:
            self._abort()
            raise

    def _abort(self) -> None:
        try:
            self._producer.abort_transaction()
        except kafka_errors.KafkaError:
            pass  # a fatal state: the producer cannot abort, the broker times the transaction out

    def shared(self) -> SharedGroupWriter:
        """A handle on this writer for one partition's processor; closing it leaves the writer open."""
        return SharedGroupWriter(self)

    async def close(self) -> None:
        """Close the producer (an open transaction is aborted by the broker)."""
        if self._flusher is not None and not self._flusher.done():
            await asyncio.gather(self._flusher, return_exceptions=True)
        await asyncio.to_thread(self._producer.close, 5)


class SharedGroupWriter:
    """One partition's view of a worker's `KafkaGroupWriter` (a `TransactionalWriter`)."""

    def __init__(self, writer: KafkaGroupWriter) -> None:
        self._writer = writer

    @property
    def transactional_id(self) -> str:
        """The worker's transactional id."""
        return self._writer.transactional_id

    def transaction(self) -> AbstractAsyncContextManager[GroupTransaction]:
        """A transaction of its own (not group committed)."""
        return self._writer.transaction()

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


class GroupTransaction:
    """The records and offsets of one transaction of a `KafkaGroupWriter`."""

    def __init__(self) -> None:
        self.records: list[OutRecord] = []
        self.offsets: dict[str, dict[TopicPartition, int]] = {}

    async def send(self, record: OutRecord) -> None:
        """Add a record; it becomes visible when the transaction commits."""
        self.records.append(record)

    def commit_offsets(self, group_id: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit consumer offsets (next offset to read) as part of this transaction."""
        self.offsets.setdefault(group_id, {}).update(offsets)
