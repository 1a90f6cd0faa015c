"""Checkpoints and restore: how a partition processor rebuilds its sessions after a move.

A checkpoint is a snapshot (bytes, with the session's version in a header) of every session
that changed, plus one record under `CHECKPOINT_KEY` saying where in the events topic the
snapshots end, which invocations were in flight (their journals), which inbox offsets above
the committed one already finished, and every open wait. A restore reads the snapshots, then
the events from the checkpoint on, so its cost is bounded by the checkpoint cadence (records,
events and bytes: `cadence`). The entries it keeps for sessions to fold later are kept encoded,
and past `restore_buffer_bytes` the sessions holding the most are folded at once, so a
restore's memory is bounded whatever the shape of the events (`_TailBudget`).

`restore` only reads: it returns the partition's state (`RestoredPartition`) for a processor to
adopt, so it runs, and is tested, without one. `checkpoint_records` writes the state it is given.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from eventstore.log import EventLog
from eventstore.records import OutRecord, Record, TopicPartition
from eventstore.topics import Topics

from ..clock import now_ms
from ..definitions import VirtualObject
from ..protocol import entries
from ..protocol.checkpoint import CHECKPOINT_KEY, Checkpoint, Journal
from ..protocol.entries import Completion, Delayed, Done, Queued, Step, Suspend
from ..protocol.inbox import Message, invocation_id
from ..protocol.large_values import LargeValues, snapshot_in_hand, with_events
from ..protocol.snapshot import SNAPSHOT_VERSION_HEADER, snapshot_version
from ..settings import RuntimeSettings
from .offsets import NO_OFFSET, OffsetTracker
from .sessions import Session, session_of
from .waits import WaitTable

YIELD_EVERY = 1000
"""Records a restore handles between two yields to the event loop: a fetch hands it tens of
thousands at once, and a restore that never yields blocks the worker's heartbeats (and trips
the stall watchdog, which would blame the user's handlers)."""

log = logging.getLogger("actors.runtime.processor")  # one logger for the partition's lifecycle

__all__ = ["CHECKPOINT_KEY", "SNAPSHOT_VERSION_HEADER", "RestoredPartition", "checkpoint_records", "restore"]


def inbox_record(topics: Topics, partition: int, message: Message, offset: int) -> Record:
    """The inbox record a message came from, rebuilt (dead letters keep its bytes)."""
    return Record(topics.inbox, partition, offset, message.session.encode(), message.encode())


@dataclass
class RestoredPartition:
    """What a restore rebuilt of one partition; a processor adopts it whole."""

    sessions: dict[bytes, Session] = field(default_factory=dict)
    """Every session with a snapshot or an event (decoded lazily, on its first message)."""
    journals: dict[str, Journal] = field(default_factory=dict)
    """Open invocations' journals by invocation id."""
    legacy_journals: dict[str, Journal] = field(default_factory=dict)
    """Journals of a Tether 0.1 checkpoint, by message id."""
    waits: WaitTable = field(default_factory=WaitTable)
    """Open waits, with their timers scheduled (the timers start with the processor)."""
    offsets: OffsetTracker = field(default_factory=lambda: OffsetTracker(0))
    """The inbox offsets: from the committed one, with those above it that already finished."""
    resume: int = 0
    """The committed inbox offset: where to resume consuming."""
    checkpoint_start: int = 0
    """Events offset where the last checkpoint starts a restore."""
    records: int = 0
    """Records read (snapshots and events)."""
    events_records: int = 0
    """Events-topic records read (from the checkpoint's start on)."""
    events: int = 0
    """Events (emitted by handlers) those records carry."""
    events_bytes: int = 0
    """Bytes (key and value) of those records."""
    folded: int = 0
    """Sessions folded during the restore to keep within `restore_buffer_bytes`."""

    def session(self, key: bytes) -> Session:
        """The session of record key `key` (created if new)."""
        return session_of(self.sessions, key)


class _TailBudget:
    """Keeps the encoded entries a restore holds for its sessions under `restore_buffer_bytes`.

    Past the limit, the sessions holding the most are folded into their states (as their first
    message would) until half of it is left; a session type this worker does not serve cannot be
    folded here, and its entries stay (with one warning). A session holding a sixteenth of the
    limit is folded at once, so that no single fold blocks the event loop for long.
    """

    def __init__(
        self,
        out: RestoredPartition,
        partition: int,
        objects: Mapping[str, VirtualObject[Any]] | None,
        settings: RuntimeSettings | None,
    ) -> None:
        self._out = out
        self._partition = partition
        self._objects = objects
        self._limit = settings.restore_buffer_bytes if settings is not None else None
        self._retention_ms = settings.retention_ms if settings is not None else 0
        self.held = 0
        self._next = self._limit
        """Bytes held past which to fold again (above the limit while unfoldable entries fill it)."""
        self._warned = False

    async def added(self, session: Session, nbytes: int) -> None:
        self.held += nbytes
        if self._limit is None:
            return
        if session.tail_bytes > self._limit // 16 and self._fold_one(session):
            await asyncio.sleep(0)
        if self._next is not None and self.held > self._next:
            await self._fold()

    def dropped(self, nbytes: int) -> None:
        self.held -= nbytes

    def _fold_one(self, session: Session) -> bool:
        obj = (self._objects or {}).get(session.object_name)
        if obj is None:
            return False
        self.held -= session.tail_bytes
        session.load(obj, self._retention_ms)
        self._out.folded += 1
        return True

    async def _fold(self) -> None:
        assert self._limit is not None
        holding = sorted((s for s in self._out.sessions.values() if s.tail), key=lambda s: s.tail_bytes, reverse=True)
        unserved: set[str] = set()
        for n, session in enumerate(holding):
            if self.held <= self._limit // 2:
                break
            if not self._fold_one(session):
                unserved.add(session.object_name)
            elif n % 100 == 99:
                await asyncio.sleep(0)
        self._next = max(self._limit, self.held + self._limit // 2)  # no sorting again at every record
        if self.held > self._limit and not self._warned:
            self._warned = True
            log.warning(
                "partition %d: restore holds %d bytes of events of session types not served here (%s), over "
                "restore_buffer_bytes=%d; they cannot be folded by this worker and stay in memory",
                self._partition,
                self.held,
                ", ".join(sorted(unserved)),
                self._limit,
            )


async def restore(
    log_: EventLog,
    topics: Topics,
    partition: int,
    group: str,
    *,
    objects: Mapping[str, VirtualObject[Any]] | None = None,
    settings: RuntimeSettings | None = None,
    large: LargeValues | None = None,
) -> RestoredPartition:
    """Rebuild partition `partition` from its snapshots and events (read-only).

    Events and snapshot states in the blob store (`large`) are read back as the records are.

    With `objects` and `settings` (a processor's), the entries held for sessions to fold later
    stay under `settings.restore_buffer_bytes` (sessions are folded early past it); without,
    every session keeps its entries until its first message.

    Raises:
        BlobError: a referenced blob is missing or corrupt (the partition cannot be rebuilt).
    """
    started = time.perf_counter()
    out = RestoredPartition()
    budget = _TailBudget(out, partition, objects, settings)
    finished: set[int] = set()
    count = 0
    async for record in log_.read(topics.snapshots, partition):
        count += 1
        if count % YIELD_EVERY == 0:
            await asyncio.sleep(0)  # heartbeats, commits of other partitions, running sessions
        if record.key is None or record.value is None:
            continue
        if record.key != CHECKPOINT_KEY:
            # Kept as bytes until the session's first message: a restore decodes nothing
            # it does not need, and passivated sessions stay small.
            session = out.session(record.key)
            session.snapshot = await snapshot_in_hand(large, record.value, record.key)
            session.version = snapshot_version(record.value, record.header(SNAPSHOT_VERSION_HEADER))
            budget.dropped(session.tail_bytes)
            session.state, session.tail, session.tail_bytes = None, [], 0
            continue
        checkpoint = Checkpoint.decode(record.value)
        out.checkpoint_start = checkpoint.start
        finished.update(checkpoint.done_offsets)
        out.journals = checkpoint.journals
        if checkpoint.legacy_journals:  # journals Tether 0.1 wrote, not yet adopted
            out.legacy_journals = checkpoint.legacy_journals
        for wait in checkpoint.waits:
            _open_wait(out, topics, partition, wait)
        out.waits.completions = checkpoint.completions
    async for record in log_.read(topics.events, partition, out.checkpoint_start):
        count += 1
        if count % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        if record.key is None or record.value is None:
            continue
        out.events_records += 1
        out.events_bytes += len(record.key) + len(record.value)
        entry = entries.decode(record.value)
        if isinstance(entry, Step):
            inv_id = invocation_id(record.key.decode(errors="replace"), entry.message_id)
            out.journals.setdefault(inv_id, {})[entry.index] = entry
            continue
        if isinstance(entry, Completion):
            out.waits.completions[entry.awakeable] = entry
            continue
        finished.add(entry.inbox_offset)
        if not isinstance(entry, Done):
            _open_wait(out, topics, partition, entry)
            if isinstance(entry, Suspend):
                out.events += len(entry.events)
                session = out.session(record.key)
                if entry.version > session.version:
                    value = await _tail_value(large, entry, record.value, record.key)
                    session.add_tail(value, entry.version, record.offset)
                    await budget.added(session, len(value))
            continue
        out.events += len(entry.events)
        inv_id = invocation_id(record.key.decode(errors="replace"), entry.message_id)
        out.waits.forget(inv_id)
        out.journals.pop(inv_id, None)
        out.legacy_journals.pop(entry.message_id, None)
        waiting = out.sessions.get(record.key)
        if waiting is not None and waiting.queue:
            waiting.queue = deque(item for item in waiting.queue if item[1].id != entry.message_id)
        session = out.session(record.key)
        if entry.version <= session.version:
            continue  # covered by the snapshot
        value = await _tail_value(large, entry, record.value, record.key)
        session.add_tail(value, entry.version, record.offset)
        await budget.added(session, len(value))
    for session in out.sessions.values():
        if session.blocked_by is not None and session.blocked_by not in out.waits.suspended:
            session.blocked_by = None  # its invocation finished after it suspended
    out.waits.wake_resolved()  # resolved after it suspended: resume it
    committed = await log_.committed(group, TopicPartition(topics.inbox, partition))
    out.resume = committed or 0
    out.offsets = OffsetTracker(out.resume, finished)
    out.records = count
    log.info(
        "partition %d restored: %d records, %d sessions (%d folded early), %d open invocations in %.3f s "
        "(checkpoint at event offset %d); resuming inbox at %d",
        partition,
        count,
        len(out.sessions),
        out.folded,
        len(out.journals),
        time.perf_counter() - started,
        out.checkpoint_start,
        out.resume,
    )
    return out


async def _tail_value(large: LargeValues | None, entry: Done | Suspend, value: bytes, key: bytes) -> bytes:
    """The entry as a session's tail holds it: its record's bytes, or the entry re-encoded.

    When its events are in the blob store they are read back here: a session folds its tail
    synchronously, on its first message.
    """
    if entry.events_blob is None:
        return value
    return (await with_events(large, entry, key.decode(errors="replace"))).encode()


def _open_wait(out: RestoredPartition, topics: Topics, partition: int, entry: Suspend | Queued | Delayed) -> None:
    """Re-open a wait from its entry: a suspended invocation, a queued or a delayed message."""
    message = entry.message
    session = out.session(message.session.encode())
    inv_id = message.invocation_id
    if isinstance(entry, Suspend):
        # The table keeps the wait, not the events that committed with it (they are in the tail).
        out.waits.suspend(
            inv_id,
            Suspend(message, entry.inbox_offset, entry.wake_ms, entry.awakeable, [], entry.emitted, 0, entry.parked),
        )
        session.blocked_by = inv_id
    elif isinstance(entry, Queued):
        if all(m.id != message.id for _, m, _ in session.queue):
            session.queue.append((NO_OFFSET, message, inbox_record(topics, partition, message, entry.inbox_offset)))
    else:
        out.waits.delay(inv_id, entry)


def checkpoint_records(
    *,
    start: int,
    sessions: Iterable[Session],
    objects: dict[str, VirtualObject[Any]],
    settings: RuntimeSettings,
    topics: Topics,
    partition: int,
    journals: dict[str, Journal],
    legacy_journals: dict[str, Journal],
    offsets: OffsetTracker,
    waits: WaitTable,
    checkpoint_start: int,
    state_blobs: Mapping[bytes, tuple[int, str]] | None = None,
) -> tuple[list[OutRecord], int]:
    """Snapshots of every changed session plus the checkpoint they make valid.

    `state_blobs` holds, by session key, the version and blob reference of states already put
    in the blob store (`snapshot_blobs`): a session still at that version is snapshotted as
    the reference.

    Returns the records and the new checkpoint start (`checkpoint_start` unchanged when the
    checkpoint had to be skipped).

    Called before the batch is taken: everything already committed ends at `start` (the events
    end offset), and every event in the batch is already folded into the states snapshotted here.

    A snapshot over `max_message_bytes` is skipped with a warning (the events stay the truth):
    the checkpoint then starts no later than the session's first event that no snapshot
    covers, so a restore still reads them. A checkpoint record over the limit (too many large
    open journals) skips the whole checkpoint; the next one tries again.
    """
    limit = settings.max_message_bytes
    out: list[OutRecord] = []
    written: list[Session] = []
    all_sessions = list(sessions)
    for session in all_sessions:
        if session.dirty and session.tail:
            obj = objects.get(session.object_name)
            if obj is None:  # cannot fold it here: keep its events for the next restore
                start = min(start, int(session.tail_from))
                continue
            session.load(obj, settings.retention_ms)
        if session.dirty and session.state is not None:
            session.expire(now_ms(), settings.retention_ms)
            stored = state_blobs.get(session.key) if state_blobs else None
            snap = session.to_snapshot(stored[1] if stored is not None and stored[0] == session.version else None)
            snapshot = OutRecord(topics.snapshots, partition, session.key, snap.encode(), snap.headers())
            if snapshot.size > limit:
                if session.uncovered_from is None:
                    session.uncovered_from = checkpoint_start
                start = min(start, session.uncovered_from)
                log.warning(
                    "partition %d: snapshot of %s is %d bytes, over max_message_bytes=%d; skipped (its "
                    "events stay the truth: restores of this partition read from event offset %d on)",
                    partition,
                    session.key.decode(errors="replace"),
                    snapshot.size,
                    limit,
                    session.uncovered_from,
                )
                continue
            out.append(snapshot)
            written.append(session)
    value = Checkpoint(
        start,
        journals,
        legacy_journals,
        offsets.done_above_watermark(),
        open_waits(waits, all_sessions),
        waits.completions,
    ).encode()
    checkpoint = OutRecord(topics.snapshots, partition, CHECKPOINT_KEY, value)
    if checkpoint.size > limit:
        log.warning(
            "partition %d: checkpoint record is %d bytes (open journals: %d), over max_message_bytes=%d; "
            "checkpoint skipped",
            partition,
            checkpoint.size,
            len(journals),
            limit,
        )
        return [], checkpoint_start
    for session in written:
        session.dirty = False
        session.uncovered_from = None
    out.append(checkpoint)
    log.info("partition %d checkpoint: %d snapshots, events from %d", partition, len(out) - 1, start)
    return out, start


async def snapshot_blobs(sessions: Iterable[Session], large: LargeValues | None) -> dict[bytes, tuple[int, str]]:
    """The states of changed sessions over the threshold, put in the blob store: key -> (version, ref).

    Run before `checkpoint_records` (which must not wait: it snapshots a consistent moment); a
    session that changes meanwhile has a newer version then and is snapshotted whole.
    """
    if large is None or large.threshold is None:
        return {}
    out: dict[bytes, tuple[int, str]] = {}
    for session in list(sessions):
        if session.dirty and session.state is not None:
            version = session.version
            ref = await large.offload(session.state.model_dump(mode="json"))
            if ref is not None:
                out[session.key] = (version, ref)
    return out


def open_waits(waits: WaitTable, sessions: Iterable[Session]) -> list[Suspend | Queued | Delayed]:
    """Every open wait, as the entries that restore it (for checkpoints)."""
    out: list[Suspend | Queued | Delayed] = [*waits.suspended.values(), *waits.delayed.values()]
    for session in sessions:
        for _, message, record in session.queue:
            if session.blocked_by is not None and message.invocation_id != session.blocked_by:
                out.append(Queued(message, record.offset))
    return out
