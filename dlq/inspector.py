"""Reading dead letters: filters, lookups by id, and stats grouped by what went wrong."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from actors.errors import InvalidTimeError
from actors.inspection import times
from actors.inspection.times import iso
from eventstore import EventLog, TopicError, Topics

from .errors import InvalidFilterError, NoDeadLetterTopicError, UnknownDeadLetterError
from .records import DeadLetter, parse_id
from .status import Status, StatusStore

GroupField = Literal["error_class", "handler", "message"]
GROUP_FIELDS: tuple[GroupField, ...] = ("error_class", "handler", "message")
"""What `stats` groups by unless told otherwise."""

# Reading a few ids one by one is cheaper than a scan; beyond this many, scan once.
_LOOKUP_LIMIT = 8


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


def _qualified_handler(letter: DeadLetter) -> str:
    if letter.handler is None:
        return "(none)" if letter.object_name is None else f"{letter.object_name}.(none)"
    return f"{letter.object_name}.{letter.handler}" if letter.object_name else letter.handler


def group_stats(letters: Iterable[DeadLetter], by: Sequence[GroupField] = GROUP_FIELDS) -> list[StatsRow]:
    """Count `letters` grouped by `by`; the biggest groups first, then the most recent."""
    for field in by:
        if field not in GROUP_FIELDS:
            raise InvalidFilterError(f"cannot group by {field!r}; choose from {', '.join(GROUP_FIELDS)}")
    groups: dict[tuple[str | None, ...], list[DeadLetter]] = {}
    for letter in letters:
        values = {
            "error_class": letter.error_class,
            "handler": _qualified_handler(letter),
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
    """Reads the dead letters of one namespace, with their status."""

    def __init__(self, log: EventLog, topics: Topics, statuses: StatusStore) -> None:
        self._log = log
        self._topics = topics
        self._statuses = statuses

    async def _partitions(self) -> int:
        try:
            return await self._log.partition_count(self._topics.dlq)
        except TopicError:
            raise NoDeadLetterTopicError(self._topics.dlq, namespace=self._topics.namespace) from None

    async def all(self) -> list[DeadLetter]:
        """Every dead letter of the namespace in log order, with its status."""
        count = await self._partitions()
        resolutions = await self._statuses.load()
        out: list[DeadLetter] = []
        for partition in range(count):
            async for record in self._log.read(self._topics.dlq, partition):
                letter_id = f"{partition}-{record.offset}"
                out.append(DeadLetter.from_record(record, resolutions.get(letter_id)))
        return out

    async def get_many(self, ids: Sequence[str]) -> list[DeadLetter]:
        """The dead letters with these ids, in the order given (duplicates dropped).

        Raises:
            UnknownDeadLetterError: one of the ids names no dead letter.
        """
        wanted = list(dict.fromkeys(i.strip() for i in ids))
        for letter_id in wanted:
            if parse_id(letter_id) is None:
                raise UnknownDeadLetterError(letter_id, namespace=self._topics.namespace)
        if len(wanted) > _LOOKUP_LIMIT:
            by_id = {letter.id: letter for letter in await self.all()}
        else:
            count = await self._partitions()
            resolutions = await self._statuses.load()
            by_id = {}
            for letter_id in wanted:
                parsed = parse_id(letter_id)
                assert parsed is not None
                partition, offset = parsed
                if partition >= count:
                    continue
                # Never read past the end: a reader waits there for records that may not come.
                end = min(offset + 1, await self._log.end_offset(self._topics.dlq, partition))
                async for record in self._log.read(self._topics.dlq, partition, offset, end):
                    if record.offset == offset:
                        by_id[letter_id] = DeadLetter.from_record(record, resolutions.get(letter_id))
        out = []
        for letter_id in wanted:
            letter = by_id.get(letter_id)
            if letter is None:
                raise UnknownDeadLetterError(letter_id, namespace=self._topics.namespace)
            out.append(letter)
        return out
