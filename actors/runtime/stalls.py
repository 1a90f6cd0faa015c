"""Noticing a blocked event loop: handler code that computes or does I/O without awaiting.

A worker's heartbeats to the Kafka group run on the same event loop as its handlers. A handler
that blocks the loop for longer than the group's session timeout makes the broker declare the
worker dead and move its partitions, then the next owner may block too: a rebalance storm in
which nothing commits. The watchdog makes that visible in the log, naming the cure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from eventstore.lifecycle import cancel_and_wait

from ..observability.metrics import METRICS

log = logging.getLogger(__name__)

_SECTIONS: deque[tuple[float, float, str]] = deque(maxlen=64)
"""The runtime's own synchronous sections that ended lately: (start, end, what), monotonic."""


@contextmanager
def runtime_section(what: str) -> Iterator[None]:
    """Mark synchronous work of Tether's own, with no handler code inside (`what` names it).

    A stall that this work takes most of is reported as the runtime's, not blamed on a handler
    (the warning otherwise tells the user to fix blocking code in their handlers).
    """
    start = time.monotonic()
    try:
        yield
    finally:
        _SECTIONS.append((start, time.monotonic(), what))


def _runtime_share(since: float, until: float) -> tuple[str, float] | None:
    """The runtime's section that ran longest between `since` and `until`, and for how long."""
    best: tuple[str, float] | None = None
    for start, end, what in list(_SECTIONS):
        overlap = min(end, until) - max(start, since)
        if overlap > 0 and (best is None or overlap > best[1]):
            best = (what, overlap)
    return best


@dataclass
class LoopWatchdog:
    """Sleeps in short ticks and warns when a tick comes back late by `threshold` seconds."""

    threshold: float
    """Lateness (seconds) worth a warning."""
    session_timeout: float | None = None
    """The group's session timeout (seconds), to say how close the stall came to it."""
    stalls: int = 0
    """Stalls seen so far."""
    longest: float = 0.0
    """The longest stall seen, in seconds."""
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    def start(self) -> None:
        """Begin watching the running loop."""
        self._task = asyncio.create_task(self._watch(), name="tether-loop-watchdog")

    async def stop(self) -> None:
        """Stop watching."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _watch(self) -> None:
        tick = max(0.05, self.threshold / 4)
        while True:
            before = time.monotonic()
            await asyncio.sleep(tick)
            now = time.monotonic()
            late = now - before - tick
            if late >= self.threshold:
                self.observe(late, since=before, until=now)

    def observe(self, late: float, since: float | None = None, until: float | None = None) -> None:
        """Record (and log) a stall of `late` seconds, seen between `since` and `until` (monotonic)."""
        self.stalls += 1
        self.longest = max(self.longest, late)
        if METRICS.enabled:
            METRICS.stall(late)
        risk = ""
        if self.session_timeout is not None:
            risk = (
                f"; heartbeats stop meanwhile, and at {self.session_timeout:.0f} s the group gives this "
                "worker's partitions to another"
            )
        own = _runtime_share(since, until) if since is not None and until is not None else None
        if own is not None and own[1] >= late / 2:
            log.warning(
                "the event loop was blocked for %.1f s%s, by Tether's own work (%s, %.1f s of it), not "
                "by a handler; if it recurs, raise kafka.session_timeout_ms or report it",
                late,
                risk,
                own[0],
                own[1],
            )
            return
        log.warning(
            "the event loop was blocked for %.1f s%s. A handler or step is running blocking code: "
            "await it with asyncio.to_thread (or use an async library)",
            late,
            risk,
        )
