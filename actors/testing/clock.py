"""A virtual clock: time moves only when a test moves it (or a test kit skips to the next timer).

Installed with `actors.clock.install`, it stands in for the wall clock everywhere the runtime
measures application time: durable timers (`ctx.sleep`, awakeable timeouts, deadlines,
`send(..., delay=)`), retry backoffs, step timeouts and circuit breakers. Waits on it are
futures in a heap; `advance_to` resolves the due ones in due order.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable
from typing import Any, TypeVar

from actors.clock import Clock
from eventstore.lifecycle import cancel_and_wait

T = TypeVar("T")

START_MS = 1_767_225_600_000
"""Where a virtual clock starts unless told: 2026-01-01T00:00:00Z."""


class VirtualClock(Clock):
    """Application time under a test's control, starting at `start_ms`."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self._now = start_ms
        self._heap: list[tuple[int, int, asyncio.Future[None], bool]] = []
        self._seq = itertools.count()

    # -- reading -----------------------------------------------------------------------------
    def now_ms(self) -> int:
        """Virtual milliseconds since the epoch."""
        return self._now

    def time(self) -> float:
        """Virtual seconds since the epoch."""
        return self._now / 1000

    def monotonic(self) -> float:
        """Virtual seconds (the same scale as `time`)."""
        return self._now / 1000

    # -- waiting -----------------------------------------------------------------------------
    def _timer(self, seconds: float, *, blocking: bool) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        due = self._now + max(0, round(seconds * 1000))
        heapq.heappush(self._heap, (due, next(self._seq), future, blocking))
        return future

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has moved `seconds` on (a retry's backoff blocks on this)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        timer = self._timer(seconds, blocking=True)
        try:
            await timer
        finally:
            timer.cancel()

    async def wait_event(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait for `event` until the clock has moved `timeout` s on; True if it was set."""
        if event.is_set():
            return True
        waiter: asyncio.Future[Any] = asyncio.ensure_future(event.wait())
        timer: asyncio.Future[Any] = self._timer(timeout, blocking=False)
        try:
            await asyncio.wait({waiter, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            timer.cancel()
        return event.is_set()

    async def wait_done(self, task: asyncio.Future[T], timeout: float | None) -> bool:
        """Wait until `task` is done or the clock moved `timeout` s on; True if it is done."""
        if timeout is None:
            await asyncio.wait({task})
            return True
        timer: asyncio.Future[Any] = self._timer(timeout, blocking=False)
        try:
            await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        return task.done()

    async def within(self, awaitable: Awaitable[T], seconds: float) -> T:
        """The result of `awaitable`, or `TimeoutError` once the clock moved `seconds` on."""
        task = asyncio.ensure_future(awaitable)
        try:
            if await self.wait_done(task, seconds):
                return task.result()
        except asyncio.CancelledError:
            task.cancel()
            raise
        await cancel_and_wait(task)
        raise TimeoutError(f"not done within {seconds} s (virtual)")

    # -- moving ------------------------------------------------------------------------------
    def _prune(self) -> None:
        while self._heap and self._heap[0][2].done():
            heapq.heappop(self._heap)

    @property
    def blocked(self) -> int:
        """Waits that hold up their task until the clock moves (backoffs, not watchdogs)."""
        return sum(1 for _, _, future, blocking in self._heap if blocking and not future.done())

    def next_blocking_ms(self) -> int | None:
        """When the earliest wait that holds up a task ends, if any."""
        due = [d for d, _, future, blocking in self._heap if blocking and not future.done()]
        return min(due) if due else None

    def next_ms(self) -> int | None:
        """When the earliest wait of any kind ends, if any."""
        self._prune()
        return self._heap[0][0] if self._heap else None

    def advance_to(self, ms: int) -> int:
        """Move the clock to `ms` (never back) and end every wait due by then; returns how many."""
        self._now = max(self._now, ms)
        fired = 0
        while self._heap and self._heap[0][0] <= self._now:
            _, _, future, _ = heapq.heappop(self._heap)
            if not future.done():
                future.set_result(None)
                fired += 1
        return fired
