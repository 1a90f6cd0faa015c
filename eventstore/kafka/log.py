"""The event log on Apache Kafka, through aiokafka: transactions, fencing, read_committed.

aiokafka's ``send_offsets_to_transaction`` carries no consumer generation (no KIP-447), so the
runtime uses one transactional id per input partition: `writer` initializes it, which fences any
older owner, and the owner seeks to the committed offset after taking a partition or aborting.

`KafkaLog` is the entry point (admin, reads, visibility of its own writes); the writer
(`writer.py`), the consumer (`consumer.py`) and the translation of aiokafka's records and
errors (`adapt.py`) live beside it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as KafkaTP
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import (
    KafkaError,
    TopicAlreadyExistsError,
)

from ..errors import (
    KafkaSecurityError,
    LogUnavailableError,
    TopicError,
    UsageError,
)
from ..log import PartitionListener
from ..records import OutRecord, Record, TopicPartition
from ..settings import KafkaSettings
from ..topics import TopicSpec
from .adapt import MISSING, UNREACHABLE, to_record, translate
from .consumer import KafkaConsumer, Rebalance
from .group_writer import GroupCommitWriter
from .kip447 import GroupMetadata, install
from .security import (
    addresses,
    authorization_error,
    client_kwargs,
    install_log_redaction,
    not_tls_hint,
    probe,
    security_error,
)
from .sticky import StickyAssignor
from .writer import KafkaWriter

log = logging.getLogger(__name__)
T = TypeVar("T")

# Polling for our own commit markers (the coordinator writes them after EndTxn returns).
_FIRST_POLL = 0.002
_MAX_POLL = 0.05


class KafkaLog:
    """An `EventLog` on a Kafka cluster."""

    def __init__(self, settings: KafkaSettings) -> None:
        if not settings.bootstrap_servers:
            raise UsageError("KafkaLog needs kafka.bootstrap_servers (TETHER_KAFKA__BOOTSTRAP_SERVERS)")
        self.settings = settings
        self.servers: str = settings.bootstrap_servers
        if settings.security_protocol.startswith("SASL_"):
            install_log_redaction()
        self._admin: AIOKafkaAdminClient | None = None
        self._producer: AIOKafkaProducer | None = None
        self._meta: AIOKafkaConsumer | None = None
        self._meta_uncommitted: AIOKafkaConsumer | None = None
        self._meta_hw_lock = asyncio.Lock()
        self._partitions: dict[str, int] = {}
        self._connection: dict[str, Any] | None = None
        # Read-your-writes: Kafka writes commit markers after `commit_transaction` returns, so
        # reads through this log wait until its own committed records and offsets are visible.
        self._record_floors: dict[tuple[str, int], int] = {}
        # (group, topic, partition) -> (transactional id, offset, wait no later than) of the
        # offset last committed through this log.
        self._offset_floors: dict[tuple[str, str, int], tuple[str, int, float]] = {}

    def _options(self) -> dict[str, Any]:
        """Bootstrap, timeout, TLS and SASL options shared by every client of this log.

        Built once (one TLS context, one token provider); they hold secrets: never log them.
        """
        if self._connection is None:
            self._connection = client_kwargs(self.settings)
        return dict(self._connection)

    async def _guard(self, what: Awaitable[T]) -> T:
        try:
            return await what
        except (KafkaError, OSError) as exc:
            error: Exception | None = authorization_error(exc, self.settings)
            if error is None and isinstance(exc, ssl.SSLError):
                error = security_error(exc, self.settings, self.servers)
            if error is None:
                error = translate(exc, self.servers)
            if error is None:
                raise
            raise error from exc

    async def _retry(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, retried on retriable errors (a coordinator still loading, a leader moving)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.request_timeout_ms / 1000
        pause = 0.02
        while True:
            try:
                return await self._guard(call())
            except LogUnavailableError as exc:
                cause = exc.__cause__
                if not (isinstance(cause, KafkaError) and cause.retriable):
                    raise
                if loop.time() > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect the admin client, the plain producer and a metadata consumer.

        Connecting is bounded by ``connect_timeout_ms``. A cluster that refuses the TLS or SASL
        settings fails it with a `KafkaSecurityError` naming the setting to fix.

        Raises:
            KafkaSecurityError: the cluster refused the connection's security settings.
            ConfigurationError: a certificate, key or token provider setting cannot be used.
            LogUnavailableError: no broker could be reached.
        """
        if self._producer is not None:
            return
        common = self._options()
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

        async def connect() -> None:
            await admin.start()
            await producer.start()
            await meta.start()

        try:
            await asyncio.wait_for(connect(), self.settings.connect_timeout_ms / 1000)
        except (KafkaError, OSError, TimeoutError) as exc:
            for client in (meta, producer, admin):
                try:
                    await client.close() if client is admin else await client.stop()
                except Exception:  # closing a client that never started may fail too
                    pass
            raise await self._diagnose(exc) from exc
        self._admin, self._producer, self._meta = admin, producer, meta
        # Let the clients' background tasks take their first step: aiokafka's consumer stop()
        # raises CancelledError if it cancels a task that never ran (a close right after start).
        await asyncio.sleep(0)

    async def _diagnose(self, exc: BaseException) -> Exception:
        """Why connecting failed: a typed security error if a broker refused our settings.

        aiokafka's bootstrap logs the cause and raises a generic "Unable to bootstrap" (and
        may retry a refused SASL login until its timeout), so one more connection to each
        bootstrap server learns the cause.
        """
        direct: Exception | None = authorization_error(exc, self.settings)
        if direct is None and isinstance(exc, ssl.SSLError):
            direct = security_error(exc, self.settings, self.servers)
        if direct is not None:
            return direct
        closed_early = False
        for address in addresses(self.settings)[:3]:
            cause = await probe(self.settings, address)
            if cause is None:
                continue
            error: KafkaSecurityError | None = security_error(cause, self.settings, address)
            if error is not None:
                return error
            if isinstance(cause, KafkaError) and "closed" in str(cause).lower():
                closed_early = True
                hint = not_tls_hint(self.settings, address)
                if hint is not None:
                    return hint
        detail = exc if str(exc) else f"no connection within {self.settings.connect_timeout_ms / 1000:.0f} s"
        if closed_early:
            detail = f"{detail}; the broker closed the connection (check TETHER_KAFKA__SECURITY_PROTOCOL)"
        return LogUnavailableError(UNREACHABLE.format(servers=self.servers, exc=detail))

    async def close(self) -> None:
        """Close every client; idempotent."""
        meta, producer, admin = self._meta, self._producer, self._admin
        self._admin = self._producer = self._meta = None
        uncommitted, self._meta_uncommitted = self._meta_uncommitted, None
        if uncommitted is not None:
            await uncommitted.stop()
        try:
            if meta is not None:
                await meta.stop()
        finally:
            try:
                if producer is not None:
                    await producer.stop()
            finally:
                if admin is not None:
                    await admin.close()

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
            cluster = producer.client.cluster
            parts = cluster.partitions_for_topic(topic)
            # A new topic's partitions show up before they have a leader with an ISR; writing
            # then fails with NotEnoughReplicas, so wait until every partition has a leader.
            described = cluster._partitions.get(topic, {})  # no public accessor for the ISR
            ready = parts and all(
                (cluster.leader_for_partition(KafkaTP(topic, p)) or -1) >= 0 and p in described and described[p].isr
                for p in parts
            )
            if ready:
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
            raise TopicError(MISSING.format(topic=topic))
        return await self._wait_for_topic(topic)

    async def _check_partition(self, topic: str, partition: int) -> None:
        count = await self.partition_count(topic)
        if not 0 <= partition < count:
            raise TopicError(f"partition {partition} does not exist in {topic!r} ({count} partitions)")

    async def topic_config(self, topic: str) -> dict[str, str]:
        """The broker's view of the configuration of `topic`."""
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        admin, _, _ = self._require()
        responses = await self._guard(admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)]))
        out: dict[str, str] = {}
        for response in responses:
            for error_code, error_message, _type, _name, entries, *_ in response.resources:
                if error_code:
                    raise TopicError(f"cannot describe topic {topic!r}: error {error_code} {error_message}")
                for entry in entries:
                    out[entry[0]] = entry[1]
        return out

    # -- writing ---------------------------------------------------------------------------
    async def append(self, records: Sequence[OutRecord]) -> None:
        """Append records (idempotent producer, acks=all); durable on return."""
        _, producer, _ = self._require()
        for tp in {(r.topic, r.partition) for r in records}:
            await self._check_partition(*tp)
        futures = [
            await self._guard(
                producer.send(
                    r.topic,
                    r.value,
                    key=r.key,
                    partition=r.partition,
                    headers=list(r.headers),
                    timestamp_ms=r.timestamp_ms,
                )
            )
            for r in records
        ]
        if futures:
            self._wrote(await self._guard(asyncio.gather(*futures)))

    def _wrote(
        self,
        metadata: Sequence[Any],
        offsets: Mapping[str, Mapping[TopicPartition, int]] | None = None,
        transactional_id: str = "",
    ) -> None:
        """Remember what this log committed, so that its own reads wait until it is visible."""
        for md in metadata:
            key = (md.topic, md.partition)
            self._record_floors[key] = max(self._record_floors.get(key, 0), md.offset + 1)
        # Once the markers are surely written, another owner may have committed since: a
        # mismatch then means nothing, so the wait for an offset ends with its own deadline.
        deadline = time.monotonic() + self.settings.request_timeout_ms / 1000
        for group_id, group_offsets in (offsets or {}).items():
            for tp, offset in group_offsets.items():
                key3 = (group_id, tp.topic, tp.partition)
                self._offset_floors[key3] = (transactional_id, offset, deadline)

    async def _until_visible(self, what: str, probe: Callable[[], Awaitable[bool]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.request_timeout_ms / 1000
        pause = _FIRST_POLL
        while not await probe():
            if loop.time() > deadline:
                log.warning(
                    "%s committed by this process is still not visible after %.0f s; another "
                    "transaction on the partition may be stuck open (the broker aborts it "
                    "after its transaction timeout)",
                    what,
                    self.settings.request_timeout_ms / 1000,
                )
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_POLL)

    async def group_writer(self, transactional_id: str, membership: Callable[[], GroupMetadata]) -> GroupCommitWriter:
        """The one transactional writer of a worker, fenced by its consumer group (KIP-447).

        Its offset commits carry `membership()` (a group consumer's `group_metadata`) at the
        moment of each commit, so the coordinator refuses them once the group has moved on;
        commits made while one is in flight share the next transaction (see `group_writer`).
        """
        producer = self._transactional_producer(transactional_id)
        install(producer, membership)
        try:
            await self._guard(producer.start())
        except BaseException:
            await producer.stop()
            raise
        return GroupCommitWriter(KafkaWriter(self, producer, transactional_id, records_before_offsets=True))

    async def settle(self, topic: str, partition: int) -> None:
        """Wait until no transaction is open on a partition (its last stable offset is its end).

        A new owner of a partition calls it before it restores, when writers are fenced by the
        group (`group_writer`) and not by a transactional id per partition: a zombie's
        transaction that passed its offset commit before the rebalance may still commit, and
        holds back the last stable offset until it ends (at the latest after the broker's
        transaction timeout). Transactions begun later cannot commit (their offset commit is
        refused), so waiting for this moment once is enough.
        """
        _, _, meta = self._require()
        await self._check_partition(topic, partition)
        tp = KafkaTP(topic, partition)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * self.settings.transaction_timeout_ms / 1000
        pause = _FIRST_POLL
        warned = False
        while True:
            stable = int((await self._guard(meta.end_offsets([tp])))[tp])
            end = await self._high_water_mark(topic, partition)
            if stable >= end:
                return
            if not warned and loop.time() > deadline - self.settings.transaction_timeout_ms / 1000:
                log.warning("%s/%d: waiting for an open transaction of a previous owner to end", topic, partition)
                warned = True
            if loop.time() > deadline:
                raise LogUnavailableError(f"{topic}/{partition}: a transaction stays open past the transaction timeout")
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_POLL * 4)

    def _transactional_producer(self, transactional_id: str) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **self._options(),
            client_id=f"{self.settings.client_id}-{transactional_id}",
            transactional_id=transactional_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=self.settings.linger_ms,
            transaction_timeout_ms=self.settings.transaction_timeout_ms,
            max_batch_size=256 * 1024,
        )

    async def writer(self, transactional_id: str) -> KafkaWriter:
        """A transactional producer; starting it fences older producers with the same id."""
        producer = self._transactional_producer(transactional_id)
        try:
            await self._guard(producer.start())
        except BaseException:
            await producer.stop()
            raise
        # Starting the producer completed every earlier transaction of this id (the broker
        # answers CONCURRENT_TRANSACTIONS until then), so their offsets are visible now; and a
        # later owner's commit would never match them: stop waiting for them.
        for key, (tid, _, _) in list(self._offset_floors.items()):
            if tid == transactional_id:
                del self._offset_floors[key]
        return KafkaWriter(self, producer, transactional_id)

    # -- reading ---------------------------------------------------------------------------
    async def end_offset(self, topic: str, partition: int) -> int:
        """The last stable offset: everything before it is committed or aborted."""
        return await self._end_offset(topic, partition, own_writes=True)

    async def settled_end_offset(self, topic: str, partition: int, timeout: float) -> int:
        """The last stable offset once it reaches the high-water mark read first.

        Every record written before the call, committed or not, then has its transaction's
        outcome. It waits at most `timeout` seconds, then returns the last stable offset as it
        is, with a warning.

        A writer's commit returns before the broker has written the transaction's markers, so a
        reader in another process that takes the last stable offset right after it (the caller
        got its error reply; `tether dlq list`) could stop before the transaction's records.
        """
        stable = await self._end_offset(topic, partition, own_writes=False)
        end = await self._high_water_mark(topic, partition)
        if stable >= end:
            return stable
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pause = _FIRST_POLL
        while stable < end:
            if loop.time() > deadline:
                log.warning(
                    "%s/%d: a transaction still open after %.1f s holds back records %d-%d; reading up to %d",
                    topic,
                    partition,
                    timeout,
                    stable,
                    end - 1,
                    stable,
                )
                break
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_POLL)
            stable = await self._end_offset(topic, partition, own_writes=False)
        return stable

    async def _high_water_mark(self, topic: str, partition: int) -> int:
        """The partition's end including records of open transactions (read_uncommitted)."""
        async with self._meta_hw_lock:  # partitions settle or are read at once: one consumer
            if self._meta_uncommitted is None:
                uncommitted = AIOKafkaConsumer(
                    **self._options(),
                    client_id=f"{self.settings.client_id}-meta-hw",
                    isolation_level="read_uncommitted",
                    enable_auto_commit=False,
                )
                try:
                    await self._guard(uncommitted.start())
                except BaseException:
                    await uncommitted.stop()
                    raise
                self._meta_uncommitted = uncommitted
        tp = KafkaTP(topic, partition)
        return int((await self._guard(self._meta_uncommitted.end_offsets([tp])))[tp])

    async def _end_offset(self, topic: str, partition: int, *, own_writes: bool) -> int:
        _, _, meta = self._require()
        await self._check_partition(topic, partition)
        tp = KafkaTP(topic, partition)
        key = (topic, partition)
        end = 0

        async def visible() -> bool:
            nonlocal end
            end = int((await self._guard(meta.end_offsets([tp])))[tp])
            floor = self._record_floors.get(key)
            if floor is None or not own_writes:
                return True
            if end < floor:
                return False
            if self._record_floors.get(key) == floor:  # the LSO never goes back
                del self._record_floors[key]
            return True

        await self._until_visible(f"a record of {topic}/{partition}", visible)
        return end

    async def read(self, topic: str, partition: int, start: int = 0, end: int | None = None) -> AsyncIterator[Record]:
        """Committed records of one partition from `start` to `end` (default: the end now)."""
        now = await self.end_offset(topic, partition)
        end = now if end is None else min(end, now)  # never wait for records yet to come
        if start >= end:
            return
        tp = KafkaTP(topic, partition)
        consumer = AIOKafkaConsumer(
            **self._options(),
            client_id=f"{self.settings.client_id}-reader",
            isolation_level="read_committed",
            enable_auto_commit=False,
            # Records before `start` may be gone (retention): begin at the oldest kept one,
            # not (the default) silently at the end.
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            # The end is known: a fetch that the broker holds back only delays the last step
            # past aborted records and transaction markers, which return no records.
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
        )
        await self._guard(consumer.start())
        try:
            consumer.assign([tp])
            consumer.seek(tp, start)
            while await consumer.position(tp) < end:
                batch = await self._guard(consumer.getmany(tp, timeout_ms=50, max_records=10_000))
                for msg in batch.get(tp, ()):
                    if msg.offset >= end:
                        return
                    yield to_record(msg)
        finally:
            await consumer.stop()

    async def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        """The earliest offset whose record's time is at or after `timestamp_ms`, else the end.

        The broker's time index answers (ListOffsets).
        """
        _, _, meta = self._require()
        await self._check_partition(topic, partition)
        tp = KafkaTP(topic, partition)
        found = (await self._guard(meta.offsets_for_times({tp: max(0, timestamp_ms)}))).get(tp)
        if found is None:
            return await self.end_offset(topic, partition)
        return int(found.offset)

    async def committed(self, group_id: str, tp: TopicPartition) -> int | None:
        """The offset a group committed on a partition, or None."""
        admin, _, _ = self._require()
        ktp = KafkaTP(tp.topic, tp.partition)
        key = (group_id, tp.topic, tp.partition)
        found: int | None = None

        async def visible() -> bool:
            nonlocal found
            offsets = await self._retry(lambda: admin.list_consumer_group_offsets(group_id, partitions=[ktp]))
            meta = offsets.get(ktp)
            found = None if meta is None or meta.offset < 0 else int(meta.offset)
            expected = self._offset_floors.get(key)
            if expected is not None and time.monotonic() > expected[2]:
                del self._offset_floors[key]
                return True
            return expected is None or found == expected[1]

        await self._until_visible(f"the offset of {group_id} on {tp.topic}/{tp.partition}", visible)
        expected = self._offset_floors.get(key)
        if expected is not None and expected[1] == found:
            del self._offset_floors[key]  # seen: later calls need not wait for it
        return found

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
        for p in partitions or {}:
            await self._check_partition(topic, p)
        if partitions is None:
            await self.partition_count(topic)  # a missing topic is an error, not an empty one
        sticky = StickyAssignor() if self.settings.rebalance == "sticky" else None
        # One assignor, not sticky with round robin as a fallback: aiokafka 0.14 sends one
        # JoinGroup per assignor (the first with only the first protocol, aio-libs/aiokafka#1168),
        # and the broker takes the change of protocols between the two as new metadata: every
        # join of a member started another rebalance (sticky.py, "one assignor").
        strategies = (RoundRobinPartitionAssignor,) if sticky is None else (sticky,)
        consumer = AIOKafkaConsumer(
            **self._options(),
            client_id=f"{self.settings.client_id}-{group_id or 'reader'}",
            group_id=group_id if partitions is None else None,
            group_instance_id=self.settings.group_instance_id if partitions is None else None,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            session_timeout_ms=self.settings.session_timeout_ms,
            heartbeat_interval_ms=self.settings.heartbeat_interval_ms,
            max_poll_records=5000,
            partition_assignment_strategy=strategies,
        )
        try:
            await self._guard(consumer.start())
            if partitions is not None:
                wrapped = KafkaConsumer(consumer, topic, self._guard, None)
                consumer.assign([KafkaTP(topic, p) for p in partitions])
                for p, offset in partitions.items():
                    # "From the end" means now, whoever else is writing: no waiting for
                    # our own writes, which a stuck transaction of another writer could delay.
                    start = offset if offset >= 0 else await self._end_offset(topic, p, own_writes=False)
                    consumer.seek(KafkaTP(topic, p), start)
            else:
                assert listener is not None
                rebalance = Rebalance(listener)
                wrapped = KafkaConsumer(consumer, topic, self._guard, rebalance)
                if sticky is not None:
                    sticky.generation = lambda: wrapped.group_metadata().generation
                consumer.subscribe([topic], listener=rebalance)
        except BaseException:
            await consumer.stop()
            raise
        return wrapped
