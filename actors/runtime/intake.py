"""Intake: where each inbox record of a partition goes, and the session queues that run them.

Records arrive in offset order. A record over the size limit or one that does not decode is
dead-lettered; a resolution completes an awakeable; a shared handler runs at once; a delayed
send waits for its timer; anything else joins its session's FIFO queue (in the events log if
the session waits behind a suspended invocation). Each session drains its queue in one task;
sessions run in parallel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from eventstore.errors import DecodeError
from eventstore.lifecycle import cancel_and_wait
from eventstore.records import Record

from ..clock import now_ms
from ..definitions import Handler
from ..errors import MessageTooLargeError
from ..protocol.entries import Delayed
from ..protocol.inbox import RESOLVE_HANDLER, STATE_HANDLER, Message
from .failures import Failures
from .invocation import InvocationHost
from .offsets import NO_OFFSET
from .partition import Partition
from .routing import handler_for
from .running import Runner
from .sessions import Session
from .suspensions import Suspensions

log = logging.getLogger("actors.runtime.processor")  # one logger for the partition's lifecycle


class Intake:
    """Routes one partition's inbox records and runs its session queues (the `Queues` of its waits)."""

    def __init__(
        self,
        partition: Partition,
        host: InvocationHost,
        failures: Failures,
        on_task_failure: Callable[[BaseException], None],
    ) -> None:
        self._p = partition
        self._failures = failures
        self._on_task_failure = on_task_failure
        self._tasks: set[asyncio.Task[None]] = set()
        self.suspensions = Suspensions(partition, failures, queues=self)
        self.runner = Runner(partition, host, failures, self.suspensions)

    @property
    def running(self) -> int:
        """Session drains and shared handlers running now."""
        return len(self._tasks)

    # -- routing ---------------------------------------------------------------------------
    def submit(self, record: Record) -> None:
        """Route one inbox record to its session (called in offset order)."""
        if record.offset < self._p.state.offsets.next:
            return  # already seen (a re-fetch after seek)
        if not self._p.state.offsets.add(record.offset):
            self._p.commits.wake()
            return  # finished before a crash, after the last offset commit
        size = len(record.value or b"") + len(record.key or b"")
        limit = self._p.settings.max_message_bytes
        if size > limit:
            error = MessageTooLargeError(f"inbox record of {size} bytes exceeds max_message_bytes={limit}")
            self._failures.unread(record, error, "oversize")
            return
        try:
            message = Message.decode(record.value)
        except DecodeError as exc:
            exc.located(topic=record.topic, partition=record.partition, offset=record.offset)
            log.error("poison record at %s/%d@%d: %s", record.topic, record.partition, record.offset, exc)
            self._failures.unread(record, exc, "poison")
            return
        session = self._p.state.session(message.session.encode())
        if message.handler == RESOLVE_HANDLER:
            self.suspensions.resolve(session, record, message)
            return
        handler = handler_for(self._p.objects, message)
        if isinstance(handler, Handler) and handler.kind == "shared" or message.handler == STATE_HANDLER:
            self._spawn(self.runner.shared(session, record, message, handler))
            return
        if message.not_before_ms is not None and message.not_before_ms > now_ms():
            delayed = Delayed(message, record.offset, message.not_before_ms)
            self._p.state.waits.delay(message.invocation_id, delayed)
            self._p.commits.finish(record.offset, [self._p.outputs.session_event(session, delayed.encode())])
            return
        if session.blocked_by is not None:
            self.suspensions.queue_behind(session, record.offset, message)
            return
        self.enqueue(session, record.offset, message, record)

    # -- session queues --------------------------------------------------------------------
    def enqueue(self, session: Session, offset: int, message: Message, record: Record, *, front: bool = False) -> None:
        """Queue `message` in `session` (at its head if `front`) and run the queue if it may run."""
        if front:
            session.queue.appendleft((offset, message, record))
        else:
            session.queue.append((offset, message, record))
        self.drain_soon(session)

    def drain_soon(self, session: Session) -> None:
        """Run `session`'s queue if it is not running and not blocked."""
        if not session.running and session.blocked_by is None:
            session.running = True
            self._spawn(self._drain(session))

    def start(self) -> None:
        """Run the queues that a restore left with messages."""
        for session in self._p.state.sessions.values():
            if session.queue:
                self.drain_soon(session)

    async def stop(self) -> None:
        """Cancel the running drains and shared handlers."""
        await cancel_and_wait(*self._tasks)

    async def _drain(self, session: Session) -> None:
        try:
            while session.queue and session.blocked_by is None:
                await self._p.commits.open.wait()  # not while paused
                if not session.queue or session.blocked_by is not None:
                    break
                offset, message, record = session.queue.popleft()
                session.current = message
                try:
                    await self.runner.invoke(session, offset, message, record)
                finally:
                    session.current = None
            if session.blocked_by is not None:
                # Whatever waits behind a suspended invocation moves into the events log.
                for offset, message, _ in list(session.queue):
                    if offset != NO_OFFSET:
                        self.suspensions.queue_behind(session, offset, message, append=False)
                session.queue = deque((NO_OFFSET, m, r) for _, m, r in session.queue)
        finally:
            session.running = False
            session.last_used = time.monotonic()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            assert exc is not None
            self._on_task_failure(exc)
