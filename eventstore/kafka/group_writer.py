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
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
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


class KafkaGroupWriter:
    """A transactional writer whose offset commits are fenced by the consumer group's generation."""

    def __init__(
        self,
        producer: Any,
        transactional_id: str,
        membership: Callable[[], GroupMetadata],  # noqa: ANN401
    ) -> None:
        self._producer = producer
        self._id = transactional_id
        self._membership = membership
        self._fenced = False
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, options: Mapping[str, Any], transactional_id: str, membership: Callable[[], GroupMetadata]
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
        return cls(producer, transactional_id, membership)

    @property
    def transactional_id(self) -> str:
        """The producer's transactional id (fences older producers with the same id too)."""
        return self._id

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
        async with self._lock:
            await asyncio.to_thread(self._commit, txn)

    async def commit(
        self,
        records: list[OutRecord],
        *,
        group_id: str | None = None,
        offsets: Mapping[TopicPartition, int] | None = None,
    ) -> None:
        """Append `records` and commit `offsets` for `group_id` in one transaction."""
        if not offsets or group_id is None:
            raise UsageError("a group-fenced transaction must commit offsets for a group")
        async with self.transaction() as txn:
            for r in records:
                await txn.send(r)
            txn.commit_offsets(group_id, offsets)

    def _commit(self, txn: GroupTransaction) -> None:
        producer = self._producer
        try:
            producer.begin_transaction()
            for r in txn.records:
                producer.send(r.topic, r.value, key=r.key, partition=r.partition, headers=list(r.headers))
            # Every record is in the log before the offsets commit: see the module docstring.
            producer.flush()
            for group_id, offsets in txn.offsets.items():
                membership = self._membership()
                if membership.group_id != group_id:
                    raise UsageError(f"offsets for group {group_id!r}, but the membership is {membership.group_id!r}")
                producer.send_offsets_to_transaction(
                    {KafkaPythonTP(tp.topic, tp.partition): OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()},
                    ConsumerGroupMetadata(
                        membership.group_id, membership.generation, membership.member_id, membership.instance_id
                    ),
                )
            producer.commit_transaction()
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

    async def close(self) -> None:
        """Close the producer (an open transaction is aborted by the broker)."""
        await asyncio.to_thread(self._producer.close, 5)


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
