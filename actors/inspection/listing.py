"""Every session of a namespace, read from the log: what `tether sessions list` shows.

A session's status comes from its events-topic entries, folded in log order (no worker is
asked, so a listing works while every worker is down):

- ``parked``: behind its dead letter (resolving or replaying the letter unparks it);
- ``suspended``: an invocation waits for an awakeable (a human approval, a webhook);
- ``waiting``: an invocation waits on a timer (``ctx.sleep``, a retry backoff) or a delayed
  message is due later;
- ``running``: an invocation has journaled steps and no ``done`` entry yet;
- ``failed``: its last invocation failed for good (dead-lettered);
- ``idle``: everything it was sent has finished.

Sessions known only from a snapshot (their events trimmed by retention) are ``idle``.
Reading is one pass per partition over the events and snapshots topics; the memory held is one
small summary per session.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from eventstore import Topics

from ..protocol import entries
from ..protocol.checkpoint import CHECKPOINT_KEY
from ..protocol.entries import Done, OpenWaits, Step, Suspend, Unknown, Wait
from ..settings import Settings
from .reading import partitions_of, read_only_log
from .views import not_found, session_records

Status = Literal["parked", "suspended", "waiting", "running", "failed", "idle"]
STATUSES: tuple[Status, ...] = ("parked", "suspended", "waiting", "running", "failed", "idle")

__all__ = ["STATUSES", "SessionSummary", "Status", "list_sessions", "session_summary"]


@dataclass
class SessionSummary:
    """One session as a listing shows it."""

    object: str
    key: str
    partition: int
    status: Status = "idle"
    last_activity_ms: int | None = None
    """Timestamp of the session's latest record (event entry or snapshot)."""
    wait: Wait | None = None
    """The wait that decides the status (parked, suspended, waiting), if any."""
    attempts: int | None = None
    """Attempts of the running invocation, or of the last finished one."""
    last_error: dict[str, Any] | None = None
    """The error of the last invocation, if it failed."""
    invocations: int = 0
    """Finished invocations seen in the log."""
    _waits: OpenWaits = field(default_factory=OpenWaits, repr=False)
    _running: dict[str, int] = field(default_factory=dict, repr=False)
    """Message id -> attempts of the latest step, for invocations without a ``done`` entry."""

    def see(self, entry: entries.Entry | Unknown, timestamp_ms: int) -> None:
        """Fold the session's next events-topic entry."""
        self.last_activity_ms = max(self.last_activity_ms or 0, timestamp_ms) or None
        self._waits.see(entry)
        if isinstance(entry, Step):
            self._running[entry.message_id] = entry.attempts
        elif isinstance(entry, Done):
            self._running.pop(entry.message_id, None)
            self.invocations += 1
            self.attempts = entry.attempts
            self.last_error = entry.error
        elif isinstance(entry, Suspend):
            self._running.pop(entry.message_id, None)

    def settle(self) -> None:
        """Decide the status from what was folded."""
        open_waits = [w for w in self._waits.open if not self._waits.completed(w)]
        for status in ("parked", "suspended", "waiting"):
            found = next((w for w in open_waits if _wait_status(w) == status), None)
            if found is not None:
                self.status, self.wait = status, found
                return
        if self._running:
            self.status, self.attempts = "running", max(self._running.values())
        elif self.last_error is not None:
            self.status = "failed"

    @property
    def open_invocations(self) -> list[tuple[str, str]]:
        """``(message id, what)`` of everything not finished, the running or waiting one first.

        Then the messages queued or delayed behind it. A parked session has none (its dead
        letter is resolved with `tether dlq`).
        """
        active = [(mid, "running") for mid in self._running]
        return active + [(w.invocation, w.label) for w in self._waits.open if not w.parked]

    def to_json(self) -> dict[str, Any]:
        """The summary as plain data (``--json``)."""
        return {
            "object": self.object,
            "key": self.key,
            "partition": self.partition,
            "status": self.status,
            "last_activity_ms": self.last_activity_ms,
            "wait": self.wait.to_json() if self.wait is not None else None,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "invocations": self.invocations,
        }


def _wait_status(wait: Wait) -> Status | None:
    if wait.parked:
        return "parked"
    if wait.kind == entries.SUSPENDED and wait.awakeable is not None:
        return "suspended"
    if wait.until_ms is not None:
        return "waiting"
    return None


def _split(key: bytes) -> tuple[str, str] | None:
    text = key.decode(errors="replace")
    object_name, sep, session = text.partition("/")
    return (object_name, session) if sep else None


async def session_summary(settings: Settings, object_name: str, key: str) -> SessionSummary:
    """One session's summary (see `list_sessions`), read from its partition only.

    Raises:
        NamespaceNotFoundError: the namespace has no topics.
        SessionNotFoundError: the log holds no record of the session.
    """
    partition, snapshot, found, others = await session_records(settings, object_name, key)
    if snapshot is None and not found:
        raise not_found(settings, object_name, key, partition, others)
    summary = SessionSummary(object_name, key, partition)
    if snapshot is not None:
        summary.last_activity_ms = snapshot.timestamp_ms or None
    for _, entry, timestamp_ms in found:
        summary.see(entry, timestamp_ms)
    summary.settle()
    return summary


async def list_sessions(
    settings: Settings,
    *,
    object_name: str | None = None,
    statuses: Iterable[Status] = (),
    since_ms: int | None = None,
) -> list[SessionSummary]:
    """The namespace's sessions, most recently active first, filtered as asked.

    Args:
        settings: where the namespace's log is.
        object_name: only sessions of this type.
        statuses: only sessions in one of these statuses (all when empty).
        since_ms: only sessions active at or after this time (epoch milliseconds).

    Raises:
        NamespaceNotFoundError: the namespace has no topics (nothing is created).
    """
    wanted = set(statuses)
    topics = Topics(settings.namespace)
    found: dict[bytes, SessionSummary] = {}
    async with read_only_log(settings) as log:
        partitions = await partitions_of(log, topics, topics.events)
        await partitions_of(log, topics, topics.snapshots)
        for partition in range(partitions):
            for topic in (topics.snapshots, topics.events):
                async for record in log.read(topic, partition):
                    if record.key is None or record.key == CHECKPOINT_KEY:
                        continue
                    summary = found.get(record.key)
                    if summary is None:
                        names = _split(record.key)
                        if names is None or (object_name is not None and names[0] != object_name):
                            continue
                        summary = found[record.key] = SessionSummary(names[0], names[1], partition)
                    if topic == topics.events and record.value is not None:
                        summary.see(entries.read(record.value), record.timestamp_ms)
                    else:
                        summary.last_activity_ms = max(summary.last_activity_ms or 0, record.timestamp_ms) or None
    listed = []
    for summary in found.values():
        summary.settle()
        if wanted and summary.status not in wanted:
            continue
        if since_ms is not None and (summary.last_activity_ms or 0) < since_ms:
            continue
        listed.append(summary)
    listed.sort(key=lambda s: (-(s.last_activity_ms or 0), s.object, s.key))
    return listed
