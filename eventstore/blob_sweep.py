"""Deleting blobs no record refers to any more (``tether blobs gc``).

A blob is live while any record of the namespace's topics (events, snapshots and checkpoints,
inbox, replies, streams, dead letters, control) names it: references are found in the raw
record bytes (``sha256:`` and 64 hex digits, whatever the record's format), so a record this
code cannot decode still keeps its blobs, and a false match only keeps a blob longer. A blob
is swept only when no record names it *and* it was last written more than `older_than` seconds
ago: a writer puts a blob before it commits the record that names it (and a put of content
already stored renews the blob), so the age bound covers the records not committed yet when
the scan ran. Choose it far above any write's time to commit (a day is the default of the CLI).

Retention decides the rest: once Kafka drops the records that named a blob (the inbox after a
week, replies after an hour, streams after a day), the blob is no longer live; the events
topic keeps its records forever, and with them the blobs of step results and replies.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from .blobs import SweepableBlobStore
from .errors import TopicError, UsageError
from .log import EventLog
from .topics import Topics

__all__ = ["SweepReport", "live_references", "sweep_blobs"]

_REFERENCE = re.compile(rb"sha256:[0-9a-f]{64}")


async def live_references(log: EventLog, topics: Topics) -> set[str]:
    """Every blob reference a committed record of the namespace's topics holds (value or header).

    Raises:
        UsageError: a topic of the namespace does not exist in `log` (a wrong namespace, data
            directory or broker would make every blob look unreferenced).
    """
    live: set[str] = set()
    for spec in topics.specs(1):
        try:
            partitions = await log.partition_count(spec.name)
        except TopicError as exc:
            raise UsageError(
                f"the namespace {topics.namespace!r} has no topic {spec.name!r} in this log ({exc}): a wrong "
                "namespace, data directory or broker? Nothing was deleted"
            ) from exc
        for partition in range(partitions):
            async for record in log.read(spec.name, partition):
                for data in (record.value, *(v for _, v in record.headers)):
                    if data and b"sha256:" in data:
                        live.update(m.decode() for m in _REFERENCE.findall(data))
    return live


@dataclass
class SweepReport:
    """What a sweep found and did."""

    stored: int = 0
    """Blobs in the store."""
    live: int = 0
    """Of them, named by a record."""
    young: int = 0
    """Of the others, written within the age bound (kept)."""
    swept: list[str] = field(default_factory=list)
    """Deleted (or, in a dry run, to delete)."""
    swept_bytes: int = 0
    dry_run: bool = False

    def to_json(self) -> dict[str, object]:
        """A JSON-ready view."""
        return {
            "stored": self.stored,
            "live": self.live,
            "young": self.young,
            "swept": len(self.swept),
            "swept_bytes": self.swept_bytes,
            "dry_run": self.dry_run,
            "refs": self.swept,
        }


async def sweep_blobs(
    log: EventLog, topics: Topics, store: SweepableBlobStore, *, older_than: float, dry_run: bool = False
) -> SweepReport:
    """Delete the blobs of `store` that no record of `topics` names and older than `older_than` s.

    The store is listed before the topics are scanned, so a blob written during the scan is not
    considered at all; each one is checked against the age bound again right before deletion.
    """
    stored = await store.blobs()
    live = await live_references(log, topics)
    report = SweepReport(stored=len(stored), dry_run=dry_run)
    cutoff = time.time() - older_than
    sizes = {b.ref: b.size for b in stored}
    for blob in stored:
        if blob.ref in live:
            report.live += 1
        elif blob.written_s > cutoff:
            report.young += 1
        else:
            report.swept.append(blob.ref)
            report.swept_bytes += blob.size
    if not dry_run:
        renewed = {b.ref for b in await store.blobs() if b.written_s > cutoff}
        for ref in list(report.swept):
            if ref in renewed:  # written again since the listing: a record may name it now
                report.swept.remove(ref)
                report.young += 1
                report.swept_bytes -= sizes[ref]
                continue
            await store.delete(ref)
    return report
