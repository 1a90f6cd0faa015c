"""The `EventLog` contract tests (see `eventstore.conformance`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from ..errors import ProducerFencedError, TopicError, UsageError
from ..log import EventLog, LogConsumer
from ..records import OutRecord, Record, TopicPartition
from ..snapshots import SnapshotStore
from ..topics import Topics, TopicSpec
from .errors import AbortError

WAIT = 20.0
"""Seconds a test waits for what it polls for (generous for a loaded CI machine)."""


async def read_all(log: EventLog, topic: str, partition: int, start: int = 0, end: int | None = None) -> list[Record]:
    """The committed records of a partition from `start` to `end`."""
    return [r async for r in log.read(topic, partition, start, end)]


def values(records: list[Record]) -> list[bytes | None]:
    """The values of `records`."""
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
    """Records what a consumer group tells its listener: assignments and revocations."""

    def __init__(self) -> None:
        self.events: list[tuple[str, set[int]]] = []

    async def on_assigned(self, partitions: set[int]) -> None:
        """Note the assignment."""
        self.events.append(("assigned", set(partitions)))

    async def on_revoked(self, partitions: set[int]) -> None:
        """Note the revocation."""
        self.events.append(("revoked", set(partitions)))


class SeekingListener(RecordingListener):
    """Seeks where a partition processor would: to where its own state says to resume."""

    def __init__(self, resume: dict[int, int]) -> None:
        super().__init__()
        self.resume = resume
        self.consumer: LogConsumer | None = None

    async def on_assigned(self, partitions: set[int]) -> None:
        """Note the assignment and seek the partitions it knows a resume offset of."""
        await super().on_assigned(partitions)
        assert self.consumer is not None
        for p in partitions & self.resume.keys():
            self.consumer.seek(p, self.resume[p])


class FailingListener(RecordingListener):
    """Fails when it is given partitions."""

    async def on_assigned(self, partitions: set[int]) -> None:
        """Note the assignment, then fail."""
        await super().on_assigned(partitions)
        raise AbortError("cannot take the partitions")


@pytest.mark.asyncio
class LogContract:
    """The contract tests of an `EventLog` backend; subclass with a ``log_factory`` fixture."""

    @pytest.fixture
    def log_factory(self) -> Callable[[], EventLog]:
        """A factory of new, unstarted logs on one storage: override it in the subclass."""
        raise NotImplementedError("a LogContract subclass defines the log_factory fixture")

    @pytest.fixture
    def namespace(self) -> str:
        """A namespace no other test uses (topics and groups are prefixed with it)."""
        return f"c{uuid.uuid4().hex[:10]}"

    @pytest_asyncio.fixture
    async def log(self, log_factory: Callable[[], EventLog]) -> AsyncIterator[EventLog]:
        """A started log, closed after the test."""
        the_log = log_factory()
        await the_log.start()
        try:
            yield the_log
        finally:
            await the_log.close()

    @pytest_asyncio.fixture
    async def topic(self, log: EventLog, namespace: str) -> str:
        """A fresh topic with 3 partitions."""
        name = f"{namespace}.conf"
        await log.create_topics([TopicSpec(name, 3)])
        return name

    # -- append and read ------------------------------------------------------------------------

    async def test_append_then_read_in_offset_order(self, log: EventLog, topic: str) -> None:
        """Append then read in offset order."""
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

    async def test_read_bounds_and_end_offset(self, log: EventLog, topic: str) -> None:
        """Read bounds and end offset."""
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

    async def test_transaction_commits_records_and_offsets_together(
        self, log: EventLog, topic: str, namespace: str
    ) -> None:
        """Transaction commits records and offsets together."""
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

    async def test_aborted_transaction_is_invisible(self, log: EventLog, topic: str, namespace: str) -> None:
        """Aborted transaction is invisible."""
        group = f"{namespace}-g"
        source = TopicPartition(topic, 2)
        writer = await log.writer(f"{namespace}-w")
        try:
            with pytest.raises(AbortError):
                async with writer.transaction() as txn:
                    await txn.send(OutRecord(topic, 0, b"a", b"aborted-1"))
                    await txn.send(OutRecord(topic, 1, b"a", b"aborted-2"))
                    txn.commit_offsets(group, {source: 3})
                    await asyncio.sleep(0.05)  # let the records reach the broker before aborting
                    raise AbortError

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

    async def test_writer_commit_without_group_for_offsets_is_refused(
        self, log: EventLog, topic: str, namespace: str
    ) -> None:
        """Writer commit without group for offsets is refused."""
        writer = await log.writer(f"{namespace}-w")
        try:
            with pytest.raises(UsageError):
                await writer.commit([OutRecord(topic, 0, b"a", b"x")], offsets={TopicPartition(topic, 1): 1})
            assert await read_all(log, topic, 0) == []
        finally:
            await writer.close()

    # -- fencing --------------------------------------------------------------------------------

    async def test_newer_writer_fences_older_one(self, log: EventLog, topic: str, namespace: str) -> None:
        """Newer writer fences older one."""
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
        self, log_factory: Callable[[], EventLog], log: EventLog, topic: str, namespace: str
    ) -> None:
        """The takeover a partition processor does: open the writer (fencing), then read.

        The new owner is another log instance (another process), so it sees the old owner's
        commit only through the log itself.
        """
        group = f"{namespace}-g"
        source = TopicPartition(topic, 2)
        tid = f"{namespace}-pp-2"
        old = await log.writer(tid)
        other = log_factory()
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
        self, log_factory: Callable[[], EventLog], log: EventLog, topic: str, namespace: str
    ) -> None:
        """A process reads the offset another owner committed after it, without stalling."""
        group = f"{namespace}-g"
        source = TopicPartition(topic, 2)
        tid = f"{namespace}-pp-2"
        mine = await log.writer(tid)
        await mine.commit([], group_id=group, offsets={source: 5})
        other = log_factory()
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

    async def test_open_transaction_of_fenced_writer_never_commits(
        self, log: EventLog, topic: str, namespace: str
    ) -> None:
        """Open transaction of fenced writer never commits."""
        tid = f"{namespace}-pp-1"
        a = await log.writer(tid)
        b = None
        try:
            with pytest.raises(ProducerFencedError):
                async with a.transaction() as txn:
                    await txn.send(OutRecord(topic, 0, b"k", b"a-open"))
                    await asyncio.sleep(0.05)  # let the record reach the broker
                    b = await log.writer(tid)
            assert b is not None
            await b.commit([OutRecord(topic, 0, b"k", b"b")])
            assert values(await read_all(log, topic, 0)) == [b"b"]
        finally:
            await a.close()
            if b is not None:
                await b.close()

    # -- consumers ------------------------------------------------------------------------------

    async def test_group_consumer_starts_at_committed_offsets(self, log: EventLog, topic: str, namespace: str) -> None:
        """Group consumer starts at committed offsets."""
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

    async def test_listener_may_seek_when_assigned(self, log: EventLog, topic: str, namespace: str) -> None:
        """Listener may seek when assigned."""
        await log.append(
            [OutRecord(topic, 0, b"k", b"p0-%d" % i) for i in range(3)] + [OutRecord(topic, 1, b"k", b"p1-0")]
        )
        listener = SeekingListener({0: 2})
        consumer = await log.consumer(topic, group_id=f"{namespace}-g", listener=listener)
        listener.consumer = consumer
        try:
            got = await fetch_until(consumer, lambda rs: len(rs) >= 2)
            assert sorted((r.partition, r.offset) for r in got) == [(0, 2), (1, 0)]
            assert await consumer.fetch(0.3) == []
        finally:
            await consumer.close()

    async def test_listener_failure_surfaces_from_fetch(self, log: EventLog, topic: str, namespace: str) -> None:
        """Listener failure surfaces from fetch."""
        listener = FailingListener()
        consumer = await log.consumer(topic, group_id=f"{namespace}-g", listener=listener)
        try:
            with pytest.raises(AbortError, match="cannot take"):
                await fetch_until(consumer, lambda rs: False)
            assert listener.events == [("assigned", {0, 1, 2})]
        finally:
            await consumer.close()
        assert listener.events == [("assigned", {0, 1, 2}), ("revoked", {0, 1, 2})]

    async def test_group_consumer_does_not_see_aborted_records(self, log: EventLog, topic: str, namespace: str) -> None:
        """Group consumer does not see aborted records."""
        writer = await log.writer(f"{namespace}-w")
        try:
            with pytest.raises(AbortError):
                async with writer.transaction() as txn:
                    await txn.send(OutRecord(topic, 0, b"k", b"aborted"))
                    await asyncio.sleep(0.05)
                    raise AbortError
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

    async def test_manual_consumer_from_end_sees_only_later_records(self, log: EventLog, topic: str) -> None:
        """Manual consumer from end sees only later records."""
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

    async def test_snapshot_store_loads_latest_per_key(self, log: EventLog, namespace: str) -> None:
        """Snapshot store loads latest per key."""
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
            with pytest.raises(AbortError):
                async with writer.transaction() as txn:
                    await txn.send(store.record(0, b"a", b"a-aborted"))
                    raise AbortError
        finally:
            await writer.close()

        latest = await store.load(0)
        assert {k: r.value for k, r in latest.items()} == {b"a": b"a-v3", b"b": b"b-v4"}
        assert all(r.partition == 0 and r.topic == topics.snapshots for r in latest.values())
        assert {k: r.value for k, r in (await store.load(1)).items()} == {b"a": b"other"}

    async def test_create_topics_is_idempotent(self, log: EventLog, namespace: str) -> None:
        """Create topics is idempotent."""
        name = f"{namespace}.idem"
        await log.create_topics([TopicSpec(name, 2)])
        await log.append([OutRecord(name, 1, b"k", b"v")])
        await log.create_topics([TopicSpec(name, 5), TopicSpec(f"{name}2", 1)])
        assert await log.partition_count(name) == 2
        assert await log.partition_count(f"{name}2") == 1
        assert values(await read_all(log, name, 1)) == [b"v"]

    # -- errors ---------------------------------------------------------------------------------

    async def test_missing_topic_raises_topic_error(self, log: EventLog, namespace: str) -> None:
        """Missing topic raises topic error."""
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

    async def test_missing_partition_raises_topic_error(self, log: EventLog, topic: str) -> None:
        """Missing partition raises topic error."""
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

    async def test_send_to_missing_partition_aborts_the_transaction(
        self, log: EventLog, topic: str, namespace: str
    ) -> None:
        """Send to missing partition aborts the transaction."""
        writer = await log.writer(f"{namespace}-w")
        try:
            with pytest.raises(TopicError):
                await writer.commit([OutRecord(topic, 0, b"k", b"v"), OutRecord(topic, 3, b"k", b"v")])
            await writer.commit([OutRecord(topic, 1, b"k", b"after")])
        finally:
            await writer.close()
        assert await read_all(log, topic, 0) == []
        assert values(await read_all(log, topic, 1)) == [b"after"]
