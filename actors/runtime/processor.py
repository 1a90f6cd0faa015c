"""The partition processor: the single writer of one partition of inbox, events and snapshots.

Lifecycle: assigned -> fencing (a transactional writer per partition) -> restoring (snapshots,
then events from the last checkpoint) -> running -> revoked. While running, every message of the
partition is routed to its session's FIFO queue; sessions run in parallel; each finished
invocation adds its events, reply and the inbox offset to the next transaction. One transaction
is in flight at a time and takes everything that finished meanwhile (group commit), so the
commit cost is shared by many invocations under load.

Beside it: `restore` (checkpoints, and rebuilding a partition from them, which the processor
adopts), `waits` (the table of open waits and their timers), `offsets` (the inbox watermark to
commit) and `protocol` (what is written to the topics). Invocations that wait and what wakes them
are the "waits" section below.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pydantic

from eventstore.codec import pack
from eventstore.errors import BlobError, DecodeError, TetherError
from eventstore.log import EventLog, TransactionalWriter
from eventstore.records import OutRecord, Record, TopicPartition
from eventstore.topics import Topics, partition_for

from ..clock import clock, now_ms, wait_for_event
from ..definitions import Handler, VirtualObject
from ..errors import (
    DeadlineExceededError,
    InvalidPayloadError,
    InvocationCancelledError,
    MessageTooLargeError,
    PartitionLost,
    RecordTooLargeError,
    StateMutationError,
    TerminalError,
    UnknownHandlerError,
    UnknownObjectError,
    error_payload,
)
from ..observability.metrics import METRICS, UNKNOWN
from ..observability.scope import InvocationScope, set_outcome
from ..protocol.awakeables import awakeable_id, cancel_awakeable_id, cancelled_message, parse_awakeable_id
from ..protocol.checkpoint import Journal
from ..protocol.entries import Completion, Delayed, Done, Queued, Step, Suspend
from ..protocol.inbox import RESERVED_HANDLERS, RESOLVE_HANDLER, STATE_HANDLER, Message
from ..protocol.inbox import invocation_id as invocation_id_of
from ..protocol.large_values import LargeValues, by_reference, events_by_reference, payload_of
from ..protocol.replies import Reply
from ..protocol.streams import StreamChunk
from ..settings import RuntimeSettings
from .cadence import CheckpointCadence
from .cancels import live_invocation
from .deadletters import Failure, dead_letter
from .invocation import Invocation, StepOverrides
from .offsets import NO_OFFSET, OffsetTracker
from .restore import RestoredPartition, checkpoint_records, inbox_record, restore, snapshot_blobs
from .sessions import Session, session_of
from .step_blobs import StepBlobs
from .streaming import StreamTracker
from .waits import Suspended, WaitTable

if TYPE_CHECKING:
    from ..client import Client

log = logging.getLogger(__name__)

_ENTRY_FRAMING = 1024
"""Bytes of a step record besides its result (entry keys, ids, name, timings), generously."""


@dataclass
class _Pending:
    records: list[OutRecord]
    waiters: list[asyncio.Future[None]]
    events_records: int = 0
    events: int = 0
    """Events (emitted by handlers) that the events records carry."""
    must_commit_offsets: bool = False
    pause_after: bool = False
    """Hold the commit loop once this batch committed (`pause`)."""


def _bulk(reply: Any, events: list[Any]) -> str:  # noqa: ANN401 - a reply as plain data
    """What makes a done entry large: its reply or its events (only asked once it is too large)."""
    if len(pack(reply)) >= len(pack(events)):
        return "the reply"
    return f"the {len(events)} events"


class PartitionProcessor:
    """Owns partition `partition` of a namespace while its writer is not fenced."""

    def __init__(
        self,
        *,
        partition: int,
        partitions: int,
        log: EventLog,
        writer: TransactionalWriter,
        topics: Topics,
        objects: dict[str, VirtualObject[Any]],
        settings: RuntimeSettings,
        client: Client,
        on_failure: Callable[[int, BaseException], None],
        on_commit: Callable[[], None] = lambda: None,
        step_overrides: StepOverrides | None = None,
        offsets_in_every_commit: bool = False,
    ) -> None:
        self.partition = partition
        self.partitions = partitions
        self.log = log
        self.writer = writer
        self.topics = topics
        self.objects = objects
        self.settings = settings
        self.client = client
        self._on_failure = on_failure
        self.step_overrides = step_overrides
        """Stubs of steps by name (`InvocationHost`; a test kit's, None in production)."""
        self._on_commit = on_commit
        """Called after each committed transaction: the broker answered (ends a logged outage)."""
        self._offsets_always = offsets_in_every_commit
        """Commit the inbox offset in every transaction: a writer fenced by the consumer group
        (KIP-447) is fenced by its offset commits, so a transaction without one would not be."""
        self.group = topics.group()
        self.sessions: dict[bytes, Session] = {}
        self.streams = StreamTracker(log, topics, partition, settings.max_message_bytes)
        self.step_blobs = StepBlobs.of(settings)
        self.large = LargeValues.of(settings)
        """Where replies and messages over `blob_threshold_bytes` go (claim check)."""
        self.journals: dict[str, Journal] = {}
        """Open invocations' journals by invocation id (session-scoped, see `Message.invocation_id`)."""
        self.legacy_journals: dict[str, Journal] = {}
        """Journals of a checkpoint written before journals were session-scoped (Tether 0.1), by
        message id; an invocation adopts its legacy journal on its first run after the upgrade."""
        self.offsets = OffsetTracker(0)
        self._pending = _Pending([], [])
        self._wake = asyncio.Event()
        self._committed = -1
        self._offsets_at = 0.0
        self._cadence = CheckpointCadence(settings, topics.events)
        self.checkpoint_start = 0
        """Events offset where the last checkpoint (written or restored) starts a restore."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._commit_task: asyncio.Task[None] | None = None
        self._open = asyncio.Event()
        """Cleared while paused: no transaction, no new invocation, no streamed chunk until set."""
        self._open.set()
        self.failed: BaseException | None = None
        self.waits = WaitTable()
        """Suspended invocations, delayed messages, awakeable completions and their timers."""
        self.stats = {"invocations": 0, "transactions": 0, "restored_records": 0, "restored_events_records": 0}

    async def restore(self) -> int:
        """Rebuild sessions from snapshots and events; return the inbox offset to resume at."""
        clock = time.perf_counter()
        restored = await restore(
            self.log,
            self.topics,
            self.partition,
            self.group,
            objects=self.objects,
            settings=self.settings,
            large=self.large,
        )
        if METRICS.enabled:
            METRICS.restored(time.perf_counter() - clock, restored.records)
        self.adopt(restored)
        return restored.resume

    def adopt(self, restored: RestoredPartition) -> None:
        """Take over the state of a restore (before `start`)."""
        self.sessions = restored.sessions
        self.journals = restored.journals
        self.legacy_journals = restored.legacy_journals
        self.waits = restored.waits
        self.offsets = restored.offsets
        self._committed = restored.resume
        self.checkpoint_start = restored.checkpoint_start
        self.stats["restored_records"] = restored.records
        self.stats["restored_events_records"] = restored.events_records

    def completion(self, awakeable: str) -> Completion | None:
        """The completion of `awakeable`, if it was resolved or rejected (`InvocationHost`)."""
        return self.waits.completion(awakeable)

    def _session(self, key: bytes) -> Session:
        return session_of(self.sessions, key)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the commit loop."""
        self._commit_task = asyncio.create_task(self._commit_loop(), name=f"commit-p{self.partition}")
        self.waits.timers.start(self._timer_due)
        for session in self.sessions.values():
            if session.queue and not session.running and session.blocked_by is None:
                session.running = True
                self._spawn(self._drain(session))

    async def stop(self, *, flush: bool = True) -> None:
        """Stop running sessions; commit what finished (if `flush`), then release the writer."""
        await self.waits.timers.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if flush and self.failed is None and self._commit_task is not None:
            await self._flush()
        if self._commit_task is not None:
            self._commit_task.cancel()
            await asyncio.gather(self._commit_task, return_exceptions=True)
        await self.writer.close()

    async def pause(self) -> bool:
        """Commit what finished, then hold: no transaction, no new invocation until `resume`.

        Running invocations stay in memory and wait at their next journaled step, so the
        processor can `resume` where it stopped (its partition came back to this worker before
        anyone else could own it) or be stopped without committing more (`stop(flush=False)`).
        False: the commit failed (or the processor had failed); stop it then.
        """
        if self.failed is not None or self._commit_task is None:
            return False
        self._pending.pause_after = True
        committed = await self._flush()
        if not committed or self.failed is not None:
            return False
        self._open.clear()  # in case the commit loop resumed it meanwhile: hold for sure
        return True

    def resume(self) -> None:
        """Go on after `pause`: commit what finished meanwhile, run what waits."""
        self._open.set()
        self._wake.set()

    @property
    def paused(self) -> bool:
        """Between `pause` and `resume`."""
        return not self._open.is_set()

    async def _flush(self) -> bool:
        self._pending.must_commit_offsets = True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.waiters.append(waiter)
        self._open.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), 30)
        except (TimeoutError, TetherError, PartitionLost):
            log.warning("partition %d: final commit did not complete", self.partition)
            return False
        return True

    @property
    def backlog(self) -> int:
        """Messages fetched but not finished."""
        return len(self.offsets)

    @property
    def running(self) -> int:
        """Session drains and shared handlers running now (a test kit's view of activity)."""
        return len(self._tasks)

    @property
    def committing(self) -> bool:
        """Whether records or step journals wait for the next transaction."""
        return bool(self._pending.records or self._pending.waiters)

    # -- intake ----------------------------------------------------------------------------
    def submit(self, record: Record) -> None:
        """Route one inbox record to its session (called in offset order)."""
        if record.offset < self.offsets.next:
            return  # already seen (a re-fetch after seek)
        if not self.offsets.add(record.offset):
            self._wake.set()
            return  # finished before a crash, after the last offset commit
        size = len(record.value or b"") + len(record.key or b"")
        if size > self.settings.max_message_bytes:
            error = MessageTooLargeError(
                f"inbox record of {size} bytes exceeds max_message_bytes={self.settings.max_message_bytes}"
            )
            self._pending.must_commit_offsets = True
            self._finish(record.offset, [self._dead_letter(record, Failure(error, "oversize"))])
            return
        try:
            message = Message.decode(record.value)
        except DecodeError as exc:
            exc.located(topic=record.topic, partition=record.partition, offset=record.offset)
            log.error("poison record at %s/%d@%d: %s", record.topic, record.partition, record.offset, exc)
            failure = Failure(exc, "poison")
            self._pending.must_commit_offsets = True
            self._finish(record.offset, [self._dead_letter(record, failure)])
            return
        session = self._session(message.session.encode())
        if message.handler == RESOLVE_HANDLER:
            self._resolve(session, record, message)
            return
        handler = self._handler(message)
        if isinstance(handler, Handler) and handler.kind == "shared" or message.handler == STATE_HANDLER:
            self._spawn(self._shared(session, record, message, handler))
            return
        if message.not_before_ms is not None and message.not_before_ms > now_ms():
            delayed = Delayed(message, record.offset, message.not_before_ms)
            self.waits.delay(message.invocation_id, delayed)
            self._finish(record.offset, [self._events_record(session, delayed.encode())])
            return
        if session.blocked_by is not None:
            self._adopt_queued(session, record.offset, message)
            return
        self._enqueue(session, record.offset, message, record)

    def _enqueue(self, session: Session, offset: int, message: Message, record: Record, *, front: bool = False) -> None:
        if front:
            session.queue.appendleft((offset, message, record))
        else:
            session.queue.append((offset, message, record))
        if not session.running and session.blocked_by is None:
            session.running = True
            self._spawn(self._drain(session))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            assert exc is not None
            self._fail(exc)

    def _handler(self, message: Message) -> Handler[Any, Any, Any] | BaseException | None:
        obj = self.objects.get(message.object)
        if obj is None:
            return UnknownObjectError(
                f"no session type {message.object!r} is served here (known: "
                f"{', '.join(sorted(self.objects)) or 'none'})",
                error_type="UnknownObjectError",
                object_name=message.object,
                key=message.key,
                handler=message.handler,
            )
        if message.handler == STATE_HANDLER:
            return None
        handler = obj.handlers.get(message.handler)
        if handler is None:
            return UnknownHandlerError(
                f"{message.object} has no handler {message.handler!r} (known: {', '.join(sorted(obj.handlers))})",
                error_type="UnknownHandlerError",
                object_name=message.object,
                key=message.key,
                handler=message.handler,
            )
        return handler

    # -- running ---------------------------------------------------------------------------
    def _scope(self, message: Message) -> InvocationScope:
        """The log context, span and outcome metrics of one run of `message`'s invocation."""
        obj = self.objects.get(message.object)
        if obj is None:
            object_label = handler_label = UNKNOWN
        else:
            object_label = message.object
            known = message.handler in obj.handlers or message.handler in RESERVED_HANDLERS
            handler_label = message.handler if known else UNKNOWN
        return InvocationScope(self.topics.namespace, message, object_label=object_label, handler_label=handler_label)

    async def _drain(self, session: Session) -> None:
        try:
            while session.queue and session.blocked_by is None:
                await self._open.wait()  # not while paused
                if not session.queue or session.blocked_by is not None:
                    break
                offset, message, record = session.queue.popleft()
                session.current = message
                try:
                    await self._invoke(session, offset, message, record)
                finally:
                    session.current = None
            if session.blocked_by is not None:
                # Whatever waits behind a suspended invocation moves into the events log.
                for offset, message, _ in list(session.queue):
                    if offset != NO_OFFSET:
                        self._adopt_queued(session, offset, message, append=False)
                session.queue = deque((NO_OFFSET, m, r) for _, m, r in session.queue)
        finally:
            session.running = False
            session.last_used = time.monotonic()

    async def _shared(self, session: Session, record: Record, message: Message, handler: Any) -> None:
        await self._open.wait()  # not while paused
        with self._scope(message):
            await self._run_shared(session, record, message, handler)

    async def _run_shared(self, session: Session, record: Record, message: Message, handler: Any) -> None:
        obj = self.objects.get(message.object)
        if isinstance(handler, BaseException) or obj is None:
            assert isinstance(handler, BaseException)
            self._refuse(record, message, handler, record.offset)
            return
        state = session.load(obj, self.settings.retention_ms)
        try:
            if handler is None:
                result: Any = {"state": state.model_dump(mode="json"), "version": session.version}
            else:
                ctx = Invocation(self, obj, message, state, {}, 1, check_writes=self.settings.check_state_writes)
                plain = await payload_of(self.large, message)
                try:
                    payload = handler.input_type.model_validate(plain)
                except pydantic.ValidationError as invalid:
                    self._refuse(record, message, self._invalid_payload(handler, message, invalid), record.offset)
                    return
                out = await handler.fn(ctx, payload)
                ctx.verify_state()
                result = out.model_dump(mode="json") if out is not None else None
        except Exception as exc:
            self._fail_message(record, message, exc, "terminal", 1, [])
            return
        records = []
        if message.reply_partition is not None:
            try:
                reply_blob = await self.large.offload(result) if self.large is not None else None
            except BlobError as exc:
                self._fail_message(record, message, TerminalError(str(exc)), "terminal", 1, [])
                return
            records.append(self._reply(message, {"okb": reply_blob} if reply_blob is not None else {"ok": result}))
        oversize = self._oversize(message, records)
        if oversize is not None:
            self._fail_message(record, message, oversize, "oversize", 1, [])
            return
        self._finish(record.offset, records)

    def _refuse(self, record: Record, message: Message, error: BaseException, offset: int) -> None:
        """A caller's mistake (unknown type or handler, invalid payload): tell the caller.

        Nobody needs to replay a caller's mistake, so a call is answered with the typed error
        and not dead-lettered; a one-way send has no caller to tell, so it is dead-lettered.
        """
        if message.reply_partition is None:
            self._fail_message(record, message, error, "terminal", 1, [], offset=offset)
            return
        log.info("%s.%s refused: %s", message.session, message.handler, error)
        set_outcome("error", error)
        self._finish(offset, [self._reply(message, {"err": error_payload(error)})])

    def step_limit(self, message: Message, index: int) -> int:
        """Bytes a journaled step result of `message` may take (the rest of its record is framing)."""
        return self.settings.max_message_bytes - len(message.session.encode()) - _ENTRY_FRAMING

    def _oversize(
        self, message: Message, records: list[OutRecord], *, events_record: Callable[[], str] | None = None
    ) -> RecordTooLargeError | None:
        """The error for the first of `records` over `max_message_bytes`, if one is.

        `events_record` says what the events-topic record carries that could be large (asked
        only once one is too large).
        """
        limit = self.settings.max_message_bytes
        for out in records:
            # The hot path: most records have no headers and are far below the limit.
            if not out.headers and len(out.value or b"") + len(out.key or b"") <= limit:
                continue
            size = out.size
            if size <= limit:
                continue
            if out.topic == self.topics.replies:
                what = f"the reply of {message.session}.{message.handler}"
            elif out.topic == self.topics.inbox:
                what = f"a message that {message.session}.{message.handler} sends to {out.key!r}"
            else:
                bulk = events_record() if events_record is not None else "the events"
                what = f"{bulk} of {message.session}.{message.handler}"
            return RecordTooLargeError(
                f"{what} would be a record of {size} bytes, over max_message_bytes={limit}; the "
                "invocation fails instead (nothing of it was written). Keep large data out of "
                "replies and events: store it elsewhere and pass a reference",
                size=size,
                limit=limit,
            )
        return None

    @staticmethod
    def _invalid_payload(
        handler: Handler[Any, Any, Any], message: Message, exc: pydantic.ValidationError
    ) -> InvalidPayloadError:
        return InvalidPayloadError(
            f"payload does not fit {handler.input_type.__qualname__}: {exc.errors(include_url=False)}",
            error_type="InvalidPayloadError",
            object_name=message.object,
            key=message.key,
            handler=message.handler,
        )

    async def _invoke(self, session: Session, offset: int, message: Message, record: Record) -> None:
        with self._scope(message) as scope:
            await self._run_invocation(scope, session, offset, message, record)

    async def _run_invocation(
        self, scope: InvocationScope, session: Session, offset: int, message: Message, record: Record
    ) -> None:
        handler = self._handler(message)
        if isinstance(handler, BaseException) or handler is None:
            self._refuse(record, message, handler or TerminalError("no handler"), offset)
            return
        obj = self.objects[message.object]
        state = session.load(obj, self.settings.retention_ms)
        previous = session.recorded(message.id, now_ms(), self.settings.retention_ms)
        if previous is not None:
            # A duplicate (client retry or redelivery): answer again, change nothing.
            scope.outcome = "duplicate"
            records = [self._reply(message, previous)] if message.reply_partition is not None else []
            self._finish(offset, records)
            return
        try:
            plain = await payload_of(self.large, message)
        except BlobError as exc:
            self._fail_message(
                record, message, TerminalError(str(exc)), "terminal", 1, [], session=session, offset=offset
            )
            return
        try:
            payload = handler.input_type.model_validate(plain)
        except pydantic.ValidationError as exc:
            error = self._invalid_payload(handler, message, exc)
            if message.reply_partition is not None:
                self._refuse(record, message, error, offset)
            else:
                self._fail_message(record, message, error, "terminal", 1, [], session=session, offset=offset)
            return
        inv_id = message.invocation_id
        policy = handler.retry
        first_failure = 0
        attempt = 0
        started = now_ms()
        while True:
            attempt += 1
            scope.attempt = attempt
            journal = self.journals.setdefault(inv_id, {})
            legacy = self.legacy_journals.pop(message.id, None) if self.legacy_journals else None
            for n, entry in (legacy or {}).items():
                journal.setdefault(n, entry)
            if message.seed_journal and not journal:
                journal.update({int(e["n"]): Step.from_wire(e) for e in message.seed_journal})
            ctx: Invocation[Any] = Invocation(
                self, obj, message, state, journal, attempt, check_writes=self.settings.check_state_writes
            )
            parked = self.waits.suspended.get(inv_id)
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
                    self._fail_message(record, message, exc, "terminal", attempt, [], session=session, offset=offset)
                    return
                wake = wait.wake_ms
                if deadline_ms is not None:
                    wake = deadline_ms if wake is None else min(wake, deadline_ms)
                events = [obj.codec.encode_envelope(e) for e in ctx.events]
                try:
                    recorded, events_blob = await events_by_reference(self.large, events)
                except BlobError as exc:
                    self._fail_message(
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
                self._suspend(session, offset, message, wake, wait.awakeable, ctx, recorded, events_blob)
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
                    await self._open.wait()  # no new attempt while paused
                    continue
                category = "exhausted" if policy.retries(exc) else "terminal"
                self._fail_message(
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
        reply: dict[str, Any] = {"ok": result.model_dump(mode="json") if result is not None else None}
        outgoing = ctx.outgoing
        events = [obj.codec.encode_envelope(e) for e in ctx.events]
        try:
            reply_blob = await self.large.offload(reply["ok"]) if self.large is not None else None
            recorded_events, events_blob = await events_by_reference(self.large, events)
            if self.large is not None:
                outgoing = [await by_reference(self.large, out) for out in outgoing]
        except BlobError as exc:  # the store failed the write: nothing of the invocation is written
            self._fail_message(
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
        records = [self._events_record(session, done.encode())]
        for out in outgoing:
            key = out.session.encode()
            records.append(OutRecord(self.topics.inbox, partition_for(key, self.partitions), key, out.encode()))
        if message.reply_partition is not None:
            records.append(self._reply(message, reply))
        await self.streams.flush()  # the stream's chunks before its end
        records.extend(self.streams.end(message, reply.get("ok"), None, ctx.stream_position, reply_blob))
        oversize = self._oversize(message, records, events_record=lambda: _bulk(reply.get("ok"), events))
        if oversize is not None:
            self._fail_message(record, message, oversize, "oversize", attempt, [], session=session, offset=offset)
            return
        session.version += 1
        session.state = ctx.state
        session.dirty = True
        session.remember(message.id, reply, finished, self.settings.retention_ms)
        self.journals.pop(inv_id, None)
        self.waits.forget(inv_id)
        self.stats["invocations"] += 1
        self._finish(offset, records, events_records=1, events=len(events))

    def _fail_message(
        self,
        record: Record,
        message: Message,
        exc: BaseException,
        category: str,
        attempts: int,
        records: list[OutRecord],
        *,
        session: Session | None = None,
        first_failure_ms: int = 0,
        last_failure_ms: int = 0,
        offset: int | None = None,
        park: bool = False,
    ) -> None:
        offset = record.offset if offset is None else offset
        cancelled = isinstance(exc, InvocationCancelledError)
        park = park and not cancelled
        park_id = awakeable_id(message.object, message.key, f"park-{message.id}", 0) if park and session else None
        inv_id = message.invocation_id
        error = error_payload(exc)
        error["attempts"] = attempts
        if cancelled:
            # An operator's decision, recorded in the session's history: no dead letter.
            log.warning("%s.%s %s", message.session, message.handler, exc)
            set_outcome("cancelled", exc)
        else:
            log.error(
                "%s.%s failed for good (%s after %d attempt(s)): %s; dead-lettered",
                message.session,
                message.handler,
                category,
                attempts,
                exc,
            )
            set_outcome("dead_lettered", exc)
            failure = Failure(
                exc,
                category,
                attempts,
                first_failure_ms,
                last_failure_ms,
                message.object,
                message.key,
                message.handler,
                message.id,
                park_id,
            )
            records.append(self._dead_letter(record, failure))
        self._pending.must_commit_offsets = True
        events_records = 0
        if session is not None and session.state is not None:
            # The failure is part of the session's history: a retried send does not run again.
            session.version += 1
            session.dirty = True
            finished = now_ms()
            session.remember(message.id, {"err": error}, finished, self.settings.retention_ms)
            failed = Done(
                message.id, message.handler, [], session.version, record.offset, None, error, attempts, 0, finished
            )
            records.append(self._events_record(session, failed.encode()))
            events_records = 1
            self.journals.pop(inv_id, None)
            self.waits.forget(inv_id)
            if park_id is not None:
                # The session waits until an operator replays or discards the dead letter,
                # which resolves the park awakeable (its id is in the dead letter's headers).
                parked = message.model_copy(update={"id": f"park-{message.id}"})
                park_wait = Suspend(parked, record.offset, None, park_id, [], 0, session.version, parked=True)
                self.waits.suspended[parked.invocation_id] = park_wait
                session.blocked_by = parked.invocation_id
                records.append(self._events_record(session, park_wait.encode()))
                log.warning("%s is parked until dead letter of %s is resolved", message.session, message.id)
        records.extend(self.streams.end(message, None, error))
        if message.reply_partition is not None:
            records.append(self._reply(message, {"err": error}))
        self._finish(offset, records, events_records=events_records)

    def _reply(self, message: Message, reply: dict[str, Any]) -> OutRecord:
        assert message.reply_partition is not None
        value = Reply.of_outcome(message.id, message.session, reply).encode()
        return OutRecord(self.topics.replies, message.reply_partition, message.id.encode(), value)

    def _events_record(self, session: Session, value: bytes) -> OutRecord:
        """A record of `session` in the partition's events topic."""
        return OutRecord(self.topics.events, self.partition, session.key, value)

    def _inbox_record(self, message: Message, offset: int) -> Record:
        return inbox_record(self.topics, self.partition, message, offset)

    def _dead_letter(self, record: Record, failure: Failure) -> OutRecord:
        if METRICS.enabled:
            METRICS.dead_letter(failure.category)
        return dead_letter(
            record,
            failure,
            dlq_topic=self.topics.dlq,
            group=self.group,
            connect_headers=self.settings.dead_letter_connect_headers,
        )

    # -- waits -----------------------------------------------------------------------------
    # An invocation that sleeps or awaits an awakeable is suspended: its message moves into the
    # events log (a ``sus`` entry) and it leaves memory; the messages of its session that
    # arrive meanwhile queue behind it in the events log too (``q``). A timer, an awakeable's
    # completion or an operator's resolution of a parked dead letter puts it back at the head
    # of its session's queue, where it replays from its journal. Delayed sends (``dly``) ride
    # on the same timers.
    def _suspend(
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
        original = self.waits.suspended.get(inv_id)
        inbox_offset = original.inbox_offset if original is not None else offset
        emitted = (original.emitted if original is not None else 0) + len(ctx.events)
        entry = Suspend(
            message, inbox_offset, wake_ms, awakeable, events, emitted, session.version + 1, events_blob=events_blob
        )
        record = self._events_record(session, entry.encode())
        oversize = self._oversize(message, [record])
        if oversize is not None:
            synthetic = self._inbox_record(message, inbox_offset)
            self._fail_message(
                synthetic, message, oversize, "oversize", ctx.attempt, [], session=session, offset=offset
            )
            return
        if ctx.events:
            session.state = ctx.state
            session.dirty = True
        session.version += 1
        # The table keeps the wait; its events are in the session's state now.
        self.waits.suspended[inv_id] = Suspend(message, inbox_offset, wake_ms, awakeable, [], emitted)
        if wake_ms is not None:
            self.waits.timers.schedule(inv_id, wake_ms)
        session.blocked_by = inv_id
        if self.waits.completed(awakeable):
            self._timer_due(inv_id)  # resolved while it was still running
        log.info("%s.%s waits (timer %s, awakeable %s)", message.session, message.handler, wake_ms, awakeable)
        set_outcome("suspended")
        self._finish(offset, [record], events_records=1, events=len(events))

    def _adopt_queued(self, session: Session, offset: int, message: Message, *, append: bool = True) -> None:
        """Move a message that waits behind a suspended invocation into the events log."""
        if append:
            session.queue.append((NO_OFFSET, message, self._inbox_record(message, offset)))
        self._finish(offset, [self._events_record(session, Queued(message, offset).encode())], events_records=1)

    def _resolve(self, session: Session, record: Record, message: Message) -> None:
        """Complete an awakeable (first resolution wins) and wake its invocation."""
        payload = message.payload if isinstance(message.payload, dict) else {}
        awk_id = str(payload.get("id", ""))
        try:
            object_name, key, waiting_id = parse_awakeable_id(awk_id)
        except ValueError as exc:
            self._fail_message(record, message, TerminalError(str(exc)), "terminal", 1, [])
            return
        if f"{object_name}/{key}" != message.session:
            # An awakeable belongs to the session its id names; a resolution sent elsewhere
            # must not complete (or even learn of) another session's promise.
            error = TerminalError(f"awakeable {awk_id!r} does not belong to session {message.session!r}")
            self._refuse(record, message, error, record.offset)
            return
        invocation_id = invocation_id_of(message.session, waiting_id)
        records: list[OutRecord] = []
        live = bool(payload.get("live")) and cancelled_message(awk_id) is not None
        if live:
            # Addressed to what runs on the key now (`cancels`): recorded as a cancellation of it.
            target = live_invocation(
                session, self.waits, cancelled_message(awk_id) or "", str(payload.get("handler") or "")
            )
            if target is None:
                if message.reply_partition is not None:
                    records.append(self._reply(message, {"ok": {"id": awk_id, "accepted": False, "invocation": None}}))
                self._finish(record.offset, records)
                return
            awk_id = cancel_awakeable_id(object_name, key, target)
            waiting_id = parse_awakeable_id(awk_id)[2]
        outcome = {"err": payload["err"]} if "err" in payload else {"ok": payload.get("ok")}
        completion = Completion.from_outcome(awk_id, {**outcome, "by": payload.get("by")}, waiting_id)
        if self.waits.complete(completion):
            records.append(self._events_record(session, completion.encode()))
        if message.reply_partition is not None:
            answer = {"id": awk_id, "accepted": bool(records)}
            if live:
                answer["invocation"] = cancelled_message(awk_id)
            records.append(self._reply(message, {"ok": answer}))
        self._finish(record.offset, records, events_records=1 if records else 0)
        cancelled = cancelled_message(awk_id)
        if cancelled is not None:
            # A cancellation wakes its invocation whatever it waits on: it ends at that wait.
            invocation_id = invocation_id_of(message.session, cancelled)
        waiting = self.waits.suspended.get(invocation_id)
        if waiting is not None and (waiting.awakeable == awk_id or (cancelled is not None and not waiting.parked)):
            self._timer_due(invocation_id)

    def _timer_due(self, invocation_id: str) -> None:
        """A timer fired or an awakeable completed: run the invocation (or delayed message).

        `invocation_id` is the (session-scoped) id that waits and timers are keyed by.
        """
        delayed = self.waits.take_delayed(invocation_id)
        if delayed is not None:
            message = delayed.message
            session = self._session(message.session.encode())
            synthetic = self._inbox_record(message, delayed.inbox_offset)
            if session.blocked_by is not None:
                session.queue.append((NO_OFFSET, message, synthetic))
            else:
                self._enqueue(session, NO_OFFSET, message, synthetic)
            return
        waiting = self.waits.suspended.get(invocation_id)
        if waiting is None:
            return
        session = self._session(waiting.message.session.encode())
        if session.blocked_by != invocation_id:
            return
        if waiting.parked:
            # Its dead letter was resolved: the session takes its next message. A replay rides
            # in the resolution itself, so it runs before the messages that queued behind it.
            self.waits.forget(invocation_id)
            session.blocked_by = None
            completion = self.waits.completion(waiting.awakeable or "")
            resolution = completion.result if completion is not None and completion.error is None else None
            if isinstance(resolution, dict) and isinstance(resolution.get("replay"), dict):
                replay = Message.from_wire(resolution["replay"])
                if session.recorded(replay.id, now_ms(), self.settings.retention_ms) is None:
                    session.queue.appendleft((NO_OFFSET, replay, self._inbox_record(replay, waiting.inbox_offset)))
            if session.queue and not session.running:
                session.running = True
                self._spawn(self._drain(session))
            return
        self.waits.resume(invocation_id)
        session.blocked_by = None
        synthetic = self._inbox_record(waiting.message, waiting.inbox_offset)
        self._enqueue(session, NO_OFFSET, waiting.message, synthetic, front=True)

    async def _checkpoint_records(self) -> list[OutRecord]:
        state_blobs = await snapshot_blobs(self.sessions.values(), self.large)
        records, self.checkpoint_start = checkpoint_records(
            state_blobs=state_blobs,
            start=await self.log.end_offset(self.topics.events, self.partition),
            sessions=self.sessions.values(),
            objects=self.objects,
            settings=self.settings,
            topics=self.topics,
            partition=self.partition,
            journals=self.journals,
            legacy_journals=self.legacy_journals,
            offsets=self.offsets,
            waits=self.waits,
            checkpoint_start=self.checkpoint_start,
        )
        return records

    # -- committing ------------------------------------------------------------------------
    def _finish(self, offset: int, records: list[OutRecord], *, events_records: int = 0, events: int = 0) -> None:
        self._pending.records.extend(records)
        self._pending.events_records += events_records
        self._pending.events += events
        if offset != NO_OFFSET:
            self.offsets.finish(offset)
        self._wake.set()

    async def stream_chunk(self, message: Message, chunk: StreamChunk) -> None:
        """Append a streamed chunk at once, outside the transactions (`InvocationHost`)."""
        await self._open.wait()  # not while paused
        await self.streams.publish(message, chunk)

    async def journal_step(self, message: Message, step: Step) -> None:
        """Make one step durable (group-committed); returns once it is committed (`InvocationHost`)."""
        if self.failed is not None:
            raise PartitionLost(f"partition {self.partition} was lost: {self.failed}")
        key = message.session.encode()
        value = step.encode()
        self.journals.setdefault(message.invocation_id, {})[step.index] = step
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.records.append(OutRecord(self.topics.events, self.partition, key, value))
        self._pending.waiters.append(waiter)
        self._pending.events_records += 1
        self._wake.set()
        try:
            await asyncio.shield(waiter)
        except TetherError as exc:
            raise PartitionLost(f"partition {self.partition} was lost: {exc}") from exc

    async def _commit_loop(self) -> None:
        batch: _Pending | None = None
        try:
            while True:
                await self._open.wait()  # not while paused
                if not await wait_for_event(self._wake, self.settings.offset_commit_interval):
                    self._pending.must_commit_offsets = True  # idle: let the offset catch up
                self._wake.clear()
                watermark = self.offsets.watermark()
                pending = self._pending
                offsets_due = watermark != self._committed and pending.must_commit_offsets
                if not pending.records and not pending.waiters and not offsets_due:
                    continue
                extra: list[OutRecord] = []
                checkpointed = False
                if self._cadence.due(pending.records, pending.events_records, pending.events):
                    extra = await self._checkpoint_records()  # empty if it had to be skipped
                    checkpointed = True
                    watermark = self.offsets.watermark()
                batch, self._pending = self._pending, _Pending([], [])
                # Done entries record their inbox offset, so a restore skips what finished even
                # if the committed offset lags; committing it only now and then saves two
                # round trips per transaction. Dead letters carry no done entry: commit then.
                commit_offsets = (
                    self._offsets_always
                    or watermark != self._committed
                    and (
                        bool(extra)
                        or batch.must_commit_offsets
                        or time.monotonic() - self._offsets_at >= self.settings.offset_commit_interval
                    )
                )
                clock = time.perf_counter()
                await self._commit(batch.records + extra, watermark if commit_offsets else None)
                if METRICS.enabled:
                    METRICS.committed(len(batch.records) + len(extra), time.perf_counter() - clock)
                self._on_commit()
                self._cadence.committed(batch.records, batch.events_records, batch.events, checkpointed=checkpointed)
                if commit_offsets:
                    self._committed = watermark
                    self._offsets_at = time.monotonic()
                self.stats["transactions"] += 1
                if batch.pause_after:
                    self._open.clear()
                for waiter in batch.waiters:
                    if not waiter.done():
                        waiter.set_result(None)
                if extra:
                    self._passivate()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            for waiter in batch.waiters if batch is not None else ():
                if not waiter.done():  # the failed transaction's: they wait no longer
                    waiter.set_exception(PartitionLost(f"partition {self.partition} lost: {exc}"))
            self._fail(exc)

    async def _commit(self, records: list[OutRecord], watermark: int | None) -> None:
        offsets = None if watermark is None else {TopicPartition(self.topics.inbox, self.partition): watermark}
        await self.writer.commit(records, group_id=self.group, offsets=offsets)

    def _passivate(self) -> None:
        resident = [s for s in self.sessions.values() if s.state is not None]
        excess = len(resident) - self.settings.max_resident_sessions
        if excess <= 0:
            return
        idle = sorted((s for s in resident if not s.running and not s.dirty), key=lambda s: s.last_used)
        for session in idle[:excess]:
            session.passivate(session.to_snapshot().encode())

    def _fail(self, exc: BaseException) -> None:
        if self.failed is not None:
            return
        self.failed = exc
        for waiter in self._pending.waiters:
            if not waiter.done():
                waiter.set_exception(PartitionLost(f"partition {self.partition} lost: {exc}"))
        self._on_failure(self.partition, exc)
