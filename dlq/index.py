"""A local, incremental index of a dead-letter topic, so that stats and lists need no full scan.

One SQLite file per log, namespace and topic under ``{data_dir}/dlq-index/`` (directory mode
0700) holds one row per dead letter: the fields filters and stats use (error class, handler,
session, category, first line of the message, times), never the payload. Each use first
catches up from where the index ends to the end of each partition, so the index is as fresh as
the log; it is never trusted over it:

- the last indexed record of each partition is read back and compared (time and a checksum of
  its headers): a topic deleted and created again, or another log behind the same path, makes
  the index rebuild that partition;
- an index that ends past a partition's end does the same;
- letters before a partition's first kept offset (removed by the topic's retention) are
  dropped from the index on the next use;
- ``show`` and replays read the dead letters themselves from the log; the index only says which.

Statuses are not indexed: they are read from the control topic each time and joined.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from actors.protocol.deadletter import DeadLetterSummary
from eventstore import EventLog, Record

from .records import DeadLetter, first_line
from .status import Resolution

INDEX_VERSION = 1
"""Bumped when the table changes: an index of another version is rebuilt."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ends (
    partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL, last_ts INTEGER NOT NULL,
    last_sum INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS letters (
    partition INTEGER NOT NULL, offset INTEGER NOT NULL, seen_ms INTEGER NOT NULL,
    first_ms INTEGER NOT NULL, error_class TEXT NOT NULL, fqcn TEXT, object TEXT, key TEXT,
    handler TEXT, qualified_handler TEXT NOT NULL, category TEXT NOT NULL, message TEXT NOT NULL,
    PRIMARY KEY (partition, offset)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS letters_seen ON letters (seen_ms);
CREATE TABLE IF NOT EXISTS groups (
    error_class TEXT NOT NULL, qualified_handler TEXT NOT NULL, count INTEGER NOT NULL,
    first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL, latest_partition INTEGER NOT NULL,
    latest_offset INTEGER NOT NULL, PRIMARY KEY (error_class, qualified_handler)) WITHOUT ROWID;
"""
# `groups` holds the letters' counts by error class and handler, kept up to date as letters are
# indexed, so the default stats read a few rows instead of aggregating every letter.
_ADD_GROUP = """
INSERT INTO groups VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (error_class, qualified_handler) DO UPDATE SET
    count = count + excluded.count,
    first_ms = MIN(first_ms, excluded.first_ms),
    latest_partition = CASE WHEN excluded.last_ms >= last_ms THEN excluded.latest_partition
                            ELSE latest_partition END,
    latest_offset = CASE WHEN excluded.last_ms >= last_ms THEN excluded.latest_offset
                         ELSE latest_offset END,
    last_ms = MAX(last_ms, excluded.last_ms)
"""
_REGROUP = """
DELETE FROM groups;
INSERT INTO groups
    SELECT error_class, qualified_handler, COUNT(*), MIN(first_ms), MAX(seen_ms), partition, offset
    FROM letters GROUP BY error_class, qualified_handler;
"""

_BATCH = 5000


def _checksum(record: Record) -> int:
    crc = zlib.crc32(record.value or b"")
    for name, value in record.headers:
        crc = zlib.crc32(value or b"", zlib.crc32(name.encode(), crc))
    return crc


def qualified_handler(letter: DeadLetter) -> str:
    """``type.handler`` as stats show it (``(none)`` for what is unknown)."""
    if letter.handler is None:
        return "(none)" if letter.object_name is None else f"{letter.object_name}.(none)"
    return f"{letter.object_name}.{letter.handler}" if letter.object_name else letter.handler


def index_path(data_dir: Path, log_identity: str, topic: str) -> Path:
    """Where the index of `topic` on the log known as `log_identity` lives."""
    digest = hashlib.sha256(log_identity.encode()).hexdigest()[:12]
    return data_dir / "dlq-index" / f"{topic}.{digest}.sqlite"


class LetterIndex:
    """The index of one dead-letter topic; `sync` before each query."""

    def __init__(self, path: Path, log: EventLog, topic: str, *, foreign_topic: bool = False) -> None:
        self.path = path
        self._log = log
        self._topic = topic
        self._foreign = foreign_topic
        self._db: sqlite3.Connection | None = None
        self.read_records = 0
        """Records read from the log by the last `sync` (for the bench and tests)."""

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Another command may be catching up the same index: wait for it rather than fail.
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            os.chmod(self.path, 0o600)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=OFF")  # a lost index is rebuilt from the log
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
            if row is None or row[0] != str(INDEX_VERSION):
                db.executescript("DELETE FROM letters; DELETE FROM ends; DELETE FROM groups;")
                db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(INDEX_VERSION),))
            self._db = db
        return self._db

    def close(self) -> None:
        """Close the file; idempotent."""
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _still_there(self, partition: int, offset: int, ts: int, checksum: int) -> bool:
        async for record in self._log.read(self._topic, partition, offset, offset + 1):
            return record.offset == offset and record.timestamp_ms == ts and _checksum(record) == checksum
        return False

    async def sync(self, partitions: int) -> None:
        """Catch up with the log: index every record of `partitions` partitions not yet indexed."""
        db = self._open()
        self.read_records = 0
        regroup = False
        if db.execute("SELECT 1 FROM ends WHERE partition >= ?", (partitions,)).fetchone():
            db.execute("DELETE FROM letters WHERE partition >= ?", (partitions,))
            db.execute("DELETE FROM ends WHERE partition >= ?", (partitions,))
            regroup = True
        for partition in range(partitions):
            end = await self._log.end_offset(self._topic, partition)
            row = db.execute(
                "SELECT next_offset, last_ts, last_sum FROM ends WHERE partition = ?", (partition,)
            ).fetchone()
            start = 0
            if row is not None:
                # Letters that retention removed from the topic leave the index too: it never
                # lists a dead letter the topic no longer has.
                kept_from = await self._log.offset_for_time(self._topic, partition, 0)
                if kept_from > 0:
                    gone = db.execute(
                        "DELETE FROM letters WHERE partition = ? AND offset < ?", (partition, kept_from)
                    ).rowcount
                    regroup = regroup or gone > 0
                next_offset, last_ts, last_sum = (int(v) for v in row)
                fresh = next_offset <= end and (
                    next_offset == 0 or await self._still_there(partition, next_offset - 1, last_ts, last_sum)
                )
                if fresh:
                    start = next_offset
                else:
                    db.execute("DELETE FROM letters WHERE partition = ?", (partition,))
                    db.execute("DELETE FROM ends WHERE partition = ?", (partition,))
                    regroup = True
            if start >= end:
                continue
            await self._index(db, partition, start, end)
        if regroup:  # letters were dropped: count the groups again from what is left
            db.executescript("BEGIN;" + _REGROUP + "COMMIT;")

    async def _index(self, db: sqlite3.Connection, partition: int, start: int, end: int) -> None:
        rows: list[tuple[Any, ...]] = []
        last: Record | None = None

        def flush() -> None:
            groups: dict[tuple[str, str], list[int]] = {}
            for row in rows:
                seen, first = row[2], row[3]
                group = groups.get((row[4], row[9]))
                if group is None:
                    groups[(row[4], row[9])] = [1, first, seen, row[0], row[1]]
                else:
                    group[0] += 1
                    group[1] = min(group[1], first)
                    if seen >= group[2]:
                        group[2:5] = [seen, row[0], row[1]]
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO letters VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            db.executemany(_ADD_GROUP, [(c, h, n, f, last, p, o) for (c, h), (n, f, last, p, o) in groups.items()])
            if last is not None:
                db.execute(
                    "INSERT OR REPLACE INTO ends VALUES (?, ?, ?, ?)",
                    (partition, last.offset + 1, last.timestamp_ms, _checksum(last)),
                )
            db.execute("COMMIT")
            rows.clear()

        async for record in self._log.read(self._topic, partition, start, end):
            rows.append((partition, record.offset, *self._row(record)))
            last = record
            self.read_records += 1
            if len(rows) >= _BATCH:
                flush()
        if rows or last is not None:
            flush()

    def _row(self, record: Record) -> tuple[Any, ...]:
        """The indexed fields of a dead letter.

        From its headers alone when they name its session and handler (Tether's always do),
        else as `DeadLetter.from_record` parses it.
        """
        headers = dict(record.headers)  # the last value of a name wins, as in Record.header
        dl = DeadLetterSummary.decode(headers.get)
        if dl.object_name is None or dl.key is None or dl.handler is None or dl.category is None:
            letter = DeadLetter.from_record(record, foreign_topic=self._foreign)
            return (
                letter.seen_ms,
                letter.first_seen_ms,
                letter.error_class,
                letter.error_fqcn,
                letter.object_name,
                letter.object_key,
                letter.handler,
                qualified_handler(letter),
                letter.category,
                letter.summary_line,
            )
        fqcn = dl.exception_fqcn
        seen = dl.last_failure_ms or record.timestamp_ms
        return (
            seen,
            dl.first_failure_ms or seen,
            dl.error_class or (fqcn.rsplit(".", 1)[-1] if fqcn else "unknown"),
            fqcn,
            dl.object_name,
            dl.key,
            dl.handler,
            f"{dl.object_name}.{dl.handler}",
            dl.category,
            first_line(dl.exception_message or ""),
        )

    # -- queries ---------------------------------------------------------------------------
    def _statuses(self, db: sqlite3.Connection, resolutions: Mapping[str, Resolution]) -> None:
        db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS statuses (partition INTEGER, offset INTEGER, status TEXT, "
            "PRIMARY KEY (partition, offset))"
        )
        db.execute("DELETE FROM statuses")
        rows = []
        for resolution in resolutions.values():
            topic, colon, letter_id = resolution.id.rpartition(":")
            if (topic != self._topic) if self._foreign else bool(colon):
                continue  # a status of another topic's dead letter
            partition, _, offset = letter_id.partition("-")
            if partition.isdigit() and offset.isdigit():
                rows.append((int(partition), int(offset), resolution.status))
        db.executemany("INSERT OR REPLACE INTO statuses VALUES (?, ?, ?)", rows)

    def _where(self, where: Any) -> tuple[str, list[Any]]:
        """SQL for a `dlq.Filter` (the statuses table joined as ``s``)."""
        clauses: list[str] = []
        args: list[Any] = []

        def any_of(column: str, values: Sequence[Any]) -> None:
            clauses.append(f"{column} IN ({','.join('?' * len(values))})")
            args.extend(values)

        if where.object_name is not None:
            clauses.append("l.object = ?")
            args.append(where.object_name)
        if where.object_key is not None:
            clauses.append("l.key = ?")
            args.append(where.object_key)
        if where.handlers:
            marks = ",".join("?" * len(where.handlers))
            clauses.append(f"(l.handler IN ({marks}) OR (l.object || '.' || l.handler) IN ({marks}))")
            args.extend(where.handlers)
            args.extend(where.handlers)
        if where.error_classes:
            marks = ",".join("?" * len(where.error_classes))
            clauses.append(f"(l.error_class IN ({marks}) OR l.fqcn IN ({marks}))")
            args.extend(where.error_classes)
            args.extend(where.error_classes)
        if where.categories:
            any_of("l.category", where.categories)
        if where.statuses:
            any_of("COALESCE(s.status, 'pending')", where.statuses)
        if where.since_ms is not None:
            clauses.append("l.seen_ms >= ?")
            args.append(where.since_ms)
        if where.until_ms is not None:
            clauses.append("l.seen_ms < ?")
            args.append(where.until_ms)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    _FROM = " FROM letters l LEFT JOIN statuses s ON s.partition = l.partition AND s.offset = l.offset"

    def locate(
        self, where: Any, resolutions: Mapping[str, Resolution], limit: int = 0
    ) -> tuple[list[tuple[int, int]], int]:
        """``(partition, offset)`` of the latest `limit` matches (0: all) in log order, and how many match."""
        db = self._open()
        self._statuses(db, resolutions)
        sql, args = self._where(where)
        if where.empty:
            total = int(db.execute("SELECT COALESCE(SUM(count), 0) FROM groups").fetchone()[0])
        else:
            total = int(db.execute("SELECT COUNT(*)" + self._FROM + sql, args).fetchone()[0])
        order = " ORDER BY l.partition DESC, l.offset DESC" + (f" LIMIT {int(limit)}" if limit > 0 else "")
        found = db.execute("SELECT l.partition, l.offset" + self._FROM + sql + order, args).fetchall()
        return sorted((int(p), int(o)) for p, o in found), total

    def _grouped(
        self, db: sqlite3.Connection, resolutions: Mapping[str, Resolution], chosen: list[str]
    ) -> list[dict[str, Any]]:
        """Unfiltered stats by error class and/or handler, from the `groups` table."""
        self._statuses(db, resolutions)
        resolved: dict[tuple[str, str], dict[str, int]] = {}
        for error_class, handler, status in db.execute(
            "SELECT l.error_class, l.qualified_handler, s.status FROM statuses s "
            "JOIN letters l ON l.partition = s.partition AND l.offset = s.offset"
        ):
            counts = resolved.setdefault((error_class, handler), {})
            counts[status] = counts.get(status, 0) + 1
        merged: dict[tuple[str, ...], dict[str, Any]] = {}
        for error_class, handler, count, first, last, partition, offset in db.execute("SELECT * FROM groups"):
            values = {"error_class": error_class, "handler": handler}
            key = tuple(values[name] for name in chosen)
            done = resolved.get((error_class, handler), {})
            group = merged.get(key)
            if group is None:
                merged[key] = group = {
                    **{name: values[name] for name in chosen},
                    "count": 0,
                    "first_seen_ms": first,
                    "last_seen_ms": last,
                    "statuses": {"pending": 0, "replayed": 0, "discarded": 0},
                    "latest": (partition, offset),
                }
            group["count"] += count
            group["first_seen_ms"] = min(group["first_seen_ms"], first)
            if last > group["last_seen_ms"]:
                group["last_seen_ms"], group["latest"] = last, (partition, offset)
            statuses = group["statuses"]
            statuses["replayed"] += done.get("replayed", 0)
            statuses["discarded"] += done.get("discarded", 0)
            statuses["pending"] += count - done.get("replayed", 0) - done.get("discarded", 0)
        return list(merged.values())

    def stats(self, where: Any, resolutions: Mapping[str, Resolution], by: Iterable[str]) -> list[dict[str, Any]]:
        """Groups as `dlq.StatsRow` fields: count, first/last seen, statuses, latest id."""
        db = self._open()
        if where.empty and set(by) <= {"error_class", "handler"}:
            return self._grouped(db, resolutions, [name for name in ("error_class", "handler") if name in set(by)])
        self._statuses(db, resolutions)
        sql, args = self._where(where)
        columns = {"error_class": "l.error_class", "handler": "l.qualified_handler", "message": "l.message"}
        chosen = [name for name in columns if name in set(by)]
        keys = [columns[name] for name in chosen] or ["'all'"]
        group = f" GROUP BY {', '.join(keys)}"
        # One max() aggregate alone: SQLite then takes the bare columns from the row holding it.
        latest_sql = (
            f"SELECT {', '.join(keys)}, COUNT(*), MAX(l.seen_ms), l.partition, l.offset, "
            "SUM(s.status IS NULL), SUM(s.status = 'replayed'), SUM(s.status = 'discarded')"
        )
        firsts = {
            tuple(row[:-1]): int(row[-1])
            for row in db.execute(f"SELECT {', '.join(keys)}, MIN(l.first_ms)" + self._FROM + sql + group, args)
        }
        out = []
        for row in db.execute(latest_sql + self._FROM + sql + group, args).fetchall():
            key = tuple(row[: len(keys)])
            count, last, partition, offset, pending, replayed, discarded = row[len(keys) :]
            out.append(
                {
                    **dict(zip(chosen, key, strict=False)),
                    "count": int(count),
                    "first_seen_ms": firsts.get(key, int(last)),
                    "last_seen_ms": int(last),
                    "statuses": {
                        "pending": int(pending or 0),
                        "replayed": int(replayed or 0),
                        "discarded": int(discarded or 0),
                    },
                    "latest": (int(partition), int(offset)),
                }
            )
        return out
