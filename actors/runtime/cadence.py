"""When a partition processor writes its next checkpoint: by records, events and bytes.

A restore reads the events topic from the last checkpoint on, so what was written since then
is what the next restore reads. Counting records alone let a session whose invocations emit
many events each (1,000 invocations of 1,000 events: 1,000 records) go without a checkpoint
for ever; the cadence also counts the events those records carry and their bytes, and a
checkpoint is due when any of the three reaches its setting (`RuntimeSettings.checkpoint_every`,
`checkpoint_every_events`, `checkpoint_every_bytes`).
"""

from __future__ import annotations

from collections.abc import Sequence

from eventstore.records import OutRecord

from ..settings import RuntimeSettings

__all__ = ["CheckpointCadence"]


class CheckpointCadence:
    """What the events topic took since the last checkpoint, and whether the next one is due."""

    def __init__(self, settings: RuntimeSettings, events_topic: str) -> None:
        self._records_limit = settings.checkpoint_every
        self._events_limit = settings.checkpoint_every_events
        self._bytes_limit = settings.checkpoint_every_bytes
        self._topic = events_topic
        self.records = 0
        """Events-topic records since the last checkpoint."""
        self.events = 0
        """Events (emitted by handlers) those records carry."""
        self.bytes = 0
        """Bytes (key and value) of those records."""

    def bytes_of(self, records: Sequence[OutRecord]) -> int:
        """Bytes of the events-topic records among `records`."""
        topic = self._topic
        return sum(len(r.key or b"") + len(r.value or b"") for r in records if r.topic == topic)

    def due(self, records: Sequence[OutRecord], entries: int, events: int) -> bool:
        """Whether committing `records` should take a checkpoint with it.

        `entries` of them are events-topic records, carrying `events` events.
        """
        if self.records + entries >= self._records_limit or self.events + events >= self._events_limit:
            return True
        return self.bytes + self.bytes_of(records) >= self._bytes_limit

    def committed(self, records: Sequence[OutRecord], entries: int, events: int, *, checkpointed: bool) -> None:
        """`records` were committed, with a checkpoint (which starts the count again) or without."""
        if checkpointed:
            self.records = self.events = self.bytes = 0
            return
        self.records += entries
        self.events += events
        self.bytes += self.bytes_of(records)
