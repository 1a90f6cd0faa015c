"""Reading dead letters: filters, lookups by id, and stats grouped by what went wrong."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from actors.errors import InvalidTimeError
from actors.inspection import times
from actors.inspection.times import iso
from eventstore import EventLog, Record, TopicError, Topics

from .errors import InvalidFilterError, NoDeadLetterTopicError, UnknownDeadLetterError
from .index import LetterIndex, qualified_handler
from .records import DeadLetter, dead_letter_id, parse_id
from .status import Resolution, Status, StatusStore

GroupField = Literal["error_class", "handler", "message"]
GROUP_FIELDS: tuple[GroupField, ...] = ("error_class", "handler", "message")
"""What `stats` can group by."""
DEFAULT_GROUP_BY: tuple[GroupField, ...] = ("error_class", "handler")
"""What `stats` groups by unless told otherwise (a message embeds offsets and keys: a group
per letter)."""
CLOCK_SKEW_MS = 300_000
"""A time filter reads from this much before its time: record times may be a little out of
order (producers' clocks), and the filter itself is applied exactly afterwards."""

# Offsets this close together are read as one range rather than one read each.
_RUN_GAP = 256

SETTLE_TIMEOUT = 5.0
"""Seconds a listing waits for transactions open on the topic when it starts (a worker's
commit that returned a moment ago but whose markers are not written yet) before it reads what
is committed (see `EventLog.settled_end_offset`)."""


def parse_time(text: str, *, now: float | None = None) -> int:
    """`actors.inspection.times.parse_time`, its mistake reported as a filter error.

    Raises:
        InvalidFilterError: `text` is no time.
    """
    try:
        return times.parse_time(text, now=now)
    except InvalidTimeError as exc:
        raise InvalidFilterError(str(exc)) from None


class Filter(BaseModel):
    """Which dead letters to select; empty fields select everything.

    Fields with several values match any of them; different fields must all match.
    """

    model_config = ConfigDict(frozen=True)

    object_name: str | None = None
    """Session type."""
    object_key: str | None = None
    """Session key (with `object_name`)."""
    handlers: tuple[str, ...] = ()
    """Handler names, bare (``ask``) or qualified (``agent.ask``)."""
    error_classes: tuple[str, ...] = ()
    """Exception class names, short (``TerminalError``) or fully qualified."""
    categories: tuple[str, ...] = ()
    """terminal, exhausted, poison, oversize."""
    statuses: tuple[Status, ...] = ()
    """pending, replayed, discarded."""
    since_ms: int | None = None
    """Last failure at or after this time (ms since the epoch)."""
    until_ms: int | None = None
    """Last failure before this time (ms since the epoch)."""

    @classmethod
    def session(cls, session: str, **fields: object) -> Filter:
        """A filter on ``TYPE`` or ``TYPE/KEY`` (plus any other `fields`)."""
        object_name, _, key = session.partition("/")
        return cls.model_validate({**fields, "object_name": object_name or None, "object_key": key or None})

    @property
    def empty(self) -> bool:
        """Whether this filter selects every dead letter."""
        return self == Filter()

    def matches(self, letter: DeadLetter) -> bool:
        """Whether `letter` is selected."""
        if self.object_name is not None and letter.object_name != self.object_name:
            return False
        if self.object_key is not None and letter.object_key != self.object_key:
            return False
        if self.handlers and not (
            letter.handler in self.handlers or f"{letter.object_name}.{letter.handler}" in self.handlers
        ):
            return False
        if self.error_classes and not (
            letter.error_class in self.error_classes or letter.error_fqcn in self.error_classes
        ):
            return False
        if self.categories and letter.category not in self.categories:
            return False
        if self.statuses and letter.status not in self.statuses:
            return False
        if self.since_ms is not None and letter.seen_ms < self.since_ms:
            return False
        if self.until_ms is not None and letter.seen_ms >= self.until_ms:
            return False
        return True

    def describe(self) -> str:
        """The filter as an operator typed it, for messages."""
        parts = []
        if self.object_name is not None:
            session = self.object_name + (f"/{self.object_key}" if self.object_key is not None else "")
            parts.append(f"session={session}")
        for name, values in (
            ("handler", self.handlers),
            ("error", self.error_classes),
            ("category", self.categories),
            ("status", self.statuses),
        ):
            if values:
                parts.append(f"{name}={'|'.join(values)}")
        if self.since_ms is not None:
            parts.append(f"since={iso(self.since_ms)}")
        if self.until_ms is not None:
            parts.append(f"until={iso(self.until_ms)}")
        return "the filter " + (", ".join(parts) if parts else "(none)")


class StatsRow(BaseModel):
    """One group of dead letters with the same error class / handler / first message line."""

    model_config = ConfigDict(frozen=True)

    error_class: str | None = None
    """The group's exception class (None when not grouped by it)."""
    handler: str | None = None
    """The group's ``type.handler`` (None when not grouped by it)."""
    message: str | None = None
    """The first line of the group's error message (None when not grouped by it)."""
    count: int
    """Dead letters in the group."""
    first_seen_ms: int
    """Earliest first failure in the group."""
    last_seen_ms: int
    """Latest last failure in the group."""
    statuses: dict[str, int]
    """How many of them are pending, replayed, discarded."""
    example_id: str
    """The latest dead letter of the group (for `show`)."""

    def to_json(self) -> dict[str, object]:
        """A JSON-ready view."""
        out: dict[str, object] = {}
        for name in GROUP_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update(
            count=self.count,
            first_seen=iso(self.first_seen_ms),
            last_seen=iso(self.last_seen_ms),
            statuses=self.statuses,
            example_id=self.example_id,
        )
        return out


def group_stats(letters: Iterable[DeadLetter], by: Sequence[GroupField] = DEFAULT_GROUP_BY) -> list[StatsRow]:
    """Count `letters` grouped by `by`; the biggest groups first, then the most recent."""
    for field in by:
        if field not in GROUP_FIELDS:
            raise InvalidFilterError(f"cannot group by {field!r}; choose from {', '.join(GROUP_FIELDS)}")
    groups: dict[tuple[str | None, ...], list[DeadLetter]] = {}
    for letter in letters:
        values = {
            "error_class": letter.error_class,
            "handler": qualified_handler(letter),
            "message": letter.summary_line,
        }
        key = tuple(values[f] if f in by else None for f in GROUP_FIELDS)
        groups.setdefault(key, []).append(letter)
    rows = []
    for key, members in groups.items():
        statuses = {s: 0 for s in ("pending", "replayed", "discarded")}
        for m in members:
            statuses[m.status] = statuses.get(m.status, 0) + 1
        latest = max(members, key=lambda m: (m.seen_ms, m.offset))
        rows.append(
            StatsRow(
                error_class=key[0],
                handler=key[1],
                message=key[2],
                count=len(members),
                first_seen_ms=min(m.first_seen_ms for m in members),
                last_seen_ms=latest.seen_ms,
                statuses=statuses,
                example_id=latest.id,
            )
        )
    rows.sort(key=lambda r: (-r.count, -r.last_seen_ms))
    return rows


class Inspector:
    """Reads the dead letters of one namespace (or another dead-letter topic), with their status.

    `all` scans the topic; `since` reads only the offsets a time filter needs (the log's
    offsets-for-times); `page` and `stats` go through a local `LetterIndex` when one is given.
    """

    def __init__(
        self,
        log: EventLog,
        topics: Topics,
        statuses: StatusStore,
        *,
        topic: str | None = None,
        index_path: Path | None = None,
    ) -> None:
        self._log = log
        self._topics = topics
        self._statuses = statuses
        self.topic = topic or topics.dlq
        """The dead-letter topic read."""
        self._foreign = self.topic != topics.dlq
        self.index = (
            LetterIndex(index_path, log, self.topic, foreign_topic=self._foreign) if index_path is not None else None
        )

    def close(self) -> None:
        """Close the index file, if one is open."""
        if self.index is not None:
            self.index.close()

    async def _partitions(self) -> int:
        try:
            return await self._log.partition_count(self.topic)
        except TopicError:
            raise NoDeadLetterTopicError(self.topic, namespace=self._topics.namespace) from None

    def _letter(self, record: Record, resolutions: Mapping[str, Resolution]) -> DeadLetter:
        letter_id = dead_letter_id(record.partition, record.offset, self.topic if self._foreign else None)
        return DeadLetter.from_record(record, resolutions.get(letter_id), foreign_topic=self._foreign)

    async def all(self) -> list[DeadLetter]:
        """Every dead letter of the topic in log order, with its status."""
        return await self._read_from(None)

    async def since(self, since_ms: int) -> list[DeadLetter]:
        """The dead letters written at or after `since_ms` (less `CLOCK_SKEW_MS`), in log order.

        Only that offset range of each partition is read (the log's offsets-for-times).
        """
        return await self._read_from(since_ms - CLOCK_SKEW_MS)

    async def _settle(self, count: int) -> None:
        """Wait until what was written to the topic before now is visible (or `SETTLE_TIMEOUT`).

        A worker's transaction (a dead letter, the caller's error reply, the inbox offset) is
        visible on each partition once the broker has written its markers there, a moment
        after the commit returned: a listing right after a failure must still show it.
        """
        await asyncio.gather(*(self._log.settled_end_offset(self.topic, p, SETTLE_TIMEOUT) for p in range(count)))

    async def _read_from(self, from_ms: int | None) -> list[DeadLetter]:
        count = await self._partitions()
        await self._settle(count)
        resolutions = await self._statuses.load()
        out: list[DeadLetter] = []
        for partition in range(count):
            start = 0 if from_ms is None else await self._log.offset_for_time(self.topic, partition, from_ms)
            async for record in self._log.read(self.topic, partition, start):
                out.append(self._letter(record, resolutions))
        return out

    async def at(self, positions: Sequence[tuple[int, int]]) -> list[DeadLetter]:
        """The dead letters at these ``(partition, offset)`` positions, in the order given.

        Runs of nearby offsets are read as one range. Positions where no record is are left out.
        """
        resolutions = await self._statuses.load()
        found: dict[tuple[int, int], DeadLetter] = {}
        by_partition: dict[int, list[int]] = {}
        for partition, offset in positions:
            by_partition.setdefault(partition, []).append(offset)
        for partition, offsets in by_partition.items():
            offsets = sorted(set(offsets))
            wanted = set(offsets)
            runs: list[list[int]] = [[offsets[0], offsets[0]]]
            for offset in offsets[1:]:
                if offset - runs[-1][1] <= _RUN_GAP:
                    runs[-1][1] = offset
                else:
                    runs.append([offset, offset])
            end = await self._log.end_offset(self.topic, partition)
            for first, last in runs:
                # Never read past the end: a reader waits there for records that may not come.
                async for record in self._log.read(self.topic, partition, first, min(last + 1, end)):
                    if record.offset in wanted:
                        found[(partition, record.offset)] = self._letter(record, resolutions)
        return [found[p] for p in positions if p in found]

    async def page(self, where: Filter, limit: int) -> tuple[list[DeadLetter], int]:
        """The latest `limit` dead letters `where` selects (0: all) in log order, and their count.

        Through the index, caught up first.
        """
        assert self.index is not None
        count = await self._partitions()
        await self._settle(count)
        await self.index.sync(count)
        positions, total = self.index.locate(where, await self._statuses.load(), limit)
        return await self.at(positions), total

    async def indexed_stats(self, where: Filter, by: Sequence[GroupField]) -> list[StatsRow]:
        """`group_stats` of what `where` selects, computed by the index (caught up first)."""
        assert self.index is not None
        for field in by:
            if field not in GROUP_FIELDS:
                raise InvalidFilterError(f"cannot group by {field!r}; choose from {', '.join(GROUP_FIELDS)}")
        count = await self._partitions()
        await self._settle(count)
        await self.index.sync(count)
        rows = []
        for group in self.index.stats(where, await self._statuses.load(), by):
            partition, offset = group.pop("latest")
            rows.append(
                StatsRow(
                    **group,
                    example_id=dead_letter_id(partition, offset, self.topic if self._foreign else None),
                )
            )
        rows.sort(key=lambda r: (-r.count, -r.last_seen_ms))
        return rows

    async def get_many(self, ids: Sequence[str]) -> list[DeadLetter]:
        """The dead letters with these ids, in the order given (duplicates dropped).

        Raises:
            UnknownDeadLetterError: one of the ids names no dead letter.
        """
        wanted = list(dict.fromkeys(i.strip() for i in ids))
        topic = self.topic if self._foreign else None
        positions = []
        for letter_id in wanted:
            parsed = parse_id(letter_id, topic)
            if parsed is None:
                raise UnknownDeadLetterError(letter_id, namespace=self._topics.namespace)
            positions.append(parsed)
        count = await self._partitions()
        by_id = {letter.id: letter for letter in await self.at([p for p in positions if p[0] < count])}
        out = []
        for letter_id, (partition, offset) in zip(wanted, positions, strict=True):
            letter = by_id.get(dead_letter_id(partition, offset, topic))
            if letter is None:
                raise UnknownDeadLetterError(letter_id, namespace=self._topics.namespace)
            out.append(letter)
        return out
