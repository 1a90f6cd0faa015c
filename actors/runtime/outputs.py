"""The records a partition writes, and the size check every one of them passes before it is.

`PartitionOutputs` knows where each kind of record goes (the partition's events, the caller's
reply partition, a session's inbox partition, the dead-letter topic) and refuses a batch with a
record over `max_message_bytes` by naming what made it large.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eventstore.codec import pack
from eventstore.records import OutRecord, Record
from eventstore.topics import Topics, partition_for

from ..errors import RecordTooLargeError
from ..observability.metrics import METRICS
from ..protocol.inbox import Message
from ..protocol.replies import Reply
from ..settings import RuntimeSettings
from .deadletters import Failure, dead_letter
from .restore import inbox_record
from .sessions import Session

ENTRY_FRAMING = 1024
"""Bytes of a step record besides its result (entry keys, ids, name, timings), generously."""


class PartitionOutputs:
    """Builds the records of partition `partition` (of `partitions`) of a namespace."""

    def __init__(self, topics: Topics, partition: int, partitions: int, settings: RuntimeSettings, group: str) -> None:
        self.topics = topics
        self.partition = partition
        self._partitions = partitions
        self._settings = settings
        self._group = group

    def event(self, key: bytes, value: bytes) -> OutRecord:
        """A record of session `key` in the partition's events topic."""
        return OutRecord(self.topics.events, self.partition, key, value)

    def session_event(self, session: Session, value: bytes) -> OutRecord:
        """A record of `session` in the partition's events topic."""
        return self.event(session.key, value)

    def reply(self, message: Message, reply: dict[str, Any]) -> OutRecord:
        """The reply to `message` (which has a reply partition): ``{"ok"|"okb"|"err": ...}``."""
        assert message.reply_partition is not None
        value = Reply.of_outcome(message.id, message.session, reply).encode()
        return OutRecord(self.topics.replies, message.reply_partition, message.id.encode(), value)

    def send(self, message: Message) -> OutRecord:
        """A message a handler sends, in the inbox partition of its session."""
        key = message.session.encode()
        return OutRecord(self.topics.inbox, partition_for(key, self._partitions), key, message.encode())

    def inbox(self, message: Message, offset: int) -> Record:
        """The inbox record `message` came from at `offset`, rebuilt (dead letters keep its bytes)."""
        return inbox_record(self.topics, self.partition, message, offset)

    def dead_letter(self, record: Record, failure: Failure) -> OutRecord:
        """The dead letter of inbox record `record` (counted in the metrics)."""
        if METRICS.enabled:
            METRICS.dead_letter(failure.category)
        return dead_letter(
            record,
            failure,
            dlq_topic=self.topics.dlq,
            group=self._group,
            connect_headers=self._settings.dead_letter_connect_headers,
        )

    def step_limit(self, message: Message) -> int:
        """Bytes a journaled step result of `message` may take (the rest of its record is framing)."""
        return self._settings.max_message_bytes - len(message.session.encode()) - ENTRY_FRAMING

    def oversize(
        self, message: Message, records: list[OutRecord], *, events_record: Callable[[], str] | None = None
    ) -> RecordTooLargeError | None:
        """The error for the first of `records` over `max_message_bytes`, if one is.

        `events_record` says what the events-topic record carries that could be large (asked
        only once one is too large).
        """
        limit = self._settings.max_message_bytes
        for out in records:
            # The hot path: most records have no headers and are far below the limit.
            if not out.headers and len(out.value or b"") + len(out.key or b"") <= limit:
                continue
            size = out.size
            if size <= limit:
                continue
            if out.topic == self.topics.replies:
                what = f"the reply of {message.session}.{message.handler}"
            elif out.topic == self.topics.inbox:
                what = f"a message that {message.session}.{message.handler} sends to {out.key!r}"
            else:
                bulk = events_record() if events_record is not None else "the events"
                what = f"{bulk} of {message.session}.{message.handler}"
            return RecordTooLargeError(
                f"{what} would be a record of {size} bytes, over max_message_bytes={limit}; the "
                "invocation fails instead (nothing of it was written). Keep large data out of "
                "replies and events: store it elsewhere and pass a reference",
                size=size,
                limit=limit,
            )
        return None


def bulk_of(reply: Any, events: list[Any]) -> str:  # noqa: ANN401 - a reply as plain data
    """What makes a done entry large: its reply or its events (only asked once it is too large)."""
    if len(pack(reply)) >= len(pack(events)):
        return "the reply"
    return f"the {len(events)} events"
