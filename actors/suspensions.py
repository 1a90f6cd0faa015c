"""Durable waits inside a partition: invocations that suspend, and what wakes them.

An invocation that sleeps or awaits an awakeable is suspended: its message moves into the
events log (a ``sus`` entry) and it leaves memory; the messages of its session that arrive
meanwhile queue behind it in the events log too (``q``). A timer, an awakeable's completion or
an operator's resolution of a parked dead letter puts it back at the head of its session's
queue, where it replays from its journal. Delayed sends (``dly``) ride on the same timers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from eventstore.records import OutRecord, Record

from .errors import TerminalError
from .invocation import Invocation
from .messages import Message
from .messages import invocation_id as invocation_id_of
from .offsets import NO_OFFSET
from .sessions import Session
from .waits import Suspension, completion_entry, now_ms, parse_awakeable_id, queued_entry, suspend_entry

if TYPE_CHECKING:
    from .processor import PartitionProcessor

log = logging.getLogger("actors.processor")


def events_record(p: PartitionProcessor, session: Session, value: bytes) -> OutRecord:
    """A record of `session` in the partition's events topic."""
    return OutRecord(p.topics.events, p.partition, session.key, value)


def suspend(
    p: PartitionProcessor,
    session: Session,
    offset: int,
    message: Message,
    wake_ms: int | None,
    awakeable: str | None,
    ctx: Invocation[Any],
) -> None:
    """Park the invocation: it leaves memory and its inbox offset can be committed.

    The events it emitted so far commit now (so a waiting approval request is visible);
    when it resumes, its replay skips those `emit` calls.
    """
    inv_id = message.invocation_id
    original = p.suspended.get(inv_id)
    inbox_offset = original.offset if original is not None else offset
    emitted = (original.emitted if original is not None else 0) + len(ctx.events)
    events = [p.objects[message.object].codec.encode_envelope(e) for e in ctx.events]
    value = suspend_entry(message, inbox_offset, wake_ms, awakeable, events, emitted, session.version + 1)
    record = events_record(p, session, value)
    oversize = p._oversize(message, [record])
    if oversize is not None:
        synthetic_record = synthetic(p, message, inbox_offset)
        p._fail_message(
            synthetic_record, message, oversize, "oversize", ctx.attempt, [], session=session, offset=offset
        )
        return
    if ctx.events:
        session.state = ctx.state
        session.dirty = True
    session.version += 1
    p.suspended[inv_id] = Suspension(message, inbox_offset, wake_ms, awakeable, emitted)
    session.blocked_by = inv_id
    if wake_ms is not None:
        p.timers.schedule(inv_id, wake_ms)
    if awakeable is not None and awakeable in p.completions:
        timer_due(p, inv_id)  # resolved while it was still running
    log.info("%s.%s waits (timer %s, awakeable %s)", message.session, message.handler, wake_ms, awakeable)
    p._finish(offset, [record], events_records=1)


def adopt(p: PartitionProcessor, session: Session, offset: int, message: Message, *, append: bool = True) -> None:
    """Move a message that waits behind a suspended invocation into the events log."""
    if append:
        session.queue.append((NO_OFFSET, message, synthetic(p, message, offset)))
    p._finish(offset, [events_record(p, session, queued_entry(message, offset))], events_records=1)


def synthetic(p: PartitionProcessor, message: Message, offset: int) -> Record:
    """The inbox record a message came from, rebuilt (dead letters keep its bytes)."""
    return Record(p.topics.inbox, p.partition, offset, message.session.encode(), message.encode())


def resolve(p: PartitionProcessor, session: Session, record: Record, message: Message) -> None:
    """Complete an awakeable (first resolution wins) and wake its invocation."""
    payload = message.payload if isinstance(message.payload, dict) else {}
    awk_id = str(payload.get("id", ""))
    try:
        object_name, key, waiting_id = parse_awakeable_id(awk_id)
    except ValueError as exc:
        p._fail_message(record, message, TerminalError(str(exc)), "terminal", 1, [])
        return
    if f"{object_name}/{key}" != message.session:
        # An awakeable belongs to the session its id names; a resolution sent elsewhere
        # must not complete (or even learn of) another session's promise.
        error = TerminalError(f"awakeable {awk_id!r} does not belong to session {message.session!r}")
        p._refuse(record, message, error, record.offset)
        return
    invocation_id = invocation_id_of(message.session, waiting_id)
    records: list[OutRecord] = []
    if awk_id not in p.completions:
        reply = {"err": payload["err"]} if "err" in payload else {"ok": payload.get("ok")}
        p.completions[awk_id] = reply
        records.append(events_record(p, session, completion_entry(waiting_id, awk_id, reply)))
    if message.reply_partition is not None:
        records.append(p._reply(message, {"ok": {"id": awk_id, "accepted": bool(records)}}))
    p._finish(record.offset, records, events_records=1 if records else 0)
    waiting = p.suspended.get(invocation_id)
    if waiting is not None and waiting.awakeable == awk_id:
        timer_due(p, invocation_id)


def timer_due(p: PartitionProcessor, message_id: str) -> None:
    """A timer fired or an awakeable completed: run the invocation (or delayed message).

    `message_id` is the invocation id (session-scoped) that waits and timers are keyed by.
    """
    delayed = p.delayed.pop(message_id, None)
    if delayed is not None:
        message, offset = delayed
        session = p._session(message.session.encode())
        if session.blocked_by is not None:
            session.queue.append((NO_OFFSET, message, synthetic(p, message, offset)))
        else:
            p._enqueue(session, NO_OFFSET, message, synthetic(p, message, offset))
        return
    waiting = p.suspended.get(message_id)
    if waiting is None:
        return
    session = p._session(waiting.message.session.encode())
    if session.blocked_by != message_id:
        return
    if waiting.parked:
        # Its dead letter was resolved: the session takes its next message. A replay rides
        # in the resolution itself, so it runs before the messages that queued behind it.
        forget_wait(p, message_id)
        session.blocked_by = None
        resolution = p.completions.get(waiting.awakeable or "", {}).get("ok")
        if isinstance(resolution, dict) and isinstance(resolution.get("replay"), dict):
            replay = Message.model_validate(resolution["replay"])
            if session.recorded(replay.id, now_ms(), p.settings.retention_ms) is None:
                session.queue.appendleft((NO_OFFSET, replay, synthetic(p, replay, waiting.offset)))
        if session.queue and not session.running:
            session.running = True
            p._spawn(p._drain(session))
        return
    p.timers.cancel(message_id)
    session.blocked_by = None
    p._enqueue(session, NO_OFFSET, waiting.message, synthetic(p, waiting.message, waiting.offset), front=True)


def forget_wait(p: PartitionProcessor, message_id: str) -> None:
    """Drop the wait of an invocation (or delayed message) that finished."""
    p.suspended.pop(message_id, None)
    p.delayed.pop(message_id, None)
    p.timers.cancel(message_id)
