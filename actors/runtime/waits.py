"""Durable waits: suspended invocations, messages queued behind them, delayed messages, timers.

A waiting invocation holds no coroutine and no stack: it raises `Suspended`, the processor writes
a ``sus`` entry (the message itself, so the inbox offset can move on) and forgets the call. When
its timer fires or its awakeable is resolved, the handler runs again from the start and replays
its journal up to the wait, which now returns. Messages that arrive for a waiting session are
written to the events log as ``q`` entries (the session's queue survives any restart), and
``send(..., delay=...)`` messages as ``dly`` entries with their due time. `WaitTable` holds a
partition's open waits and their timers; the entries themselves are `actors.protocol.entries`.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable

from eventstore.lifecycle import cancel_and_wait

from ..clock import clock
from ..clock import now_ms as now_ms  # where the runtime has always imported it from
from ..protocol.entries import Completion, Delayed, Suspend

SLEEP_STEP = "sleep"


class Suspended(BaseException):  # noqa: N818 - control flow, not an error
    """The invocation waits (a timer or an awakeable); the runtime resumes it later.

    Do not catch this: the handler runs again from its journal when the wait is over.
    """

    def __init__(self, *, wake_ms: int | None = None, awakeable: str | None = None) -> None:
        super().__init__("invocation suspended")
        self.wake_ms = wake_ms
        self.awakeable = awakeable


class Timers:
    """Wall-clock timers keyed by id; `on_due(id)` is called once per scheduling, in due order."""

    def __init__(self) -> None:
        self._on_due: Callable[[str], None] = lambda timer_id: None
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def schedule(self, timer_id: str, due_ms: int) -> None:
        """Fire `timer_id` at `due_ms` (replaces an earlier schedule of the same id)."""
        self._due[timer_id] = due_ms
        heapq.heappush(self._heap, (due_ms, timer_id))
        self._changed.set()

    def cancel(self, timer_id: str) -> None:
        """Forget `timer_id`."""
        self._due.pop(timer_id, None)

    def next_due(self, timer_id: str) -> int | None:
        """When `timer_id` fires, if scheduled."""
        return self._due.get(timer_id)

    def __len__(self) -> int:
        return len(self._due)

    def next_ms(self) -> int | None:
        """When the next scheduled timer fires, if any."""
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # replaced or cancelled
        return self._heap[0][0] if self._heap else None

    def start(self, on_due: Callable[[str], None]) -> None:
        """Run the timer loop, calling `on_due(id)` for each timer that fires.

        Timers scheduled before the loop starts fire as soon as they are due.
        """
        self._on_due = on_due
        self._task = asyncio.create_task(self._run(), name="tether-timers")

    async def stop(self) -> None:
        """Stop the loop (timers are durable elsewhere; nothing is lost)."""
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            self._changed.clear()
            now = now_ms()
            while self._heap and self._heap[0][0] <= now:
                due, timer_id = heapq.heappop(self._heap)
                if self._due.get(timer_id) == due:
                    del self._due[timer_id]
                    self._on_due(timer_id)
            wait = (self._heap[0][0] - now) / 1000 if self._heap else 3600.0
            await clock().wait_event(self._changed, min(wait, 3600.0))


class WaitTable:
    """A partition's open waits by invocation id, and the timers that end them.

    The waits are suspended invocations (and parked sessions), delayed messages and awakeable
    completions. Messages queued behind a suspended invocation stay in their session's queue (`Session`).
    """

    def __init__(self) -> None:
        self.suspended: dict[str, Suspend] = {}
        """Suspended invocations (and parked sessions) by invocation id."""
        self.delayed: dict[str, Delayed] = {}
        """Delayed messages by invocation id."""
        self.completions: dict[str, Completion] = {}
        """Awakeable completions by awakeable id (the first resolution wins)."""
        self.woken_by: dict[str, str] = {}
        """The ``traceparent`` of the resolution that woke an invocation, by invocation id, until
        its run starts (its span links to the resolver's; kept in memory only)."""
        self.timers = Timers()

    def suspend(self, invocation_id: str, wait: Suspend) -> None:
        """Open (or replace) the wait of a suspended invocation; due at once if already resolved."""
        self.suspended[invocation_id] = wait
        if wait.wake_ms is not None:
            self.timers.schedule(invocation_id, wait.wake_ms)
        if self.completed(wait.awakeable):
            self.timers.schedule(invocation_id, 0)

    def delay(self, invocation_id: str, entry: Delayed) -> None:
        """Hold a delayed message until its due time."""
        self.delayed[invocation_id] = entry
        self.timers.schedule(invocation_id, entry.due_ms)

    def complete(self, completion: Completion) -> bool:
        """Record an awakeable's completion; False if it was completed before (nothing changes)."""
        if completion.awakeable in self.completions:
            return False
        self.completions[completion.awakeable] = completion
        return True

    def completion(self, awakeable: str) -> Completion | None:
        """The completion of `awakeable`, if any."""
        return self.completions.get(awakeable)

    def completed(self, awakeable: str | None) -> bool:
        """Whether `awakeable` was resolved or rejected."""
        return awakeable is not None and awakeable in self.completions

    def take_delayed(self, invocation_id: str) -> Delayed | None:
        """Remove and return the delayed message `invocation_id`, if it is one."""
        return self.delayed.pop(invocation_id, None)

    def resume(self, invocation_id: str) -> None:
        """The suspended invocation runs again: its timer no longer matters (its wait ends when it finishes)."""
        self.timers.cancel(invocation_id)

    def forget(self, invocation_id: str) -> None:
        """Drop the wait of an invocation (or delayed message) that finished."""
        self.suspended.pop(invocation_id, None)
        self.delayed.pop(invocation_id, None)
        self.woken_by.pop(invocation_id, None)
        self.timers.cancel(invocation_id)

    def wake_resolved(self) -> None:
        """Make every suspended invocation whose awakeable is already completed due now (after a restore)."""
        for invocation_id, wait in self.suspended.items():
            if self.completed(wait.awakeable):
                self.timers.schedule(invocation_id, 0)
