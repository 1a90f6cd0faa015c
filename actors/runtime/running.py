"""Running one message's handler: an exclusive invocation, or a shared (read-only) one.

An exclusive invocation runs under its handler's retry policy and deadline, replaying its
journal; it ends in a done entry (events, reply, sends and the end of its stream, in one
transaction), a suspension, or a failure. A shared handler reads the session's state while an
exclusive one may be busy, and writes nothing but its reply.
"""

from __future__ import annotations

import logging
from typing import Any

import pydantic

from eventstore.errors import BlobError
from eventstore.records import OutRecord, Record

from ..clock import clock, now_ms
from ..errors import DeadlineExceededError, StateMutationError, TerminalError
from ..observability.scope import InvocationScope
from ..protocol.entries import Done
from ..protocol.inbox import Message
from ..protocol.large_values import by_reference, events_by_reference, payload_of
from .failures import Failures, invalid_payload
from .invocation import Invocation, InvocationHost
from .outputs import bulk_of
from .partition import Partition
from .routing import handler_for, scope_for
from .sessions import Session
from .suspensions import Suspensions
from .waits import Suspended

log = logging.getLogger("actors.runtime.processor")  # one logger for the partition's lifecycle


class Runner:
    """Runs the handlers of one partition's messages against its sessions and journals."""

    def __init__(
        self, partition: Partition, host: InvocationHost, failures: Failures, suspensions: Suspensions
    ) -> None:
        self._p = partition
        self._host = host
        self._namespace = partition.outputs.topics.namespace
        self._failures = failures
        self._suspensions = suspensions
        self.invocations = 0
        """Exclusive invocations that finished with a reply."""

    def _scope(self, message: Message) -> InvocationScope:
        woken_by = self._p.state.waits.woken_by.pop(message.invocation_id, None)
        return scope_for(self._namespace, self._p.objects, message, woken_by=woken_by)

    # -- shared handlers -------------------------------------------------------------------
    async def shared(self, session: Session, record: Record, message: Message, handler: Any) -> None:  # noqa: ANN401
        """Run a shared handler (or the state read, `handler` None) of `message`."""
        await self._p.commits.open.wait()  # not while paused
        with self._scope(message):
            await self._run_shared(session, record, message, handler)

    async def _run_shared(self, session: Session, record: Record, message: Message, handler: Any) -> None:  # noqa: ANN401
        obj = self._p.objects.get(message.object)
        if isinstance(handler, BaseException) or obj is None:
            assert isinstance(handler, BaseException)
            self._failures.refuse(record, message, handler, record.offset)
            return
        state = session.load(obj, self._p.settings.retention_ms)
        try:
            if handler is None:
                result: Any = {"state": state.model_dump(mode="json"), "version": session.version}
            else:
                check = self._p.settings.check_state_writes
                ctx = Invocation(self._host, obj, message, state, {}, 1, check_writes=check)
                plain = await payload_of(self._p.large, message)
                try:
                    payload = handler.input_type.model_validate(plain)
                except pydantic.ValidationError as invalid:
                    self._failures.refuse(record, message, invalid_payload(handler, message, invalid), record.offset)
                    return
                out = await handler.fn(ctx, payload)
                ctx.verify_state()
                result = out.model_dump(mode="json") if out is not None else None
        except Exception as exc:
            self._failures.fail(record, message, exc, "terminal", 1, [])
            return
        records = []
        if message.reply_partition is not None:
            large = self._p.large
            try:
                reply_blob = await large.offload(result) if large is not None else None
            except BlobError as exc:
                self._failures.fail(record, message, TerminalError(str(exc)), "terminal", 1, [])
                return
            records.append(
                self._p.outputs.reply(message, {"okb": reply_blob} if reply_blob is not None else {"ok": result})
            )
        oversize = self._p.outputs.oversize(message, records)
        if oversize is not None:
            self._failures.fail(record, message, oversize, "oversize", 1, [])
            return
        self._p.commits.finish(record.offset, records)

    # -- exclusive invocations -------------------------------------------------------------
    async def invoke(self, session: Session, offset: int, message: Message, record: Record) -> None:
        """Run `message`'s exclusive handler to its end: done, suspended or failed."""
        with self._scope(message) as scope:
            await self._run_invocation(scope, session, offset, message, record)

    async def _run_invocation(
        self, scope: InvocationScope, session: Session, offset: int, message: Message, record: Record
    ) -> None:
        handler = handler_for(self._p.objects, message)
        if isinstance(handler, BaseException) or handler is None:
            self._failures.refuse(record, message, handler or TerminalError("no handler"), offset)
            return
        obj = self._p.objects[message.object]
        state = session.load(obj, self._p.settings.retention_ms)
        previous = session.recorded(message.id, now_ms(), self._p.settings.retention_ms)
        if previous is not None:
            # A duplicate (client retry or redelivery): answer again, change nothing.
            scope.outcome = "duplicate"
            records = [self._p.outputs.reply(message, previous)] if message.reply_partition is not None else []
            self._p.commits.finish(offset, records)
            return
        try:
            plain = await payload_of(self._p.large, message)
        except BlobError as exc:
            self._failures.fail(
                record, message, TerminalError(str(exc)), "terminal", 1, [], session=session, offset=offset
            )
            return
        try:
            payload = handler.input_type.model_validate(plain)
        except pydantic.ValidationError as exc:
            error = invalid_payload(handler, message, exc)
            if message.reply_partition is not None:
                self._failures.refuse(record, message, error, offset)
            else:
                self._failures.fail(record, message, error, "terminal", 1, [], session=session, offset=offset)
            return
        inv_id = message.invocation_id
        policy = handler.retry
        first_failure = 0
        attempt = 0
        started = now_ms()
        while True:
            attempt += 1
            scope.attempt = attempt
            journal = self._p.state.journal(message)
            check = self._p.settings.check_state_writes
            ctx: Invocation[Any] = Invocation(self._host, obj, message, state, journal, attempt, check_writes=check)
            parked = self._p.state.waits.suspended.get(inv_id)
            ctx.skip_emits = parked.emitted if parked is not None else 0
            deadline_ms: int | None = None
            try:
                await ctx.check_cancelled()
                if handler.deadline is not None:
                    seconds = handler.deadline
                    deadline_ms = await ctx.run("deadline", lambda s=seconds: now_ms() + int(s * 1000), result_type=int)
                    remaining = (deadline_ms - now_ms()) / 1000
                    if remaining <= 0:
                        raise DeadlineExceededError(f"deadline of {seconds} s passed")
                    try:
                        result = await clock().within(handler.fn(ctx, payload), remaining)
                    except TimeoutError:
                        raise DeadlineExceededError(f"deadline of {seconds} s passed") from None
                else:
                    result = await handler.fn(ctx, payload)
                ctx.verify_state()
                if result is not None and not isinstance(result, pydantic.BaseModel):
                    raise TerminalError(
                        f"{obj.name}.{handler.name} returned {type(result).__qualname__}; "
                        "handlers return a pydantic model or None"
                    )
                break
            except Suspended as wait:
                try:
                    ctx.verify_state()
                except StateMutationError as exc:
                    self._failures.fail(record, message, exc, "terminal", attempt, [], session=session, offset=offset)
                    return
                wake = wait.wake_ms
                if deadline_ms is not None:
                    wake = deadline_ms if wake is None else min(wake, deadline_ms)
                events = [obj.codec.encode_envelope(e) for e in ctx.events]
                try:
                    recorded, events_blob = await events_by_reference(self._p.large, events)
                except BlobError as exc:
                    self._failures.fail(
                        record,
                        message,
                        TerminalError(str(exc)),
                        "terminal",
                        attempt,
                        [],
                        session=session,
                        offset=offset,
                    )
                    return
                self._suspensions.suspend(session, offset, message, wake, wait.awakeable, ctx, recorded, events_blob)
                return
            except Exception as exc:
                if not isinstance(exc, StateMutationError):
                    try:
                        ctx.verify_state()  # a write before a failure must not leak into the retry
                    except StateMutationError as mutation:
                        exc = mutation
                now = now_ms()
                first_failure = first_failure or now
                delay = policy.next_delay(attempt, exc)
                if delay is not None:
                    log.warning(
                        "%s.%s attempt %d failed: %r; retrying in %.2f s",
                        message.session,
                        message.handler,
                        attempt,
                        exc,
                        delay,
                    )
                    await clock().sleep(delay)
                    await self._p.commits.open.wait()  # no new attempt while paused
                    continue
                category = "exhausted" if policy.retries(exc) else "terminal"
                self._failures.fail(
                    record,
                    message,
                    exc,
                    category,
                    attempt,
                    [],
                    session=session,
                    first_failure_ms=first_failure,
                    last_failure_ms=now,
                    offset=offset,
                    park=handler.on_failure == "park",
                )
                return
        await self._done(session, offset, message, record, ctx, result, attempt, started)

    async def _done(
        self,
        session: Session,
        offset: int,
        message: Message,
        record: Record,
        ctx: Invocation[Any],
        result: pydantic.BaseModel | None,
        attempt: int,
        started: int,
    ) -> None:
        """The invocation returned: its done entry, sends, reply and stream end, in one transaction."""
        obj = self._p.objects[message.object]
        reply: dict[str, Any] = {"ok": result.model_dump(mode="json") if result is not None else None}
        outgoing = ctx.outgoing
        events = [obj.codec.encode_envelope(e) for e in ctx.events]
        large = self._p.large
        try:
            reply_blob = await large.offload(reply["ok"]) if large is not None else None
            recorded_events, events_blob = await events_by_reference(large, events)
            if large is not None:
                outgoing = [await by_reference(large, out) for out in outgoing]
        except BlobError as exc:  # the store failed the write: nothing of the invocation is written
            self._failures.fail(
                record, message, TerminalError(str(exc)), "terminal", attempt, [], session=session, offset=offset
            )
            return
        if reply_blob is not None:  # too large for its records: they carry the blob's reference
            reply = {"okb": reply_blob}
        finished = now_ms()
        done = Done(
            message.id,
            message.handler,
            recorded_events,
            session.version + 1,
            offset,
            reply.get("ok"),
            None,
            attempt,
            started,
            finished,
            reply_blob,
            events_blob,
        )
        records: list[OutRecord] = [self._p.outputs.session_event(session, done.encode())]
        records.extend(self._p.outputs.send(out) for out in outgoing)
        if message.reply_partition is not None:
            records.append(self._p.outputs.reply(message, reply))
        await self._p.streams.flush()  # the stream's chunks before its end
        records.extend(self._p.streams.end(message, reply.get("ok"), None, ctx.stream_position, reply_blob))
        oversize = self._p.outputs.oversize(message, records, events_record=lambda: bulk_of(reply.get("ok"), events))
        if oversize is not None:
            self._failures.fail(record, message, oversize, "oversize", attempt, [], session=session, offset=offset)
            return
        session.version += 1
        session.state = ctx.state
        session.dirty = True
        session.remember(message.id, reply, finished, self._p.settings.retention_ms)
        self._p.state.ended(message.invocation_id)
        self.invocations += 1
        self._p.commits.finish(offset, records, events_records=1, events=len(events))
