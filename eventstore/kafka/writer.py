"""Transactional writes through aiokafka: one producer per transactional id, which fences."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer
from aiokafka import TopicPartition as KafkaTP
from aiokafka.errors import KafkaError, ProducerFenced

from ..errors import ProducerFencedError
from ..log import TransactionalWriter
from ..records import OutRecord, TopicPartition
from .adapt import FENCED, translate
from .kip447 import StaleMembershipError

if TYPE_CHECKING:
    from .log import KafkaLog

log = logging.getLogger("eventstore.kafka.log")


class KafkaWriter(TransactionalWriter):
    """`TransactionalWriter` over an aiokafka transactional producer; one transaction at a time."""

    def __init__(
        self, log: KafkaLog, producer: AIOKafkaProducer, transactional_id: str, *, records_before_offsets: bool = False
    ) -> None:
        self._log = log
        self._producer = producer
        self._id = transactional_id
        self._fenced = False
        self._records_before_offsets = records_before_offsets
        """Wait for every record's ack before committing offsets (a group-fenced writer: once its
        offset commit is accepted, its records must already hold back the last stable offset)."""

    @property
    def transactional_id(self) -> str:
        """The id that fences older writers."""
        return self._id

    @property
    def fenced(self) -> bool:
        """A newer writer took the transactional id: this one can commit nothing more."""
        return self._fenced

    def _fenced_error(self) -> ProducerFencedError:
        self._fenced = True
        # A fenced producer fails its transaction waiter, which nobody awaits any more; retrieve
        # its error so that asyncio does not log it as lost.
        # The same holds for the batches it can no longer send. Private attributes: if aiokafka
        # renames them, the cost is a few "exception was never retrieved" log lines.
        try:
            futures = [self._producer._txn_manager.wait_for_transaction_end()]
            accumulator = self._producer._message_accumulator
            for batches in accumulator._batches.values():
                futures.extend(batch._drain_waiter for batch in batches)
            futures.extend(batch._drain_waiter for batch in accumulator._pending_batches)
        except AttributeError:
            futures = []
        for future in futures:
            if future is not None and future.done() and not future.cancelled():
                future.exception()
        return ProducerFencedError(FENCED.format(tid=self._id))

    def _sender_failure(self) -> BaseException | None:
        """Why the producer's sender task died (it does on fencing), or None if it runs."""
        task = self._producer._sender.sender_task  # no public accessor for the sender's fate
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception()  # type: ignore[no-any-return]

    def _failure(self, exc: BaseException) -> BaseException | None:
        """The error to raise instead of `exc`, which a producer call raised, or None."""
        cause = self._sender_failure() or exc
        if isinstance(cause, ProducerFenced) or isinstance(exc, ProducerFenced):
            return self._fenced_error()
        if isinstance(exc, StaleMembershipError):
            # KIP-447: the group moved on; this transaction aborts, the writer stays usable.
            return ProducerFencedError(f"transactional writer {self._id}: the group moved on ({exc})")
        return translate(cause, self._log.servers)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_KafkaTransaction]:
        """One Kafka transaction; commits on exit, aborts if the block raises.

        Raises:
            ProducerFencedError: a newer writer took this transactional id (now or before).
        """
        if self._fenced:
            raise ProducerFencedError(FENCED.format(tid=self._id))
        producer = self._producer
        try:
            await producer.begin_transaction()
        except (KafkaError, OSError, AssertionError) as exc:
            # aiokafka asserts on a state transition out of a fatal error (a fenced producer).
            error = self._failure(exc)
            if error is None:
                raise
            raise error from exc
        txn = _KafkaTransaction(self._log, producer)
        committing = False
        try:
            yield txn
            committing = True
            if self._records_before_offsets and txn.futures:
                await asyncio.gather(*txn.futures)
            for group_id, offsets in txn.offsets.items():
                await producer.send_offsets_to_transaction(
                    {KafkaTP(tp.topic, tp.partition): o for tp, o in offsets.items()}, group_id
                )
            await producer.commit_transaction()
        except BaseException as exc:
            txn.forget()
            error = self._failure(exc) if committing or self._sender_failure() else None
            if not self._fenced and not producer._txn_manager.is_fatal_error():
                try:
                    await asyncio.shield(producer.abort_transaction())
                except Exception:  # the original error matters more than a failed abort
                    log.warning("abort of transaction %s failed", self._id, exc_info=True)
            if error is not None:
                raise error from exc
            raise
        # Every send future is done once the commit returned.
        self._log._wrote([f.result() for f in txn.futures], txn.offsets, self._id)

    async def close(self) -> None:
        """Stop the producer (an open transaction is aborted by the broker)."""
        await self._producer.stop()


class _KafkaTransaction:
    def __init__(self, log: KafkaLog, producer: AIOKafkaProducer) -> None:
        self._log = log
        self._producer = producer
        self.futures: list[asyncio.Future[Any]] = []
        self.offsets: dict[str, dict[TopicPartition, int]] = {}

    async def send(self, record: OutRecord) -> None:
        await self._log._check_partition(record.topic, record.partition)
        future = await self._producer.send(
            record.topic,
            record.value,
            key=record.key,
            partition=record.partition,
            headers=list(record.headers),
        )
        self.futures.append(future)

    def commit_offsets(self, group_id: str, offsets: Mapping[TopicPartition, int]) -> None:
        self.offsets.setdefault(group_id, {}).update(offsets)

    def forget(self) -> None:
        """Retrieve the outcome of every send, so that a failed one is not logged as lost."""
        for future in self.futures:
            if future.done():
                if not future.cancelled():
                    future.exception()
            else:
                future.add_done_callback(lambda f: f.cancelled() or f.exception())
