"""Snapshots: the latest state per key in a compacted topic, written inside transactions."""

from __future__ import annotations

from .log import EventLog
from .records import OutRecord, Record


class SnapshotStore:
    """Reads and builds snapshot records of one compacted topic.

    Snapshots are written in the same transaction as the events they cover, so a snapshot never
    claims an event that did not commit. Kafka compacts lazily: a reader may see several records
    for one key, and `load` keeps the last, which is what compaction converges to.
    """

    def __init__(self, log: EventLog, topic: str) -> None:
        self.log = log
        self.topic = topic

    def record(self, partition: int, key: bytes, value: bytes) -> OutRecord:
        """A snapshot record to add to a transaction."""
        return OutRecord(self.topic, partition, key, value)

    async def load(self, partition: int) -> dict[bytes, Record]:
        """The latest snapshot record per key of one partition."""
        latest: dict[bytes, Record] = {}
        async for record in self.log.read(self.topic, partition):
            if record.key is None:
                continue
            if record.value is None:  # a tombstone deletes the key
                latest.pop(record.key, None)
            else:
                latest[record.key] = record
        return latest
