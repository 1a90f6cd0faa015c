"""The `EventLog` contract (eventstore/log.py), run unchanged against both backends.

Every test gets a fresh log: the embedded one in `tmp_path`, the Kafka one on the test broker
with topics under the test's unique namespace. Reads right after a commit go through the log
that committed (read-your-writes) or through a writer opened for the same transactional id;
any other reader sees a commit only eventually, so those reads poll (`fetch_until`).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from eventstore import (
    EmbeddedLog,
    EventLog,
    KafkaSettings,
    LogConsumer,
    LogUnavailableError,
    OutRecord,
    ProducerFencedError,
    Record,
    SnapshotStore,
    TopicError,
    TopicPartition,
    Topics,
    TopicSpec,
    UsageError,
)
from eventstore.kafka import KafkaLog

# Generous for a loaded CI machine; a passing run takes a fraction of it.
WAIT = 20.0


class Boom(Exception):
    """Raised inside a transaction to abort it."""


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], EventLog]:
    """A factory of unstarted logs of one backend, all on the same storage."""
    if request.param == "embedded":
        return lambda: EmbeddedLog(tmp_path / "log")
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    return lambda: KafkaLog(KafkaSettings(bootstrap_servers=bootstrap, client_id="conformance"))


@pytest.fixture
async def log(backend: Callable[[], EventLog]) -> AsyncIterator[EventLog]:
    the_log = backend()
    await the_log.start()
    try:
        yield the_log
    finally:
        await the_log.close()


@pytest.fixture
async def topic(log: EventLog, namespace: str) -> str:
    """A fresh topic with 3 partitions."""
    name = f"{namespace}.conf"
    await log.create_topics([TopicSpec(name, 3)])
    return name


async def read_all(log: EventLog, topic: str, partition: int, start: int = 0, end: int | None = None) -> list[Record]:
    return [r async for r in log.read(topic, partition, start, end)]


def values(records: list[Record]) -> list[bytes | None]:
    return [r.value for r in records]


async def fetch_until(
    consumer: LogConsumer, done: Callable[[list[Record]], bool], timeout: float = WAIT
) -> list[Record]:
    """Fetch until `done(all records so far)` holds; fails with what arrived if it never does."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout
    while not done(got):
        if time.monotonic() > deadline:
            pytest.fail(f"fetched {[(r.partition, r.offset, r.value) for r in got]} in {timeout} s")
        got.extend(await consumer.fetch(0.2))
    return got


class RecordingListener:
    def __init__(self) -> None:
        self.events: list[tuple[str, set[int]]] = []

    async def on_assigned(self, partitions: set[int]) -> None:
        self.events.append(("assigned", set(partitions)))

    async def on_revoked(self, partitions: set[int]) -> None:
        self.events.append(("revoked", set(partitions)))


# -- append and read ------------------------------------------------------------------------


async def test_append_then_read_in_offset_order(log: EventLog, topic: str) -> None:
    assert await log.partition_count(topic) == 3
    await log.append(
        [
            OutRecord(topic, 1, b"k0", b"v0", (("h", b"1"), ("h", b"2"))),
            OutRecord(topic, 1, None, b"v1"),
            OutRecord(topic, 2, b"other", b"elsewhere"),
            OutRecord(topic, 1, b"k2", None, (("empty", b""),)),
            OutRecord(topic, 1, b"k3", b"v3"),
        ]
    )

    records = await read_all(log, topic, 1)

    assert [(r.topic, r.partition, r.offset) for r in records] == [(topic, 1, o) for o in range(4)]
    assert [r.key for r in records] == [b"k0", None, b"k2", b"k3"]
    assert values(records) == [b"v0", b"v1", None, b"v3"]
    assert records[0].headers == (("h", b"1"), ("h", b"2"))
    assert records[0].header("h") == b"2"
    assert records[1].headers == ()
    assert records[2].headers == (("empty", b""),)
    assert all(r.timestamp_ms > 1_600_000_000_000 for r in records)
    assert values(await read_all(log, topic, 2)) == [b"elsewhere"]
    assert await read_all(log, topic, 0) == []


async def test_read_bounds_and_end_offset(log: EventLog, topic: str) -> None:
    assert await log.end_offset(topic, 0) == 0
    await log.append([OutRecord(topic, 0, b"k", b"%d" % i) for i in range(5)])

    assert await log.end_offset(topic, 0) == 5
    assert await log.end_offset(topic, 1) == 0
    assert [r.offset for r in await read_all(log, topic, 0, start=2)] == [2, 3, 4]
    assert values(await read_all(log, topic, 0, start=1, end=3)) == [b"1", b"2"]
    assert await read_all(log, topic, 0, start=3, end=3) == []
    assert await read_all(log, topic, 0, start=5) == []
    assert values(await read_all(log, topic, 0, start=3, end=1000)) == [b"3", b"4"]
    assert await read_all(log, topic, 0, start=70, end=1000) == []
    # The default end is the end when reading starts; a later append is not waited for.
    assert len(await read_all(log, topic, 0)) == 5


# -- transactions ---------------------------------------------------------------------------


async def test_transaction_commits_records_and_offsets_together(log: EventLog, topic: str, namespace: str) -> None:
    group = f"{namespace}-g"
    source = TopicPartition(topic, 2)
    writer = await log.writer(f"{namespace}-w")
    try:
        async with writer.transaction() as txn:
            await txn.send(OutRecord(topic, 0, b"a", b"one"))
            await txn.send(OutRecord(topic, 0, b"b", b"two", (("kind", b"x"),)))
            txn.commit_offsets(group, {source: 7})
            await asyncio.sleep(0.05)  # let the records reach the broker before looking
            assert await read_all(log, topic, 0) == []
            assert await log.committed(group, source) is None

        records = await read_all(log, topic, 0)
        assert values(records) == [b"one", b"two"]
        assert records[1].headers == (("kind", b"x"),)
        assert await log.committed(group, source) == 7
        assert await log.committed(group, TopicPartition(topic, 0)) is None
        assert await log.committed(f"{namespace}-other", source) is None

        await writer.commit([OutRecord(topic, 0, b"c", b"three")], group_id=group, offsets={source: 9})
        assert values(await read_all(log, topic, 0)) == [b"one", b"two", b"three"]
        assert await log.committed(group, source) == 9

        await writer.commit([], group_id=group, offsets={source: 10})  # offsets only
        assert await log.committed(group, source) == 10
        async with writer.transaction():
            pass  # an empty transaction commits nothing, and fails nothing
        await writer.commit([OutRecord(topic, 1, b"d", b"four")])
        assert values(await read_all(log, topic, 1)) == [b"four"]
        assert values(await read_all(log, topic, 0)) == [b"one", b"two", b"three"]
        assert await log.committed(group, source) == 10
    finally:
        await writer.close()


async def test_aborted_transaction_is_invisible(log: EventLog, topic: str, namespace: str) -> None:
    group = f"{namespace}-g"
    source = TopicPartition(topic, 2)
    writer = await log.writer(f"{namespace}-w")
    try:
        with pytest.raises(Boom):
            async with writer.transaction() as txn:
                await txn.send(OutRecord(topic, 0, b"a", b"aborted-1"))
                await txn.send(OutRecord(topic, 1, b"a", b"aborted-2"))
                txn.commit_offsets(group, {source: 3})
                await asyncio.sleep(0.05)  # let the records reach the broker before aborting
                raise Boom

        assert await read_all(log, topic, 0) == []
        assert await read_all(log, topic, 1) == []
        assert await log.committed(group, source) is None

        async with writer.transaction() as txn:
            await txn.send(OutRecord(topic, 0, b"a", b"kept"))
            txn.commit_offsets(group, {source: 4})

        assert values(await read_all(log, topic, 0)) == [b"kept"]
        assert await read_all(log, topic, 1) == []
        assert await log.committed(group, source) == 4
        # Reading from the end offset finds nothing, also past aborted records and markers.
        end = await log.end_offset(topic, 0)
        assert await read_all(log, topic, 0, start=end) == []
        assert values(await read_all(log, topic, 0, end=end)) == [b"kept"]
    finally:
        await writer.close()


async def test_writer_commit_without_group_for_offsets_is_refused(log: EventLog, topic: str, namespace: str) -> None:
    writer = await log.writer(f"{namespace}-w")
    try:
        with pytest.raises(UsageError):
            await writer.commit([OutRecord(topic, 0, b"a", b"x")], offsets={TopicPartition(topic, 1): 1})
        assert await read_all(log, topic, 0) == []
    finally:
        await writer.close()


# -- fencing --------------------------------------------------------------------------------


async def test_newer_writer_fences_older_one(log: EventLog, topic: str, namespace: str) -> None:
    group = f"{namespace}-g"
    source = TopicPartition(topic, 2)
    tid = f"{namespace}-pp-0"
    a = await log.writer(tid)
    b = None
    try:
        await a.commit([OutRecord(topic, 0, b"k", b"a-before")])
        b = await log.writer(tid)
        assert b.transactional_id == tid

        with pytest.raises(ProducerFencedError):
            await a.commit(
                [OutRecord(topic, 0, b"k", b"a-after"), OutRecord(topic, 1, b"k", b"a-after")],
                group_id=group,
                offsets={source: 5},
            )

        await b.commit([OutRecord(topic, 0, b"k", b"b")], group_id=group, offsets={source: 6})
        assert values(await read_all(log, topic, 0)) == [b"a-before", b"b"]
        assert await read_all(log, topic, 1) == []
        assert await log.committed(group, source) == 6

        # Fenced for good: a later attempt fails the same way.
        with pytest.raises(ProducerFencedError):
            await a.commit([OutRecord(topic, 1, b"k", b"a-again")])
        assert await read_all(log, topic, 1) == []
    finally:
        await a.close()
        if b is not None:
            await b.close()


async def test_new_owner_sees_everything_the_fenced_owner_committed(
    backend: Callable[[], EventLog], log: EventLog, topic: str, namespace: str
) -> None:
    """The takeover a partition processor does: open the writer (fencing), then read.

    The new owner is another log instance (another process), so it sees the old owner's
    commit only through the log itself.
    """
    group = f"{namespace}-g"
    source = TopicPartition(topic, 2)
    tid = f"{namespace}-pp-2"
    old = await log.writer(tid)
    other = backend()
    await other.start()
    try:
        # Warm up, so that reading right after a commit is quick enough to race its markers.
        assert await other.end_offset(topic, 0) == 0
        assert await other.committed(group, source) is None
        for round in range(5):
            await old.commit(
                [OutRecord(topic, 0, b"k", b"old-%d" % round)],
                group_id=group,
                offsets={source: round + 1},
            )
            new = await other.writer(tid)
            # No waiting: opening the writer completed the old owner's transaction.
            assert await other.committed(group, source) == round + 1
            assert values(await read_all(other, topic, 0)) == [b"old-%d" % r for r in range(round + 1)]
            await old.close()
            old = new
    finally:
        await old.close()
        await other.close()


async def test_committed_after_ownership_went_away_and_came_back(
    backend: Callable[[], EventLog], log: EventLog, topic: str, namespace: str
) -> None:
    """A process reads the offset another owner committed after it, without stalling."""
    group = f"{namespace}-g"
    source = TopicPartition(topic, 2)
    tid = f"{namespace}-pp-2"
    mine = await log.writer(tid)
    await mine.commit([], group_id=group, offsets={source: 5})
    other = backend()
    await other.start()
    try:
        theirs = await other.writer(tid)
        await theirs.commit([], group_id=group, offsets={source: 9})
        await theirs.close()
        await mine.close()
        mine = await log.writer(tid)  # the partition comes back to this process

        started = time.monotonic()
        assert await log.committed(group, source) == 9
        assert time.monotonic() - started < 5
    finally:
        await mine.close()
        await other.close()


async def test_open_transaction_of_fenced_writer_never_commits(log: EventLog, topic: str, namespace: str) -> None:
    tid = f"{namespace}-pp-1"
    a = await log.writer(tid)
    b = None
    try:
        with pytest.raises(ProducerFencedError):
            async with a.transaction() as txn:
                await txn.send(OutRecord(topic, 0, b"k", b"a-open"))
                await asyncio.sleep(0.05)  # let the record reach the broker
                b = await log.writer(tid)
        await b.commit([OutRecord(topic, 0, b"k", b"b")])
        assert values(await read_all(log, topic, 0)) == [b"b"]
    finally:
        await a.close()
        if b is not None:
            await b.close()


# -- consumers ------------------------------------------------------------------------------


async def test_group_consumer_starts_at_committed_offsets(log: EventLog, topic: str, namespace: str) -> None:
    group = f"{namespace}-g"
    writer = await log.writer(f"{namespace}-w")
    try:
        await writer.commit(
            [OutRecord(topic, 0, b"k", b"p0-%d" % i) for i in range(3)]
            + [OutRecord(topic, 1, b"k", b"p1-%d" % i) for i in range(2)],
            group_id=group,
            offsets={TopicPartition(topic, 0): 1},
        )
    finally:
        await writer.close()
    assert await log.committed(group, TopicPartition(topic, 0)) == 1
    listener = RecordingListener()
    consumer = await log.consumer(topic, group_id=group, listener=listener)
    closed = False
    try:
        got = await fetch_until(consumer, lambda rs: len(rs) >= 4)
        assert listener.events == [("assigned", {0, 1, 2})]
        assert consumer.assignment() == {0, 1, 2}
        assert sorted((r.partition, r.offset, r.value) for r in got) == [
            (0, 1, b"p0-1"),
            (0, 2, b"p0-2"),
            (1, 0, b"p1-0"),
            (1, 1, b"p1-1"),
        ]
        # Records of one partition arrive in offset order.
        assert [r.offset for r in got if r.partition == 0] == [1, 2]

        consumer.seek(0, 0)
        again = await fetch_until(consumer, lambda rs: len(rs) >= 3)
        assert [(r.partition, r.offset, r.value) for r in again] == [
            (0, 0, b"p0-0"),
            (0, 1, b"p0-1"),
            (0, 2, b"p0-2"),
        ]

        await log.append([OutRecord(topic, 2, b"k", b"p2-new")])
        new = await fetch_until(consumer, lambda rs: len(rs) >= 1)
        assert [(r.partition, r.offset, r.value) for r in new] == [(2, 0, b"p2-new")]
        assert await consumer.fetch(0.3) == []

        await consumer.close()
        closed = True
        assert listener.events == [("assigned", {0, 1, 2}), ("revoked", {0, 1, 2})]
    finally:
        if not closed:
            await consumer.close()


class SeekingListener(RecordingListener):
    """Seeks where a partition processor would: to where its own state says to resume."""

    def __init__(self, resume: dict[int, int]) -> None:
        super().__init__()
        self.resume = resume
        self.consumer: LogConsumer | None = None

    async def on_assigned(self, partitions: set[int]) -> None:
        await super().on_assigned(partitions)
        assert self.consumer is not None
        for p in partitions & self.resume.keys():
            self.consumer.seek(p, self.resume[p])


async def test_listener_may_seek_when_assigned(log: EventLog, topic: str, namespace: str) -> None:
    await log.append([OutRecord(topic, 0, b"k", b"p0-%d" % i) for i in range(3)] + [OutRecord(topic, 1, b"k", b"p1-0")])
    listener = SeekingListener({0: 2})
    consumer = await log.consumer(topic, group_id=f"{namespace}-g", listener=listener)
    listener.consumer = consumer
    try:
        got = await fetch_until(consumer, lambda rs: len(rs) >= 2)
        assert sorted((r.partition, r.offset) for r in got) == [(0, 2), (1, 0)]
        assert await consumer.fetch(0.3) == []
    finally:
        await consumer.close()


class FailingListener(RecordingListener):
    async def on_assigned(self, partitions: set[int]) -> None:
        await super().on_assigned(partitions)
        raise Boom("cannot take the partitions")


async def test_listener_failure_surfaces_from_fetch(log: EventLog, topic: str, namespace: str) -> None:
    listener = FailingListener()
    consumer = await log.consumer(topic, group_id=f"{namespace}-g", listener=listener)
    try:
        with pytest.raises(Boom, match="cannot take"):
            await fetch_until(consumer, lambda rs: False)
        assert listener.events == [("assigned", {0, 1, 2})]
    finally:
        await consumer.close()
    assert listener.events == [("assigned", {0, 1, 2}), ("revoked", {0, 1, 2})]


async def test_group_consumer_does_not_see_aborted_records(log: EventLog, topic: str, namespace: str) -> None:
    writer = await log.writer(f"{namespace}-w")
    try:
        with pytest.raises(Boom):
            async with writer.transaction() as txn:
                await txn.send(OutRecord(topic, 0, b"k", b"aborted"))
                await asyncio.sleep(0.05)
                raise Boom
        await writer.commit([OutRecord(topic, 0, b"k", b"kept")])
    finally:
        await writer.close()
    consumer = await log.consumer(topic, group_id=f"{namespace}-g", listener=RecordingListener())
    try:
        got = await fetch_until(consumer, lambda rs: len(rs) >= 1)
        assert values(got) == [b"kept"]
        assert await consumer.fetch(0.3) == []
    finally:
        await consumer.close()


async def test_manual_consumer_from_end_sees_only_later_records(log: EventLog, topic: str) -> None:
    await log.append([OutRecord(topic, 0, b"k", b"old-%d" % i) for i in range(3)])
    tail = await log.consumer(topic, partitions={0: -1})
    whole = await log.consumer(topic, partitions={0: 0, 1: 0})
    try:
        assert tail.assignment() == {0}
        assert whole.assignment() == {0, 1}
        await log.append([OutRecord(topic, 0, b"k", b"new-0"), OutRecord(topic, 1, b"k", b"new-1")])

        with pytest.raises(UsageError, match="not assigned"):
            tail.seek(1, 0)
        with pytest.raises(UsageError):
            tail.seek(0, -1)

        got = await fetch_until(tail, lambda rs: len(rs) >= 1)
        assert [(r.partition, r.offset, r.value) for r in got] == [(0, 3, b"new-0")]
        assert await tail.fetch(0.3) == []

        everything = await fetch_until(whole, lambda rs: len(rs) >= 5)
        assert sorted((r.partition, r.offset) for r in everything) == [
            (0, 0),
            (0, 1),
            (0, 2),
            (0, 3),
            (1, 0),
        ]
    finally:
        await tail.close()
        await whole.close()


# -- snapshots ------------------------------------------------------------------------------


async def test_snapshot_store_loads_latest_per_key(log: EventLog, namespace: str) -> None:
    topics = Topics(namespace)
    specs = topics.specs(2)
    await log.create_topics(specs)
    (spec,) = [s for s in specs if s.name == topics.snapshots]
    assert spec.compacted
    config: dict[str, str] = await log.topic_config(topics.snapshots)  # type: ignore[attr-defined]
    assert config["cleanup.policy"] == "compact"

    store = SnapshotStore(log, topics.snapshots)
    writer = await log.writer(f"{namespace}-pp-0")
    try:
        for version in range(1, 4):
            await writer.commit(
                [
                    store.record(0, b"a", b"a-v%d" % version),
                    store.record(0, b"b", b"b-v%d" % version),
                ]
            )
        await writer.commit([store.record(0, b"c", b"c-v1"), store.record(1, b"a", b"other")])
        await writer.commit([store.record(0, b"b", b"b-v4")])
        await writer.commit([OutRecord(topics.snapshots, 0, b"c", None)])  # tombstone
        with pytest.raises(Boom):
            async with writer.transaction() as txn:
                await txn.send(store.record(0, b"a", b"a-aborted"))
                raise Boom
    finally:
        await writer.close()

    latest = await store.load(0)
    assert {k: r.value for k, r in latest.items()} == {b"a": b"a-v3", b"b": b"b-v4"}
    assert all(r.partition == 0 and r.topic == topics.snapshots for r in latest.values())
    assert {k: r.value for k, r in (await store.load(1)).items()} == {b"a": b"other"}


async def test_create_topics_is_idempotent(log: EventLog, namespace: str) -> None:
    name = f"{namespace}.idem"
    await log.create_topics([TopicSpec(name, 2)])
    await log.append([OutRecord(name, 1, b"k", b"v")])
    await log.create_topics([TopicSpec(name, 5), TopicSpec(f"{name}2", 1)])
    assert await log.partition_count(name) == 2
    assert await log.partition_count(f"{name}2") == 1
    assert values(await read_all(log, name, 1)) == [b"v"]


# -- errors ---------------------------------------------------------------------------------


async def test_missing_topic_raises_topic_error(log: EventLog, namespace: str) -> None:
    missing = f"{namespace}.missing"
    with pytest.raises(TopicError, match="does not exist"):
        await read_all(log, missing, 0)
    with pytest.raises(TopicError):
        await log.partition_count(missing)
    with pytest.raises(TopicError):
        await log.end_offset(missing, 0)
    with pytest.raises(TopicError):
        await log.consumer(missing, partitions={0: 0})
    with pytest.raises(TopicError):
        await log.consumer(missing, group_id=f"{namespace}-g", listener=RecordingListener())


async def test_missing_partition_raises_topic_error(log: EventLog, topic: str) -> None:
    with pytest.raises(TopicError, match="partition 3"):
        await read_all(log, topic, 3)
    with pytest.raises(TopicError):
        await log.end_offset(topic, -1)
    with pytest.raises(TopicError):
        await log.consumer(topic, partitions={0: 0, 7: 0})
    with pytest.raises(TopicError):
        await log.append([OutRecord(topic, 3, b"k", b"v")])
    with pytest.raises(TopicError):
        await log.append([OutRecord(f"{topic}-missing", 0, b"k", b"v")])


async def test_send_to_missing_partition_aborts_the_transaction(log: EventLog, topic: str, namespace: str) -> None:
    writer = await log.writer(f"{namespace}-w")
    try:
        with pytest.raises(TopicError):
            await writer.commit([OutRecord(topic, 0, b"k", b"v"), OutRecord(topic, 3, b"k", b"v")])
        await writer.commit([OutRecord(topic, 1, b"k", b"after")])
    finally:
        await writer.close()
    assert await read_all(log, topic, 0) == []
    assert values(await read_all(log, topic, 1)) == [b"after"]


async def test_kafka_start_fails_fast_on_closed_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket is closed
    kafka = KafkaLog(KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}"))
    started = time.monotonic()
    with pytest.raises(LogUnavailableError, match=f"127.0.0.1:{port}"):
        await asyncio.wait_for(kafka.start(), 15)
    assert time.monotonic() - started < 15
    await kafka.close()


async def test_embedded_start_fails_on_unusable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    embedded = EmbeddedLog(blocker / "log")
    with pytest.raises(LogUnavailableError, match="cannot open the embedded log"):
        await embedded.start()
    await embedded.close()


@pytest.mark.kafka
async def test_kafka_read_starts_at_oldest_kept_record_when_start_is_gone(kafka_bootstrap: str, namespace: str) -> None:
    """Retention may delete the head of a partition; reading from 0 must not skip to the end."""
    from aiokafka import TopicPartition as KafkaTP
    from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

    kafka = KafkaLog(KafkaSettings(bootstrap_servers=kafka_bootstrap))
    await kafka.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        name = f"{namespace}.retained"
        await kafka.create_topics([TopicSpec(name, 1)])
        await kafka.append([OutRecord(name, 0, b"k", b"%d" % i) for i in range(5)])
        await admin.delete_records({KafkaTP(name, 0): RecordsToDelete(before_offset=3)})
        assert [(r.offset, r.value) for r in await read_all(kafka, name, 0)] == [
            (3, b"3"),
            (4, b"4"),
        ]
    finally:
        await admin.close()
        await kafka.close()
