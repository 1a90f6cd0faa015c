"""Records as the log stores them: bytes, offsets and headers, nothing about sessions."""

from __future__ import annotations

from dataclasses import dataclass, field

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class TopicPartition:
    """One partition of one topic."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Record:
    """A record read from the log. Offsets are per partition and only grow."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int = 0

    def header(self, name: str) -> bytes | None:
        """Return the last header called `name`, or None."""
        for k, v in reversed(self.headers):
            if k == name:
                return v
        return None


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to append. The partition is always explicit: Tether partitions by itself."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default=())
    timestamp_ms: int | None = None
    """The record's time (Kafka's CreateTime); None: when it is written. `EventLog.append` honours
    it (tools that import or generate history); the runtime's transactional writes leave it None."""

    @property
    def size(self) -> int:
        """Bytes of key, value and headers: what a record size limit is checked against."""
        return (
            len(self.key or b"")
            + len(self.value or b"")
            + sum(len(name) + len(value or b"") for name, value in self.headers)
        )
