"""The dead-letter model: a dead-letter record with its headers parsed and its payload decoded."""

from __future__ import annotations

import base64
from typing import Any

from pydantic import BaseModel, ConfigDict

from actors.inspection.times import iso
from actors.protocol import Message
from actors.protocol.deadletter import (
    DEAD_LETTER_HEADER_NAMES,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TIMESTAMP,
    DeadLetterHeaders,
    Producer,
)
from eventstore import DecodeError, Record

from .status import Resolution, Status

REPLAY_PREFIX = "dlq-replay:"
"""Message ids of replays are ``dlq-replay:{dead letter id}``: a second replay is a duplicate."""

_OWN_HEADERS = DEAD_LETTER_HEADER_NAMES


def dead_letter_id(partition: int, offset: int, topic: str | None = None) -> str:
    """The id of the dead letter at `offset` of partition `partition` of the dead-letter topic.

    ``{partition}-{offset}`` on the namespace's own dead-letter topic; ``{topic}:{partition}-{offset}``
    on another one (a DLT that Spring Kafka or Kafka Connect wrote): ``:`` is never part of a
    Kafka topic name.
    """
    return f"{partition}-{offset}" if topic is None else f"{topic}:{partition}-{offset}"


def parse_id(value: str, topic: str | None = None) -> tuple[int, int] | None:
    """``(partition, offset)`` of a dead-letter id of `topic` (None: the namespace's own), or None."""
    text = value.strip()
    prefix, colon, rest = text.rpartition(":")
    if colon:
        if topic is None or prefix != topic:
            return None
        text = rest
    elif topic is not None:
        return None
    partition, sep, offset = text.partition("-")
    if not sep or not partition.isdigit() or not offset.isdigit():
        return None
    return int(partition), int(offset)


def first_line(text: str, limit: int = 200) -> str:
    """The first non-empty line of `text`, at most `limit` characters (for grouping)."""
    for line in text.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def render_bytes(value: bytes | None) -> str | None:
    """Bytes as text when they are UTF-8, else ``base64:...``."""
    if value is None:
        return None
    try:
        return value.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


_NUMBERS = frozenset({ORIGINAL_PARTITION, ORIGINAL_OFFSET, ORIGINAL_TIMESTAMP})


def render_header(name: str, value: bytes | None) -> str | None:
    """A header value for people: Spring's binary numbers as decimal, the rest as `render_bytes`."""
    if name in _NUMBERS and value is not None and len(value) in (4, 8) and not value.isdigit():
        return str(int.from_bytes(value, "big", signed=True))
    return render_bytes(value)


class DeadLetter(BaseModel):
    """One dead letter: the original record's bytes and what went wrong with it.

    Build one with `DeadLetter.from_record`. Fields come from the Spring Kafka ``kafka_dlt-*``
    headers and Tether's ``tether.*`` headers (see `actors.runtime.deadletters`); a header that is
    missing leaves its field None, so records written by other tools parse too.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    """``{partition}-{offset}`` of the dead-letter topic: stable, and what the CLI takes."""
    topic: str
    """The dead-letter topic."""
    partition: int
    """Partition of the dead-letter topic."""
    offset: int
    """Offset in the dead-letter topic."""
    timestamp_ms: int
    """When the dead letter was written."""
    original_topic: str | None = None
    """The topic the message was consumed from (normally the namespace's inbox)."""
    original_partition: int | None = None
    """Its partition there."""
    original_offset: int | None = None
    """Its offset there."""
    original_timestamp_ms: int | None = None
    """Its timestamp there."""
    original_timestamp_type: str | None = None
    """``CreateTime`` or ``LogAppendTime`` (Spring's header; Tether writes ``CreateTime``)."""
    consumer_group: str | None = None
    """The consumer group that gave up on it."""
    key: bytes | None = None
    """The original record key, unchanged."""
    value: bytes | None = None
    """The original record value, unchanged."""
    headers: tuple[tuple[str, bytes], ...] = ()
    """Every header: the original record's, then the dead-letter ones."""
    message: Message | None = None
    """The value decoded as a Tether inbox message; None for a poison record."""
    decode_error: str | None = None
    """Why the value does not decode as a message (poison records)."""
    message_id: str | None = None
    """The id of the failed message."""
    park_awakeable: str | None = None
    """Set when the session waits behind this dead letter; replay or discard resolves it."""
    error_class: str = "unknown"
    """The exception's class name."""
    error_fqcn: str | None = None
    """The exception's fully qualified class name."""
    error_cause_fqcn: str | None = None
    """The fully qualified class name of its cause, if it had one."""
    error_message: str = ""
    """The exception's message."""
    stacktrace: str | None = None
    """The formatted traceback (its last 16,000 characters)."""
    attempts: int = 1
    """How many times the handler ran before it was given up on."""
    first_failure_ms: int | None = None
    """When the first attempt failed."""
    last_failure_ms: int | None = None
    """When the last attempt failed."""
    object_name: str | None = None
    """The session type the message was for."""
    object_key: str | None = None
    """The session key the message was for."""
    handler: str | None = None
    """The handler the message named."""
    category: str = "unknown"
    """Why it was dead-lettered: terminal, exhausted, poison or oversize; ``foreign`` for one that
    Spring Kafka or Kafka Connect wrote (its value is not a Tether message)."""
    producer: Producer = "tether"
    """Who wrote it: tether, spring or connect (from its headers), or unknown."""
    connect: dict[str, str] | None = None
    """Kafka Connect's context (connector, task, stage, class), when its headers are there."""
    status: Status = "pending"
    """pending (no status record), replayed or discarded."""
    resolution: Resolution | None = None
    """The latest status record with its audit trail; None while pending."""

    @classmethod
    def from_record(
        cls, record: Record, resolution: Resolution | None = None, *, foreign_topic: bool = False
    ) -> DeadLetter:
        """Parse a record of the dead-letter topic (and attach its status, if resolved).

        With `foreign_topic` (a topic other than the namespace's own) the id names the topic.
        """
        message: Message | None = None
        decode_error: str | None = None
        try:
            message = Message.decode(record.value)
        except DecodeError as exc:
            decode_error = str(exc)
        dl = DeadLetterHeaders.decode(record.header)
        object_name, object_key, handler = dl.object_name, dl.key, dl.handler
        if message is not None:
            object_name = object_name or message.object
            object_key = object_key or message.key
            handler = handler or message.handler
        elif object_name is None and record.key:
            # A poison record names no session in its headers; its record key still does when
            # a Tether client wrote it (``{object}/{key}``).
            text = record.key.decode(errors="replace")
            if "/" in text:
                object_name, object_key = text.split("/", 1)
        fqcn = dl.exception_fqcn
        error_class = dl.error_class or (fqcn.rsplit(".", 1)[-1] if fqcn else "unknown")
        if dl.category:
            category = dl.category
        elif dl.producer in ("spring", "connect") and message is None:
            category = "foreign"
        else:
            category = "poison" if message is None else "unknown"
        connect = {
            name: value
            for name, value in (
                ("connector", dl.connect_connector),
                ("task", dl.connect_task_id),
                ("stage", dl.connect_stage),
                ("class", dl.connect_executing_class),
            )
            if value is not None
        }
        return cls(
            id=dead_letter_id(record.partition, record.offset, record.topic if foreign_topic else None),
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp_ms,
            original_topic=dl.original_topic,
            original_partition=dl.original_partition,
            original_offset=dl.original_offset,
            original_timestamp_ms=dl.original_timestamp_ms,
            original_timestamp_type=dl.original_timestamp_type,
            consumer_group=dl.consumer_group,
            key=record.key,
            value=record.value,
            headers=tuple(record.headers),
            message=message,
            decode_error=decode_error,
            message_id=dl.message_id or (message.id if message is not None else None),
            park_awakeable=dl.park_awakeable,
            error_class=error_class,
            error_fqcn=fqcn,
            error_cause_fqcn=dl.exception_cause_fqcn,
            error_message=dl.exception_message or "",
            stacktrace=dl.stacktrace,
            attempts=dl.attempts or 1,
            first_failure_ms=dl.first_failure_ms,
            last_failure_ms=dl.last_failure_ms,
            object_name=object_name,
            object_key=object_key,
            handler=handler,
            category=category,
            producer=dl.producer,
            connect=connect or None,
            status=resolution.status if resolution is not None else "pending",
            resolution=resolution,
        )

    def with_resolution(self, resolution: Resolution | None) -> DeadLetter:
        """The same dead letter with another status."""
        return self.model_copy(
            update={
                "resolution": resolution,
                "status": resolution.status if resolution else "pending",
            }
        )

    # -- derived ---------------------------------------------------------------------------
    @property
    def session(self) -> str | None:
        """``object/key`` of the session, when known."""
        if self.object_name is None:
            return None
        return f"{self.object_name}/{self.object_key or ''}"

    @property
    def payload(self) -> Any:
        """The decoded handler input, or None for a poison record (or one whose input is in the blob store).

        A payload in the blob store is read by `DeadLetters.payload` (and given to replay transforms).
        """
        return self.message.payload if self.message is not None else None

    @property
    def payload_shown(self) -> Any:
        """The payload as operators see it: a payload in the blob store as ``{"blob": ref}``."""
        if self.message is not None and self.message.payload_blob is not None:
            return {"blob": self.message.payload_blob}
        return self.payload

    @property
    def poison(self) -> bool:
        """Whether the value is not a Tether message (it cannot be replayed as it is)."""
        return self.message is None

    @property
    def seen_ms(self) -> int:
        """When it last failed (the dead-letter record's time if the header is missing)."""
        return self.last_failure_ms or self.timestamp_ms

    @property
    def first_seen_ms(self) -> int:
        """When it first failed (the dead-letter record's time if the header is missing)."""
        return self.first_failure_ms or self.seen_ms

    @property
    def summary_line(self) -> str:
        """The first line of the error message (what stats group by)."""
        return first_line(self.error_message)

    @property
    def replay_of(self) -> str | None:
        """The dead letter this one is a failed replay of, if it is one."""
        if self.message_id and self.message_id.startswith(REPLAY_PREFIX):
            return self.message_id[len(REPLAY_PREFIX) :]
        return None

    @property
    def replay_message_id(self) -> str:
        """The inbox message id a replay of this dead letter sends (deterministic)."""
        return f"{REPLAY_PREFIX}{self.id}"

    @property
    def original_headers(self) -> tuple[tuple[str, bytes], ...]:
        """The headers the original record carried (the dead-letter ones left out)."""
        return tuple((k, v) for k, v in self.headers if k not in _OWN_HEADERS)

    def raw_value(self) -> Any:
        """The value as plain data: the msgpack it holds if it is msgpack, else the bytes."""
        if self.value is None:
            return None
        from eventstore import unpack

        try:
            return unpack(self.value)
        except DecodeError:
            return self.value

    # -- output ----------------------------------------------------------------------------
    def to_json(self, *, detail: bool = False) -> dict[str, Any]:
        """A JSON-ready view: a summary, or with `detail` the payload, headers and traceback."""
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "category": self.category,
            "error_class": self.error_class,
            "error_message": self.error_message if detail else self.summary_line,
            "object": self.object_name,
            "key": self.object_key,
            "handler": self.handler,
            "attempts": self.attempts,
            "first_failure": iso(self.first_seen_ms),
            "last_failure": iso(self.seen_ms),
            "message_id": self.message_id,
            "replay_of": self.replay_of,
            "producer": self.producer,
            "original": {
                "topic": self.original_topic,
                "partition": self.original_partition,
                "offset": self.original_offset,
                "timestamp": iso(self.original_timestamp_ms),
                "timestamp_type": self.original_timestamp_type,
            },
            "resolution": (
                self.resolution.model_dump(mode="json", exclude_none=True) if self.resolution is not None else None
            ),
        }
        if detail:
            out.update(
                dead_lettered_at=iso(self.timestamp_ms),
                error_fqcn=self.error_fqcn,
                error_cause_fqcn=self.error_cause_fqcn,
                consumer_group=self.consumer_group,
                connect=self.connect,
                payload=self.payload_shown,
                decode_error=self.decode_error,
                record_key=render_bytes(self.key),
                record_value=render_bytes(self.value) if self.poison else None,
                headers=[[k, render_header(k, v)] for k, v in self.headers],
                stacktrace=self.stacktrace,
            )
        return out
