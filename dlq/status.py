"""The durable status of each dead letter: records on the namespace's compacted control topic.

A dead letter with no status record is ``pending``. Replaying or discarding it appends a record
keyed ``dlq:{id}`` whose value is a JSON `Resolution` (JSON rather than msgpack so that
``kafka-console-consumer`` shows operators a readable audit trail). The topic is compacted, so
only the latest record per dead letter is kept for good; each record therefore carries the
earlier transitions in `Resolution.history`, and compaction never loses the audit trail.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from actors.inspection.audit import operator
from eventstore import EventLog, OutRecord, TopicError, Topics, UsageError, partition_for

log = logging.getLogger(__name__)

Status = Literal["pending", "replayed", "discarded"]
"""Where a dead letter stands: not acted on, sent back to its inbox, or resolved without replay."""

STATUSES: tuple[Status, ...] = ("pending", "replayed", "discarded")
KEY_PREFIX = "dlq:"
SCHEMA = 1


class Transition(BaseModel):
    """One earlier change of a dead letter's status (the audit trail)."""

    model_config = ConfigDict(frozen=True)

    status: Status
    """The status it was changed to."""
    at_ms: int
    """When, in ms since the epoch."""
    by: str
    """Who: ``user@host`` of the operator, or what the API caller passed."""
    reason: str | None = None
    """Why (required for a discard)."""
    replay_message_id: str | None = None
    """The inbox message id a replay sent."""


class Resolution(Transition):
    """The latest status record of one dead letter, with every earlier transition."""

    id: str
    """The dead letter's id (``{partition}-{offset}`` of the dead-letter topic)."""
    transform: str | None = None
    """``MODULE:FUNC`` that rewrote the payload of a replay, if any."""
    history: tuple[Transition, ...] = ()
    """Earlier transitions, oldest first (kept here because the topic is compacted)."""
    v: int = SCHEMA
    """Schema version of this record."""

    def encode(self) -> bytes:
        """The control-topic value: UTF-8 JSON."""
        return self.model_dump_json(exclude_none=True).encode()

    def then(
        self,
        status: Status,
        *,
        by: str,
        reason: str | None = None,
        replay_message_id: str | None = None,
        transform: str | None = None,
    ) -> Resolution:
        """The next resolution, keeping this one in the history."""
        return resolve(
            self.id, self, status, by=by, reason=reason, replay_message_id=replay_message_id, transform=transform
        )


def now_ms() -> int:
    """Wall-clock time in ms since the epoch."""
    return int(time.time() * 1000)


def resolve(
    dead_letter_id: str,
    previous: Resolution | None,
    status: Status,
    *,
    by: str | None = None,
    reason: str | None = None,
    replay_message_id: str | None = None,
    transform: str | None = None,
) -> Resolution:
    """The resolution that moves `dead_letter_id` from `previous` (None: pending) to `status`."""
    history: tuple[Transition, ...] = ()
    if previous is not None:
        earlier = Transition(
            status=previous.status,
            at_ms=previous.at_ms,
            by=previous.by,
            reason=previous.reason,
            replay_message_id=previous.replay_message_id,
        )
        history = (*previous.history, earlier)
    return Resolution(
        id=dead_letter_id,
        status=status,
        at_ms=now_ms(),
        by=by or operator(),
        reason=reason,
        replay_message_id=replay_message_id,
        transform=transform,
        history=history,
    )


def decode(key: bytes | None, value: bytes | None) -> tuple[str, Resolution | None] | None:
    """``(id, resolution)`` of a control record (resolution None: a tombstone).

    Returns None if the record is not a dead-letter status (other tools share the topic).
    """
    if key is None or not key.startswith(KEY_PREFIX.encode()):
        return None
    dead_letter_id = key[len(KEY_PREFIX) :].decode(errors="replace")
    if value is None:
        return dead_letter_id, None
    try:
        return dead_letter_id, Resolution.model_validate(json.loads(value))
    except (ValueError, ValidationError) as exc:
        log.warning("ignoring an unreadable status record for dead letter %s: %s", dead_letter_id, exc)
        return None


class StatusStore:
    """Reads and appends dead-letter status records on the control topic of one namespace."""

    def __init__(self, log: EventLog, topics: Topics, *, partitions: int) -> None:
        self._log = log
        self._topics = topics
        self._partitions = partitions
        self._created = False
        self._count = 1

    async def load(self) -> dict[str, Resolution]:
        """The latest resolution of every resolved dead letter (pending ones are absent)."""
        topic = self._topics.control
        try:
            count = await self._log.partition_count(topic)
        except TopicError:
            return {}  # nothing was ever resolved in this namespace
        out: dict[str, Resolution] = {}
        for partition in range(count):
            async for record in self._log.read(topic, partition):
                decoded = decode(record.key, record.value)
                if decoded is None:
                    continue
                dead_letter_id, resolution = decoded
                if resolution is None:
                    out.pop(dead_letter_id, None)
                else:
                    out[dead_letter_id] = resolution
        return out

    async def ensure_topic(self) -> None:
        """Create the control topic if it is missing and learn its partition count (once)."""
        if self._created:
            return
        topic = self._topics.control
        # Namespaces made before the control topic existed get it on the first write.
        specs = [s for s in self._topics.specs(self._partitions) if s.name == topic]
        await self._log.create_topics(specs)
        self._count = await self._log.partition_count(topic)
        self._created = True

    def records(self, resolutions: Iterable[Resolution]) -> list[OutRecord]:
        """The control-topic records of `resolutions`, for a caller's own transaction.

        Call `ensure_topic` first: the partition of each record depends on the topic's size.
        """
        if not self._created:
            raise UsageError("StatusStore.records needs `await ensure_topic()` first")
        out = []
        for resolution in resolutions:
            key = f"{KEY_PREFIX}{resolution.id}".encode()
            out.append(
                OutRecord(
                    self._topics.control,
                    partition_for(key, self._count),
                    key,
                    resolution.encode(),
                    (("tether.kind", b"dlq-status"),),
                )
            )
        return out

    async def write(self, resolutions: Iterable[Resolution]) -> None:
        """Append status records in one batch; durable on return."""
        batch = list(resolutions)
        if not batch:
            return
        await self.ensure_topic()
        await self._log.append(self.records(batch))
