"""Checkpoints and restore: how a partition processor rebuilds its sessions after a move.

A checkpoint is a snapshot (bytes, with the session's version in a header) of every session
that changed, plus one record under `CHECKPOINT_KEY` saying where in the events topic the
snapshots end, which invocations were in flight (their journals), which inbox offsets above
the committed one already finished, and every open wait. A restore reads the snapshots, then
the events from the checkpoint on, so its cost is bounded by `checkpoint_every`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from eventstore.codec import pack, unpack
from eventstore.records import OutRecord, TopicPartition

from .messages import Message, invocation_id
from .offsets import NO_OFFSET, OffsetTracker
from .sessions import Session
from .suspensions import forget_wait, synthetic
from .waits import Suspension, now_ms

if TYPE_CHECKING:
    from .processor import PartitionProcessor

log = logging.getLogger("actors.processor")  # one logger for the partition's lifecycle

CHECKPOINT_KEY = b"__checkpoint__"
"""Key of the record in the snapshots topic that makes the snapshots before it a checkpoint."""
SNAPSHOT_VERSION_HEADER = "tether.version"
"""Header of a snapshot record: the session version it covers (read without decoding it)."""


async def restore(p: PartitionProcessor) -> int:
    """Rebuild sessions from snapshots and events; return the inbox offset to resume at."""
    started = time.perf_counter()
    checkpoint = 0
    count = 0
    finished: set[int] = set()
    async for record in p.log.read(p.topics.snapshots, p.partition):
        count += 1
        if record.key is None or record.value is None:
            continue
        if record.key != CHECKPOINT_KEY:
            # Kept as bytes until the session's first message: a restore decodes nothing
            # it does not need, and passivated sessions stay small.
            session = p._session(record.key)
            version = record.header(SNAPSHOT_VERSION_HEADER)
            session.snapshot = record.value
            session.version = int(version) if version is not None else int(unpack(record.value)["sv"])
            session.state, session.tail = None, []
            continue
        value = unpack(record.value)
        if record.key == CHECKPOINT_KEY:
            checkpoint = int(value["x"])
            finished.update(int(o) for o in value.get("d", ()))
            if "js" in value:  # journals by invocation id (session-scoped)
                p.journals = {str(i): {int(n): e for n, e in entries} for i, entries in value["js"]}
            else:  # written by Tether 0.1: by message id; each is adopted by its invocation's next run
                p.journals = {}
                p.legacy_journals = {str(i): {int(n): e for n, e in entries} for i, entries in value.get("j", ())}
            for entry in value.get("w", ()):
                restore_wait(p, str(entry["key"]).encode(), entry)
            p.completions = {str(k): v for k, v in value.get("c", ())}
    async for record in p.log.read(p.topics.events, p.partition, checkpoint):
        count += 1
        if record.key is None or record.value is None:
            continue
        entry = unpack(record.value)
        message_id = str(entry["i"])
        inv_id = invocation_id(record.key.decode(errors="replace"), message_id)
        if entry["k"] == "step":
            p.journals.setdefault(inv_id, {})[int(entry["n"])] = entry
            continue
        if entry["k"] == "awk":
            p.completions[str(entry["id"])] = entry
            continue
        finished.add(int(entry["o"]))
        if entry["k"] in ("sus", "q", "dly"):
            restore_wait(p, record.key, entry)
            if entry["k"] != "sus":
                continue
            session = p._session(record.key)
            if int(entry["sv"]) > session.version:
                add_tail(session, entry, record.offset)
            continue
        forget_wait(p, inv_id)
        p.journals.pop(inv_id, None)
        p.legacy_journals.pop(message_id, None)
        waiting = p.sessions.get(record.key)
        if waiting is not None and waiting.queue:
            waiting.queue = deque(item for item in waiting.queue if item[1].id != message_id)
        session = p._session(record.key)
        if int(entry["sv"]) <= session.version:
            continue  # covered by the snapshot
        add_tail(session, entry, record.offset)
    for session in p.sessions.values():
        if session.blocked_by is not None and session.blocked_by not in p.suspended:
            session.blocked_by = None  # its invocation finished after it suspended
    for parked_id, parked in p.suspended.items():
        if parked.awakeable is not None and parked.awakeable in p.completions:
            p.timers.schedule(parked_id, 0)  # resolved after it suspended: resume it
    committed = await p.log.committed(p.group, TopicPartition(p.topics.inbox, p.partition))
    resume = committed or 0
    p.offsets = OffsetTracker(resume, finished)
    p._committed = resume
    p.checkpoint_start = checkpoint
    p.stats["restored_records"] = count
    log.info(
        "partition %d restored: %d records, %d sessions, %d open invocations in %.3f s "
        "(checkpoint at event offset %d); resuming inbox at %d",
        p.partition,
        count,
        len(p.sessions),
        len(p.journals),
        time.perf_counter() - started,
        checkpoint,
        resume,
    )
    return resume


def add_tail(session: Session, entry: dict[str, Any], offset: int) -> None:
    """Keep an event entry the session's snapshot misses, to fold when the session loads.

    The session is dirty until a checkpoint covers the entry, loaded or not, or the next
    checkpoint would move the restore start past it.
    """
    session.tail.append(entry)
    session.version = int(entry["sv"])
    session.dirty = True
    session.tail_from = min(session.tail_from, offset)


async def checkpoint_records(p: PartitionProcessor) -> list[OutRecord]:
    """Snapshots of every changed session plus the checkpoint they make valid.

    Called before the batch is taken: everything already committed ends at `start`, and
    every event in the batch is already folded into the states snapshotted here.

    A snapshot over `max_message_bytes` is skipped with a warning (the events stay the truth):
    the checkpoint then starts no later than the session's first event that no snapshot
    covers, so a restore still reads them. A checkpoint record over the limit (too many large
    open journals) skips the whole checkpoint; the next one tries again.
    """
    start = await p.log.end_offset(p.topics.events, p.partition)
    limit = p.settings.max_message_bytes
    out: list[OutRecord] = []
    written: list[Session] = []
    for session in p.sessions.values():
        if session.dirty and session.state is None and session.tail:
            obj = p.objects.get(session.object_name)
            if obj is None:  # cannot fold it here: keep its events for the next restore
                start = min(start, int(session.tail_from))
                continue
            session.load(obj, p.settings.retention_ms)
        if session.dirty and session.state is not None:
            session.expire(now_ms(), p.settings.retention_ms)
            snapshot = OutRecord(
                p.topics.snapshots,
                p.partition,
                session.key,
                pack(session.snapshot_value()),
                ((SNAPSHOT_VERSION_HEADER, str(session.version).encode()),),
            )
            if snapshot.size > limit:
                if session.uncovered_from is None:
                    session.uncovered_from = p.checkpoint_start
                start = min(start, session.uncovered_from)
                log.warning(
                    "partition %d: snapshot of %s is %d bytes, over max_message_bytes=%d; skipped (its "
                    "events stay the truth: restores of this partition read from event offset %d on)",
                    p.partition,
                    session.key.decode(errors="replace"),
                    snapshot.size,
                    limit,
                    session.uncovered_from,
                )
                continue
            out.append(snapshot)
            written.append(session)
    journals = [[i, [[n, e] for n, e in entries.items()]] for i, entries in p.journals.items()]
    legacy = [[i, [[n, e] for n, e in entries.items()]] for i, entries in p.legacy_journals.items()]
    checkpoint = OutRecord(
        p.topics.snapshots,
        p.partition,
        CHECKPOINT_KEY,
        pack(
            {
                "x": start,
                "js": journals,
                "j": legacy,
                "d": p.offsets.done_above_watermark(),
                "w": wait_entries(p),
                "c": [[k, v] for k, v in p.completions.items()],
            }
        ),
    )
    if checkpoint.size > limit:
        log.warning(
            "partition %d: checkpoint record is %d bytes (open journals: %d), over max_message_bytes=%d; "
            "checkpoint skipped",
            p.partition,
            checkpoint.size,
            len(p.journals),
            limit,
        )
        return []
    for session in written:
        session.dirty = False
        session.uncovered_from = None
    out.append(checkpoint)
    p.checkpoint_start = start
    log.info("partition %d checkpoint: %d snapshots, events from %d", p.partition, len(out) - 1, start)
    return out


def restore_wait(p: PartitionProcessor, key: bytes, entry: dict[str, Any]) -> None:
    """Re-open a wait from its entry: a suspended invocation, a queued or a delayed message."""
    message = Message.model_validate(entry["m"])
    session = p._session(key)
    kind = entry["k"]
    inv_id = message.invocation_id
    if kind == "sus":
        p.suspended[inv_id] = Suspension(
            message,
            int(entry["o"]),
            entry.get("t"),
            entry.get("a"),
            int(entry.get("ne", 0)),
            parked=bool(entry.get("pk")),
        )
        session.blocked_by = inv_id
        if entry.get("t") is not None:
            p.timers.schedule(inv_id, int(entry["t"]))
        if entry.get("a") is not None and entry["a"] in p.completions:
            p.timers.schedule(inv_id, 0)
    elif kind == "q":
        if all(m.id != message.id for _, m, _ in session.queue):
            session.queue.append((NO_OFFSET, message, synthetic(p, message, int(entry["o"]))))
    elif kind == "dly":
        p.delayed[inv_id] = (message, int(entry["o"]))
        p.timers.schedule(inv_id, int(entry["t"]))


def wait_entries(p: PartitionProcessor) -> list[dict[str, Any]]:
    """Every open wait as the entries that restore it (for checkpoints)."""
    out: list[dict[str, Any]] = []
    for s in p.suspended.values():
        out.append(
            {
                "k": "sus",
                "m": s.message.model_dump(by_alias=True),
                "o": s.offset,
                "t": s.wake_ms,
                "a": s.awakeable,
                "ne": s.emitted,
                "pk": s.parked,
                "key": s.message.session,
            }
        )
    for message, offset in p.delayed.values():
        out.append(
            {
                "k": "dly",
                "m": message.model_dump(by_alias=True),
                "o": offset,
                "t": message.not_before_ms,
                "key": message.session,
            }
        )
    for session in p.sessions.values():
        for _, message, record in session.queue:
            if session.blocked_by is not None and message.invocation_id != session.blocked_by:
                out.append(
                    {"k": "q", "m": message.model_dump(by_alias=True), "o": record.offset, "key": message.session}
                )
    return out
