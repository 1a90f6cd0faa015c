"""Invocations that wait, and what wakes them.

An invocation that sleeps or awaits an awakeable is suspended: its message moves into the
events log (a ``sus`` entry) and it leaves memory; the messages of its session that arrive
meanwhile queue behind it in the events log too (``q``). A timer, an awakeable's completion or
an operator's resolution of a parked dead letter puts it back at the head of its session's
queue, where it replays from its journal. Delayed sends (``dly``) ride on the same timers.
`Suspensions` does this against the partition's `WaitTable` and, to run what wakes, the
session queues (`Queues`).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from eventstore.records import OutRecord, Record

from ..clock import now_ms
from ..errors import TerminalError
from ..observability.scope import set_outcome
from ..protocol.awakeables import cancel_awakeable_id, cancelled_message, parse_awakeable_id
from ..protocol.entries import Completion, Queued, Suspend
from ..protocol.inbox import Message
from ..protocol.inbox import invocation_id as invocation_id_of
from .cancels import live_invocation
from .failures import Failures
from .invocation import Invocation
from .offsets import NO_OFFSET
from .partition import Partition
from .sessions import Session

log = logging.getLogger("actors.runtime.processor")  # one logger for the partition's lifecycle


class Queues(Protocol):
    """The session queues of a partition, as the wait side puts woken messages back in them."""

    def enqueue(self, session: Session, offset: int, message: Message, record: Record, *, front: bool = False) -> None:
        """Queue `message` in `session` (at its head if `front`) and run the queue if it may run."""
        ...

    def drain_soon(self, session: Session) -> None:
        """Run `session`'s queue if it is not running and not blocked."""
        ...


class Suspensions:
    """Suspends the invocations of one partition and wakes them."""

    def __init__(self, partition: Partition, failures: Failures, queues: Queues) -> None:
        self._p = partition
        self._failures = failures
        self._queues = queues

    def suspend(
        self,
        session: Session,
        offset: int,
        message: Message,
        wake_ms: int | None,
        awakeable: str | None,
        ctx: Invocation[Any],
        events: list[Any],
        events_blob: str | None = None,
    ) -> None:
        """Park the invocation: it leaves memory and its inbox offset can be committed.

        The events it emitted so far (`events`, as envelopes, or their blob's `events_blob`)
        commit now (so a waiting approval request is visible); when it resumes, its replay
        skips those `emit` calls.
        """
        inv_id = message.invocation_id
        original = self._p.state.waits.suspended.get(inv_id)
        inbox_offset = original.inbox_offset if original is not None else offset
        emitted = (original.emitted if original is not None else 0) + len(ctx.events)
        entry = Suspend(
            message, inbox_offset, wake_ms, awakeable, events, emitted, session.version + 1, events_blob=events_blob
        )
        record = self._p.outputs.session_event(session, entry.encode())
        oversize = self._p.outputs.oversize(message, [record])
        if oversize is not None:
            synthetic = self._p.outputs.inbox(message, inbox_offset)
            self._failures.fail(
                synthetic, message, oversize, "oversize", ctx.attempt, [], session=session, offset=offset
            )
            return
        if ctx.events:
            session.state = ctx.state
            session.dirty = True
        session.version += 1
        # The table keeps the wait; its events are in the session's state now.
        self._p.state.waits.suspended[inv_id] = Suspend(message, inbox_offset, wake_ms, awakeable, [], emitted)
        if wake_ms is not None:
            self._p.state.waits.timers.schedule(inv_id, wake_ms)
        session.blocked_by = inv_id
        if self._p.state.waits.completed(awakeable):
            self.wake(inv_id)  # resolved while it was still running
        log.info("%s.%s waits (timer %s, awakeable %s)", message.session, message.handler, wake_ms, awakeable)
        set_outcome("suspended")
        self._p.commits.finish(offset, [record], events_records=1, events=len(events))

    def queue_behind(self, session: Session, offset: int, message: Message, *, append: bool = True) -> None:
        """Move a message that waits behind a suspended invocation into the events log."""
        if append:
            session.queue.append((NO_OFFSET, message, self._p.outputs.inbox(message, offset)))
        entry = Queued(message, offset).encode()
        self._p.commits.finish(offset, [self._p.outputs.session_event(session, entry)], events_records=1)

    def resolve(self, session: Session, record: Record, message: Message) -> None:
        """Complete an awakeable (first resolution wins) and wake its invocation."""
        payload = message.payload if isinstance(message.payload, dict) else {}
        awk_id = str(payload.get("id", ""))
        try:
            object_name, key, waiting_id = parse_awakeable_id(awk_id)
        except ValueError as exc:
            self._failures.fail(record, message, TerminalError(str(exc)), "terminal", 1, [])
            return
        if f"{object_name}/{key}" != message.session:
            # An awakeable belongs to the session its id names; a resolution sent elsewhere
            # must not complete (or even learn of) another session's promise.
            error = TerminalError(f"awakeable {awk_id!r} does not belong to session {message.session!r}")
            self._failures.refuse(record, message, error, record.offset)
            return
        invocation_id = invocation_id_of(message.session, waiting_id)
        records: list[OutRecord] = []
        live = bool(payload.get("live")) and cancelled_message(awk_id) is not None
        if live:
            # Addressed to what runs on the key now (`cancels`): recorded as a cancellation of it.
            target = live_invocation(
                session, self._p.state.waits, cancelled_message(awk_id) or "", str(payload.get("handler") or "")
            )
            if target is None:
                if message.reply_partition is not None:
                    none = {"id": awk_id, "accepted": False, "invocation": None}
                    records.append(self._p.outputs.reply(message, {"ok": none}))
                self._p.commits.finish(record.offset, records)
                return
            awk_id = cancel_awakeable_id(object_name, key, target)
            waiting_id = parse_awakeable_id(awk_id)[2]
        outcome = {"err": payload["err"]} if "err" in payload else {"ok": payload.get("ok")}
        completion = Completion.from_outcome(awk_id, {**outcome, "by": payload.get("by")}, waiting_id)
        if self._p.state.waits.complete(completion):
            records.append(self._p.outputs.session_event(session, completion.encode()))
        if message.reply_partition is not None:
            answer = {"id": awk_id, "accepted": bool(records)}
            if live:
                answer["invocation"] = cancelled_message(awk_id)
            records.append(self._p.outputs.reply(message, {"ok": answer}))
        self._p.commits.finish(record.offset, records, events_records=1 if records else 0)
        cancelled = cancelled_message(awk_id)
        if cancelled is not None:
            # A cancellation wakes its invocation whatever it waits on: it ends at that wait.
            invocation_id = invocation_id_of(message.session, cancelled)
        waiting = self._p.state.waits.suspended.get(invocation_id)
        if waiting is not None and (waiting.awakeable == awk_id or (cancelled is not None and not waiting.parked)):
            if message.trace_parent:
                self._p.state.waits.woken_by[invocation_id] = message.trace_parent
            self.wake(invocation_id)

    def wake(self, invocation_id: str) -> None:
        """A timer fired or an awakeable completed: run the invocation (or delayed message).

        `invocation_id` is the (session-scoped) id that waits and timers are keyed by.
        """
        delayed = self._p.state.waits.take_delayed(invocation_id)
        if delayed is not None:
            message = delayed.message
            session = self._p.state.session(message.session.encode())
            synthetic = self._p.outputs.inbox(message, delayed.inbox_offset)
            if session.blocked_by is not None:
                session.queue.append((NO_OFFSET, message, synthetic))
            else:
                self._queues.enqueue(session, NO_OFFSET, message, synthetic)
            return
        waiting = self._p.state.waits.suspended.get(invocation_id)
        if waiting is None:
            return
        session = self._p.state.session(waiting.message.session.encode())
        if session.blocked_by != invocation_id:
            return
        if waiting.parked:
            self._unpark(session, invocation_id, waiting)
            return
        self._p.state.waits.resume(invocation_id)
        session.blocked_by = None
        synthetic = self._p.outputs.inbox(waiting.message, waiting.inbox_offset)
        self._queues.enqueue(session, NO_OFFSET, waiting.message, synthetic, front=True)

    def _unpark(self, session: Session, invocation_id: str, waiting: Suspend) -> None:
        """Its dead letter was resolved: the session takes its next message.

        A replay rides in the resolution itself, so it runs before the messages that queued
        behind it.
        """
        self._p.state.waits.forget(invocation_id)
        session.blocked_by = None
        completion = self._p.state.waits.completion(waiting.awakeable or "")
        resolution = completion.result if completion is not None and completion.error is None else None
        if isinstance(resolution, dict) and isinstance(resolution.get("replay"), dict):
            replay = Message.from_wire(resolution["replay"])
            if session.recorded(replay.id, now_ms(), self._p.settings.retention_ms) is None:
                session.queue.appendleft((NO_OFFSET, replay, self._p.outputs.inbox(replay, waiting.inbox_offset)))
        if session.queue:
            self._queues.drain_soon(session)
