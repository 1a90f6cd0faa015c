"""The runtime's clock: the time that timers, sleeps, deadlines, backoffs and delays are measured in.

Production reads the system clock through `Clock` (one attribute read more than calling
`time.time()` directly). A test kit installs another clock (`actors.testing.VirtualClock`) for
the duration of a test, so a handler that sleeps for a day runs in milliseconds; `install`
returns the clock it replaced, to be put back with `install(previous)`.

The transport's own cadences (fetch polls, offset commits, send watchdogs) stay on real time:
they measure the machine, not the application.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["Clock", "clock", "install", "now_ms", "wait_for_event"]


class Clock:
    """Real time: the wall clock for timestamps and timers, asyncio's for waits."""

    def now_ms(self) -> int:
        """Wall-clock milliseconds since the epoch (timers are wall-clock: they survive restarts)."""
        return int(time.time() * 1000)

    def time(self) -> float:
        """Wall-clock seconds since the epoch, as `time.time()`."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds of a clock that never goes back (for intervals)."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` (a retry's backoff)."""
        await asyncio.sleep(seconds)

    async def wait_event(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait for `event` up to `timeout` s; True if it was set (see `wait_for_event`)."""
        return await wait_for_event(event, timeout)

    async def wait_done(self, task: asyncio.Future[T], timeout: float | None) -> bool:
        """Wait until `task` is done or `timeout` s passed (None: no limit); True if it is done."""
        done, _ = await asyncio.wait({task}, timeout=timeout)
        return bool(done)

    async def within(self, awaitable: Awaitable[T], seconds: float) -> T:
        """The result of `awaitable`, or `TimeoutError` (and its cancellation) after `seconds`."""
        return await asyncio.wait_for(awaitable, seconds)


class _Current:
    __slots__ = ("clock",)

    def __init__(self) -> None:
        self.clock = Clock()


_CURRENT = _Current()


def clock() -> Clock:
    """The clock the runtime reads now."""
    return _CURRENT.clock


def install(new: Clock) -> Clock:
    """Make `new` the runtime's clock; returns the one it replaces."""
    previous, _CURRENT.clock = _CURRENT.clock, new
    return previous


def now_ms() -> int:
    """Milliseconds since the epoch on the runtime's clock."""
    return _CURRENT.clock.now_ms()


async def wait_for_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` up to `timeout` s of real time; True if it was set.

    Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that arrives just as the
    event is set, and a loop cancelled that way (a stopping processor) never ends.
    """
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return bool(done)
