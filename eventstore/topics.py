"""Topic names of a namespace, their configuration, and the partitioner shared by all of them."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from .errors import UsageError


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create: name, partition count and Kafka topic configuration."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)

    @property
    def compacted(self) -> bool:
        """Whether the log keeps only the latest record per key (eventually)."""
        return "compact" in self.config.get("cleanup.policy", "")


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one namespace.

    Inbox, events and snapshots share the partition count and the partitioner, so partition *p*
    of each belongs to one partition processor.
    """

    namespace: str = "tether"

    def __post_init__(self) -> None:
        # Kafka accepts only ASCII letters, digits, '.', '_' and '-' in topic names ('.' is
        # our separator), at most 249 characters: room for the longest suffix, ".snapshots".
        ok = 0 < len(self.namespace) <= 200 and all(c.isascii() and (c.isalnum() or c in "-_") for c in self.namespace)
        if not ok:
            raise UsageError(
                f"namespace {self.namespace!r} must be 1 to 200 characters, using only ASCII "
                "letters, digits, '-' and '_'"
            )

    @property
    def inbox(self) -> str:
        """Messages to sessions, keyed by session."""
        return f"{self.namespace}.inbox"

    @property
    def events(self) -> str:
        """Domain events and journal entries, keyed by session; kept forever."""
        return f"{self.namespace}.events"

    @property
    def snapshots(self) -> str:
        """Latest state per session and the event offset it covers; compacted."""
        return f"{self.namespace}.snapshots"

    @property
    def replies(self) -> str:
        """Results for callers, keyed by correlation id; short retention."""
        return f"{self.namespace}.replies"

    @property
    def streams(self) -> str:
        """What handlers stream while they run (`ctx.stream`) and each stream's end; short retention."""
        return f"{self.namespace}.streams"

    @property
    def dlq(self) -> str:
        """Dead letters: original bytes plus failure headers; kept forever."""
        return f"{self.namespace}.dlq"

    @property
    def control(self) -> str:
        """Operator records (dead-letter status, audit); compacted by key."""
        return f"{self.namespace}.control"

    def group(self, role: str = "workers") -> str:
        """Consumer group id of a role within the namespace."""
        return f"{self.namespace}-{role}"

    def specs(self, partitions: int) -> list[TopicSpec]:
        """Every topic of the namespace with its configuration."""
        if partitions < 1:
            raise UsageError(f"partitions must be >= 1, got {partitions}")
        week = str(7 * 24 * 3600 * 1000)
        return [
            TopicSpec(self.inbox, partitions, {"retention.ms": week}),
            TopicSpec(self.events, partitions, {"retention.ms": "-1"}),
            TopicSpec(
                self.snapshots,
                partitions,
                # Kafka never compacts the active segment: small, short-lived segments let the
                # cleaner drop superseded snapshots soon, so a restore reads about one per key.
                {
                    "cleanup.policy": "compact",
                    "min.cleanable.dirty.ratio": "0.1",
                    "segment.bytes": str(16 * 1024 * 1024),
                    "segment.ms": str(60 * 1000),
                },
            ),
            TopicSpec(self.replies, partitions, {"retention.ms": str(3600 * 1000)}),
            TopicSpec(self.streams, partitions, {"retention.ms": str(24 * 3600 * 1000)}),
            TopicSpec(self.dlq, 1, {"retention.ms": "-1"}),
            TopicSpec(self.control, 1, {"cleanup.policy": "compact"}),
        ]


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of a key: stable across processes, languages and restarts (CRC-32)."""
    return zlib.crc32(key) % partitions
