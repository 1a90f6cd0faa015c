"""The event log on Apache Kafka, through aiokafka: transactions, fencing, read_committed.

aiokafka's ``send_offsets_to_transaction`` carries no consumer generation (no KIP-447), so the
runtime uses one transactional id per input partition: `writer` initializes it, which fences any
older owner, and the owner seeks to the committed offset after taking a partition or aborting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTP
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    ProducerFenced,
    TopicAlreadyExistsError,
)

from ..errors import LogUnavailableError, ProducerFencedError, TopicError, UsageError
from ..log import PartitionListener
from ..records import OutRecord, Record, TopicPartition
from ..settings import KafkaSettings
from ..topics import TopicSpec

log = logging.getLogger(__name__)
T = TypeVar("T")

UNREACHABLE = (
    "cannot reach the Kafka broker at {servers}: {exc}. Start one with `tether kafka up`, "
    "or point TETHER_KAFKA__BOOTSTRAP_SERVERS at a running cluster"
)


def _record(msg: Any) -> Record:
    return Record(
        msg.topic,
        msg.partition,
        msg.offset,
        msg.key,
        msg.value,
        tuple((k, bytes(v)) for k, v in (msg.headers or ())),
        msg.timestamp,
    )


class KafkaLog:
    """An `EventLog` on a Kafka cluster."""

    def __init__(self, settings: KafkaSettings) -> None:
        if not settings.bootstrap_servers:
            raise UsageError("KafkaLog needs kafka.bootstrap_servers (TETHER_KAFKA__BOOTSTRAP_SERVERS)")
        self.settings = settings
        self.servers: str = settings.bootstrap_servers
        self._admin: AIOKafkaAdminClient | None = None
        self._producer: AIOKafkaProducer | None = None
        self._meta: AIOKafkaConsumer | None = None
        self._partitions: dict[str, int] = {}

    async def _guard(self, what: Awaitable[T]) -> T:
        try:
            return await what
        except ProducerFenced as exc:
            raise ProducerFencedError(str(exc)) from exc
        except (KafkaConnectionError, ConnectionError, OSError) as exc:
            raise LogUnavailableError(UNREACHABLE.format(servers=self.servers, exc=exc)) from exc

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect the admin client, the plain producer and a metadata consumer."""
        if self._producer is not None:
            return
        common: dict[str, Any] = {
            "bootstrap_servers": self.servers,
            "request_timeout_ms": self.settings.request_timeout_ms,
        }
        admin = AIOKafkaAdminClient(client_id=f"{self.settings.client_id}-admin", **common)
        producer = AIOKafkaProducer(
            client_id=f"{self.settings.client_id}-append",
            acks="all",
            enable_idempotence=True,
            linger_ms=self.settings.linger_ms,
            **common,
        )
        meta = AIOKafkaConsumer(
            client_id=f"{self.settings.client_id}-meta",
            isolation_level="read_committed",
            enable_auto_commit=False,
            **common,
        )
        try:
            await asyncio.wait_for(admin.start(), self.settings.request_timeout_ms / 1000)
            await producer.start()
            await meta.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            for client in (meta, producer, admin):
                try:
                    await client.close() if client is admin else await client.stop()
                except Exception:  # closing a client that never started may fail too
                    pass
            raise LogUnavailableError(UNREACHABLE.format(servers=self.servers, exc=exc)) from exc
        self._admin, self._producer, self._meta = admin, producer, meta

    async def close(self) -> None:
        """Close every client; idempotent."""
        if self._meta is not None:
            await self._meta.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self._admin is not None:
            await self._admin.close()
        self._admin = self._producer = self._meta = None

    def _require(self) -> tuple[AIOKafkaAdminClient, AIOKafkaProducer, AIOKafkaConsumer]:
        if self._admin is None or self._producer is None or self._meta is None:
            raise UsageError("the Kafka log is not started; call `await log.start()` first")
        return self._admin, self._producer, self._meta

    # -- topics ----------------------------------------------------------------------------
    async def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create missing topics (replication factor 1 on a single broker, else 3)."""
        admin, _, _ = self._require()
        existing = set(await self._guard(admin.list_topics()))
        missing = [s for s in specs if s.name not in existing]
        if missing:
            brokers = (await self._guard(admin.describe_cluster()))["brokers"]
            replication = min(3, len(brokers))
            new = [NewTopic(s.name, s.partitions, replication, topic_configs=dict(s.config)) for s in missing]
            try:
                response = await self._guard(admin.create_topics(new))
            except TopicAlreadyExistsError:
                response = None  # a concurrent creator won; that is fine
            for topic, code, message in getattr(response, "topic_errors", ()) or ():
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise TopicError(f"cannot create topic {topic!r}: error {code} {message}")
        # Topic creation is asynchronous on the broker: wait until metadata shows every partition.
        for spec in specs:
            await self._wait_for_topic(spec.name)

    async def _wait_for_topic(self, topic: str, timeout: float = 30.0) -> int:
        _, producer, _ = self._require()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await producer.client.force_metadata_update()
            parts = producer.client.cluster.partitions_for_topic(topic)
            if parts:
                self._partitions[topic] = len(parts)
                return len(parts)
            if loop.time() > deadline:
                raise TopicError(f"topic {topic!r} does not exist; create the namespace first")
            await asyncio.sleep(0.1)

    async def partition_count(self, topic: str) -> int:
        """Number of partitions of `topic`."""
        if topic in self._partitions:
            return self._partitions[topic]
        admin, _, _ = self._require()
        if topic not in set(await self._guard(admin.list_topics())):
            raise TopicError(f"topic {topic!r} does not exist; create the namespace first")
        return await self._wait_for_topic(topic)

    async def topic_config(self, topic: str) -> dict[str, str]:
        """The broker's view of the configuration of `topic`."""
        from aiokafka.admin import ConfigResource, ConfigResourceType

        admin, _, _ = self._require()
        responses = await self._guard(
            admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        )
        out: dict[str, str] = {}
        for response in responses:
            for resource in response.resources:
                for entry in resource[4]:
                    out[entry[0]] = entry[1]
        return out

    # -- writing ---------------------------------------------------------------------------
    async def append(self, records: Sequence[OutRecord]) -> None:
        """Append records (idempotent producer, acks=all); durable on return."""
        _, producer, _ = self._require()
        futures = [
            await self._guard(
                producer.send(r.topic, r.value, key=r.key, partition=r.partition, headers=list(r.headers))
            )
            for r in records
        ]
        if futures:
            await self._guard(asyncio.gather(*futures))

    async def writer(self, transactional_id: str) -> KafkaWriter:
        """A transactional producer; starting it fences older producers with the same id."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.servers,
            client_id=f"{self.settings.client_id}-{transactional_id}",
            transactional_id=transactional_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=self.settings.linger_ms,
            request_timeout_ms=self.settings.request_timeout_ms,
            transaction_timeout_ms=self.settings.transaction_timeout_ms,
            max_batch_size=256 * 1024,
        )
        try:
            await self._guard(producer.start())
        except BaseException:
            await producer.stop()
            raise
        return KafkaWriter(producer, transactional_id, self._guard)

    # -- reading ---------------------------------------------------------------------------
    async def end_offset(self, topic: str, partition: int) -> int:
        """The last stable offset: everything before it is committed or aborted."""
        _, _, meta = self._require()
        tp = KafkaTP(topic, partition)
        ends = await self._guard(meta.end_offsets([tp]))
        return int(ends[tp])

    async def read(
        self, topic: str, partition: int, start: int = 0, end: int | None = None
    ) -> AsyncIterator[Record]:
        """Committed records of one partition from `start` to `end` (default: the end now)."""
        if end is None:
            end = await self.end_offset(topic, partition)
        if start >= end:
            return
        tp = KafkaTP(topic, partition)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.servers,
            client_id=f"{self.settings.client_id}-reader",
            isolation_level="read_committed",
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
        )
        await self._guard(consumer.start())
        try:
            consumer.assign([tp])
            consumer.seek(tp, start)
            while await consumer.position(tp) < end:
                batch = await self._guard(consumer.getmany(tp, timeout_ms=500, max_records=10_000))
                for msg in batch.get(tp, ()):
                    if msg.offset >= end:
                        return
                    yield _record(msg)
        finally:
            await consumer.stop()

    async def committed(self, group_id: str, tp: TopicPartition) -> int | None:
        """The offset a group committed on a partition, or None."""
        admin, _, _ = self._require()
        ktp = KafkaTP(tp.topic, tp.partition)
        offsets = await self._guard(admin.list_consumer_group_offsets(group_id, partitions=[ktp]))
        meta = offsets.get(ktp)
        if meta is None or meta.offset < 0:
            return None
        return int(meta.offset)

    async def consumer(
        self,
        topic: str,
        *,
        group_id: str | None = None,
        listener: PartitionListener | None = None,
        partitions: Mapping[int, int] | None = None,
    ) -> KafkaConsumer:
        """A read_committed consumer of `topic` (see `EventLog.consumer`)."""
        if partitions is None and (group_id is None or listener is None):
            raise UsageError("a consumer needs either group_id and listener, or partitions")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.servers,
            client_id=f"{self.settings.client_id}-{group_id or 'reader'}",
            group_id=group_id if partitions is None else None,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            request_timeout_ms=self.settings.request_timeout_ms,
            max_poll_records=5000,
        )
        await self._guard(consumer.start())
        wrapped = KafkaConsumer(consumer, topic, self._guard)
        if partitions is not None:
            tps = {KafkaTP(topic, p): o for p, o in partitions.items()}
            consumer.assign(list(tps))
            ends = await self._guard(consumer.end_offsets([tp for tp, o in tps.items() if o < 0])) if any(o < 0 for o in tps.values()) else {}
            for tp, offset in tps.items():
                consumer.seek(tp, offset if offset >= 0 else ends[tp])
        else:
            assert listener is not None
            consumer.subscribe([topic], listener=_Rebalance(listener))
        return wrapped


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, listener: PartitionListener) -> None:
        self._listener = listener

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if revoked:
            await self._listener.on_revoked({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if assigned:
            await self._listener.on_assigned({tp.partition for tp in assigned})


class KafkaConsumer:
    """`LogConsumer` over an aiokafka consumer."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topic: str,
        guard: Callable[[Awaitable[Any]], Awaitable[Any]],
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._guard = guard

    async def fetch(self, timeout: float, max_records: int = 2000) -> list[Record]:
        """The next committed records of the assigned partitions."""
        batch = await self._guard(
            self._consumer.getmany(timeout_ms=int(timeout * 1000), max_records=max_records)
        )
        return [_record(m) for msgs in batch.values() for m in msgs]

    def seek(self, partition: int, offset: int) -> None:
        """Fetch `partition` from `offset` next."""
        self._consumer.seek(KafkaTP(self._topic, partition), offset)

    def assignment(self) -> set[int]:
        """Partitions currently assigned."""
        return {tp.partition for tp in self._consumer.assignment()}

    async def close(self) -> None:
        """Leave the group and close connections."""
        await self._consumer.stop()


class KafkaWriter:
    """`TransactionalWriter` over an aiokafka transactional producer."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        transactional_id: str,
        guard: Callable[[Awaitable[Any]], Awaitable[Any]],
    ) -> None:
        self._producer = producer
        self._id = transactional_id
        self._guard = guard

    @property
    def transactional_id(self) -> str:
        """The id that fences older writers."""
        return self._id

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_KafkaTransaction]:
        """One Kafka transaction; commits on exit, aborts if the block raises."""
        producer = self._producer
        await self._guard(producer.begin_transaction())
        txn = _KafkaTransaction(producer)
        try:
            yield txn
            for group_id, offsets in txn.offsets.items():
                await producer.send_offsets_to_transaction(
                    {KafkaTP(tp.topic, tp.partition): o for tp, o in offsets.items()}, group_id
                )
            await producer.commit_transaction()
        except ProducerFenced as exc:
            raise ProducerFencedError(
                f"writer {self._id!r} was fenced by a newer writer with the same transactional "
                "id; this process no longer owns the partition"
            ) from exc
        except BaseException:
            try:
                await asyncio.shield(producer.abort_transaction())
            except Exception:  # the original error matters more than a failed abort
                log.warning("abort of transaction %s failed", self._id, exc_info=True)
            raise

    async def commit(
        self,
        records: Sequence[OutRecord],
        *,
        group_id: str | None = None,
        offsets: Mapping[TopicPartition, int] | None = None,
    ) -> None:
        """Append `records` and commit `offsets` in one Kafka transaction."""
        async with self.transaction() as txn:
            for r in records:
                await txn.send(r)
            if offsets:
                if group_id is None:
                    raise UsageError("committing offsets needs a group_id")
                txn.commit_offsets(group_id, offsets)

    async def close(self) -> None:
        """Stop the producer (an open transaction is aborted by the broker)."""
        await self._producer.stop()


class _KafkaTransaction:
    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self.offsets: dict[str, dict[TopicPartition, int]] = {}

    async def send(self, record: OutRecord) -> None:
        await self._producer.send(
            record.topic,
            record.value,
            key=record.key,
            partition=record.partition,
            headers=list(record.headers),
        )

    def commit_offsets(self, group_id: str, offsets: Mapping[TopicPartition, int]) -> None:
        self.offsets.setdefault(group_id, {}).update(offsets)
