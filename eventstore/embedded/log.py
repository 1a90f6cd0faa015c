"""The embedded backend: the log contract on one local SQLite file, no broker needed.

One file holds every topic. A transaction is one SQLite transaction, so its records and offsets
become visible together or not at all; a writer's epoch per transactional id fences older
writers exactly like Kafka's producer epochs. Group membership is a file lock per group and
topic: one member owns every partition, and a member that dies (even by SIGKILL) releases it.
WAL mode with ``synchronous=NORMAL`` survives any process crash; pass ``fsync=True`` to also
survive power loss.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ..codec import pack, unpack
from ..errors import LogUnavailableError, ProducerFencedError, TopicError, UsageError
from ..log import PartitionListener, TransactionalWriter
from ..records import OutRecord, Record, TopicPartition
from ..topics import TopicSpec

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS topics (
    name TEXT PRIMARY KEY, partitions INTEGER NOT NULL, config BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    key BLOB, value BLOB, headers BLOB, ts INTEGER NOT NULL,
    PRIMARY KEY (topic, partition, offset)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ends (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS offsets (
    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    offset INTEGER NOT NULL, PRIMARY KEY (group_id, topic, partition));
CREATE TABLE IF NOT EXISTS producers (
    transactional_id TEXT PRIMARY KEY, epoch INTEGER NOT NULL);
"""

# Wakes fetchers of this process as soon as a writer of this process commits.
_waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}


def _notify(path: str) -> None:
    for loop, event in list(_waiters.get(path, ())):
        if loop.is_closed():
            continue
        loop.call_soon_threadsafe(event.set)


class EmbeddedLog:
    """An `EventLog` on a local SQLite file (the default backend)."""

    def __init__(self, data_dir: Path, *, fsync: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / "log.sqlite3"
        self._fsync = fsync
        self._db: sqlite3.Connection | None = None
        self._specs: dict[str, TopicSpec] = {}

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Open (and create) the log file."""
        if self._db is not None:
            return
        try:
            # Only its owner reads a data directory: it holds every payload and reply.
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            created = not self.path.exists()
            self._db = self._connect()
            if created:
                os.chmod(self.path, 0o600)  # SQLite gives its -wal and -shm files the same mode
        except (OSError, sqlite3.Error) as exc:
            raise LogUnavailableError(
                f"cannot open the embedded log at {self.path}: {exc}; check that the data "
                "directory is writable (TETHER_DATA_DIR)"
            ) from exc

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self._fsync else 'NORMAL'}")
        db.executescript(_SCHEMA)
        return db

    async def close(self) -> None:
        """Close the file; idempotent."""
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection."""
        if self._db is None:
            raise UsageError("the embedded log is not started; call `await log.start()` first")
        return self._db

    @asynccontextmanager
    async def _immediate(self) -> AsyncIterator[sqlite3.Connection]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        _notify(str(self.path))
        # SQLite never makes the caller wait, so without this a loop of writes (a client's burst
        # of sends in a worker's process) would never let the loop run anything else.
        await asyncio.sleep(0)

    # -- topics ----------------------------------------------------------------------------
    async def create_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create missing topics; existing ones keep their configuration."""
        async with self._immediate() as db:
            for spec in specs:
                db.execute(
                    "INSERT OR IGNORE INTO topics VALUES (?, ?, ?)",
                    (spec.name, spec.partitions, pack(spec.config)),
                )

    def _check_partition(self, topic: str, partition: int) -> None:
        count = self._spec(topic).partitions
        if not 0 <= partition < count:
            raise TopicError(f"partition {partition} does not exist in {topic!r} ({count} partitions)")

    def _spec(self, topic: str) -> TopicSpec:
        spec = self._specs.get(topic)
        if spec is None:
            row = self.db.execute("SELECT partitions, config FROM topics WHERE name = ?", (topic,)).fetchone()
            if row is None:
                raise TopicError(f"topic {topic!r} does not exist; create the namespace first")
            spec = TopicSpec(topic, int(row[0]), dict(unpack(row[1])))
            self._specs[topic] = spec
        return spec

    async def partition_count(self, topic: str) -> int:
        """Number of partitions of `topic`."""
        return self._spec(topic).partitions

    async def topic_config(self, topic: str) -> dict[str, str]:
        """The configuration `topic` was created with."""
        return dict(self._spec(topic).config)

    # -- writing ---------------------------------------------------------------------------
    def _insert(self, db: sqlite3.Connection, records: Sequence[OutRecord]) -> None:
        now = int(time.time() * 1000)
        next_offsets: dict[tuple[str, int], int] = {}
        rows: list[tuple[Any, ...] | None] = []
        latest: dict[tuple[str, int, bytes], int] = {}  # compacted key -> its row in `rows`
        for r in records:
            spec = self._spec(r.topic)
            if not 0 <= r.partition < spec.partitions:
                raise TopicError(
                    f"partition {r.partition} does not exist in {r.topic!r} ({spec.partitions} partitions)"
                )
            tp = (r.topic, r.partition)
            if tp not in next_offsets:
                row = db.execute("SELECT next_offset FROM ends WHERE topic = ? AND partition = ?", tp).fetchone()
                next_offsets[tp] = int(row[0]) if row else 0
            offset = next_offsets[tp]
            next_offsets[tp] = offset + 1
            if spec.compacted and r.key is not None:
                # Eager compaction: only the latest record per key stays, as Kafka converges to;
                # that holds for earlier records of this same batch too.
                db.execute(
                    "DELETE FROM records WHERE topic = ? AND partition = ? AND key = ?",
                    (r.topic, r.partition, r.key),
                )
                earlier = latest.get((r.topic, r.partition, r.key))
                if earlier is not None:
                    rows[earlier] = None
                latest[(r.topic, r.partition, r.key)] = len(rows)
            headers = pack([list(h) for h in r.headers]) if r.headers else None
            rows.append((r.topic, r.partition, offset, r.key, r.value, headers, r.timestamp_ms or now))
        db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", [r for r in rows if r is not None])
        db.executemany(
            "INSERT INTO ends VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
            "DO UPDATE SET next_offset = excluded.next_offset",
            [(t, p, o) for (t, p), o in next_offsets.items()],
        )

    async def append(self, records: Sequence[OutRecord]) -> None:
        """Append records atomically (the embedded log is always atomic)."""
        async with self._immediate() as db:
            self._insert(db, records)

    async def writer(self, transactional_id: str) -> EmbeddedWriter:
        """A writer that fences every older writer with the same id."""
        async with self._immediate() as db:
            row = db.execute("SELECT epoch FROM producers WHERE transactional_id = ?", (transactional_id,)).fetchone()
            epoch = (int(row[0]) + 1) if row else 0
            db.execute(
                "INSERT INTO producers VALUES (?, ?) ON CONFLICT (transactional_id) "
                "DO UPDATE SET epoch = excluded.epoch",
                (transactional_id, epoch),
            )
        return EmbeddedWriter(self, transactional_id, epoch)

    async def _commit(
        self,
        transactional_id: str,
        epoch: int,
        records: Sequence[OutRecord],
        offsets: Sequence[tuple[str, TopicPartition, int]],
    ) -> None:
        async with self._immediate() as db:
            row = db.execute("SELECT epoch FROM producers WHERE transactional_id = ?", (transactional_id,)).fetchone()
            if row is None or int(row[0]) != epoch:
                raise ProducerFencedError(
                    f"writer {transactional_id!r} (epoch {epoch}) was fenced by a newer writer "
                    "with the same transactional id; this process no longer owns the partition"
                )
            self._insert(db, records)
            db.executemany(
                "INSERT INTO offsets VALUES (?, ?, ?, ?) ON CONFLICT (group_id, topic, partition) "
                "DO UPDATE SET offset = excluded.offset",
                [(g, tp.topic, tp.partition, o) for g, tp, o in offsets],
            )

    # -- reading ---------------------------------------------------------------------------
    def _rows(self, topic: str, partition: int, start: int, end: int | None, limit: int) -> list[Any]:
        if end is None:
            return self.db.execute(
                "SELECT offset, key, value, headers, ts FROM records WHERE topic = ? AND "
                "partition = ? AND offset >= ? ORDER BY offset LIMIT ?",
                (topic, partition, start, limit),
            ).fetchall()
        return self.db.execute(
            "SELECT offset, key, value, headers, ts FROM records WHERE topic = ? AND "
            "partition = ? AND offset >= ? AND offset < ? ORDER BY offset LIMIT ?",
            (topic, partition, start, end, limit),
        ).fetchall()

    @staticmethod
    def _record(topic: str, partition: int, row: Any) -> Record:
        offset, key, value, headers, ts = row
        hdrs = tuple((str(k), bytes(v)) for k, v in unpack(headers)) if headers else ()
        return Record(topic, partition, int(offset), key, value, hdrs, int(ts))

    async def read(self, topic: str, partition: int, start: int = 0, end: int | None = None) -> AsyncIterator[Record]:
        """Committed records of a partition from `start` to `end` (default: the end now)."""
        self._check_partition(topic, partition)
        if end is None:
            end = await self.end_offset(topic, partition)
        position = start
        while position < end:
            rows = self._rows(topic, partition, position, end, 2000)
            if not rows:
                return
            for row in rows:
                yield self._record(topic, partition, row)
            position = int(rows[-1][0]) + 1
            await asyncio.sleep(0)

    async def end_offset(self, topic: str, partition: int) -> int:
        """The offset the next committed record of the partition will get."""
        self._check_partition(topic, partition)  # a missing one is an error, not empty
        row = self.db.execute(
            "SELECT next_offset FROM ends WHERE topic = ? AND partition = ?", (topic, partition)
        ).fetchone()
        return int(row[0]) if row else 0

    async def settled_end_offset(self, topic: str, partition: int, timeout: float) -> int:
        """`end_offset`: a transaction here is visible as soon as it commits."""
        return await self.end_offset(topic, partition)

    async def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> int:
        """The earliest offset whose record's time is at or after `timestamp_ms`, else the end.

        A binary search over offsets (records get their time when appended, so times grow with
        offsets as Kafka's time index assumes); a few primary-key lookups, whatever the size.
        """
        end = await self.end_offset(topic, partition)

        def first(at: int) -> tuple[int, int] | None:
            row = self.db.execute(
                "SELECT offset, ts FROM records WHERE topic = ? AND partition = ? AND offset >= ? "
                "ORDER BY offset LIMIT 1",
                (topic, partition, at),
            ).fetchone()
            return (int(row[0]), int(row[1])) if row else None

        low, high = 0, end  # invariant: the answer is the first record at or after some o in [low, high]
        while low < high:
            middle = (low + high) // 2
            found = first(middle)
            if found is None or found[1] >= timestamp_ms:
                high = middle
            else:
                low = found[0] + 1
        found = first(low)
        return found[0] if found is not None else end

    async def committed(self, group_id: str, tp: TopicPartition) -> int | None:
        """The offset a group committed on a partition, or None."""
        row = self.db.execute(
            "SELECT offset FROM offsets WHERE group_id = ? AND topic = ? AND partition = ?",
            (group_id, tp.topic, tp.partition),
        ).fetchone()
        return int(row[0]) if row else None

    async def consumer(
        self,
        topic: str,
        *,
        group_id: str | None = None,
        listener: PartitionListener | None = None,
        partitions: Mapping[int, int] | None = None,
    ) -> EmbeddedConsumer:
        """A consumer of `topic` (see `EventLog.consumer`)."""
        count = self._spec(topic).partitions
        for p in partitions or {}:
            self._check_partition(topic, p)
        consumer = EmbeddedConsumer(self, topic, count, group_id, listener)
        if partitions is not None:
            for p, offset in partitions.items():
                consumer._positions[p] = offset if offset >= 0 else await self.end_offset(topic, p)
        elif group_id is None or listener is None:
            raise UsageError("a consumer needs either group_id and listener, or partitions")
        return consumer


class EmbeddedWriter(TransactionalWriter):
    """Transactional writer of the embedded log."""

    def __init__(self, log: EmbeddedLog, transactional_id: str, epoch: int) -> None:
        self._log = log
        self._id = transactional_id
        self._epoch = epoch

    @property
    def transactional_id(self) -> str:
        """The id that fences older writers."""
        return self._id

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_EmbeddedTransaction]:
        """Buffer a transaction; commit it on exit, drop it if the block raises."""
        txn = _EmbeddedTransaction()
        yield txn
        await self._log._commit(self._id, self._epoch, txn.records, txn.offsets)

    async def close(self) -> None:
        """Nothing to release: an uncommitted transaction was only ever in memory."""


class _EmbeddedTransaction:
    def __init__(self) -> None:
        self.records: list[OutRecord] = []
        self.offsets: list[tuple[str, TopicPartition, int]] = []

    async def send(self, record: OutRecord) -> None:
        self.records.append(record)

    def commit_offsets(self, group_id: str, offsets: Mapping[TopicPartition, int]) -> None:
        self.offsets.extend((group_id, tp, o) for tp, o in offsets.items())


class EmbeddedConsumer:
    """Consumer of the embedded log; a group member owns all partitions while it holds a lock."""

    def __init__(
        self,
        log: EmbeddedLog,
        topic: str,
        partition_count: int,
        group_id: str | None,
        listener: PartitionListener | None,
    ) -> None:
        self._log = log
        self._topic = topic
        self._count = partition_count
        self._group = group_id
        self._listener = listener
        self._positions: dict[int, int] = {}
        self._lock_fd: int | None = None
        self._next_lock_try = 0.0
        self._event = asyncio.Event()
        self._waiter = (asyncio.get_running_loop(), self._event)
        _waiters.setdefault(str(log.path), set()).add(self._waiter)

    def assignment(self) -> set[int]:
        """Partitions currently fetched."""
        return set(self._positions)

    def position(self, partition: int) -> int | None:
        """The offset `fetch` returns next for `partition`; None if it is not assigned."""
        return self._positions.get(partition)

    def seek(self, partition: int, offset: int) -> None:
        """Fetch `partition` from `offset` next.

        Raises:
            UsageError: the partition is not assigned to this consumer, or the offset is < 0.
        """
        if partition not in self._positions:
            raise UsageError(
                f"cannot seek partition {partition} of {self._topic!r}: it is not assigned to "
                f"this consumer (assigned: {sorted(self._positions)})"
            )
        if offset < 0:
            raise UsageError(f"cannot seek to offset {offset}; offsets are >= 0")
        self._positions[partition] = offset

    def _try_join(self) -> bool:
        if self._lock_fd is not None or self._group is None or self._listener is None:
            return False
        now = time.monotonic()
        if now < self._next_lock_try:
            return False
        self._next_lock_try = now + 0.25
        name = f"{self._group}.{self._topic}.lock".replace(os.sep, "_")
        fd = os.open(self._log.data_dir / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    async def _join(self) -> None:
        assert self._listener is not None and self._group is not None
        for p in range(self._count):
            committed = await self._log.committed(self._group, TopicPartition(self._topic, p))
            self._positions[p] = committed or 0
        await self._listener.on_assigned(set(range(self._count)))

    async def fetch(self, timeout: float, max_records: int = 2000) -> list[Record]:
        """Return committed records after the current positions (waits up to `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            if self._try_join():
                await self._join()
            self._event.clear()
            out: list[Record] = []
            for p, position in list(self._positions.items()):
                rows = self._log._rows(self._topic, p, position, None, max_records - len(out))
                for row in rows:
                    out.append(self._log._record(self._topic, p, row))
                if rows:
                    self._positions[p] = int(rows[-1][0]) + 1
                if len(out) >= max_records:
                    break
            remaining = deadline - time.monotonic()
            if out or remaining <= 0:
                return out
            # Another process's commit does not wake us: poll at a short interval too.
            # Not `wait_for`: on Python 3.11 it swallows a cancellation that arrives as the
            # event is set, and a cancelled fetch loop (a client closing) then never ends.
            waiter = asyncio.ensure_future(self._event.wait())
            try:
                await asyncio.wait({waiter}, timeout=min(remaining, 0.005))
            finally:
                waiter.cancel()

    async def close(self) -> None:
        """Give up the partitions (telling the listener) and the group lock."""
        _waiters.get(str(self._log.path), set()).discard(self._waiter)
        if self._lock_fd is not None:
            if self._listener is not None:
                await self._listener.on_revoked(set(self._positions))
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None
        self._positions.clear()
