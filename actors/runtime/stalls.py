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
from dataclasses import dataclass, field

from eventstore.lifecycle import cancel_and_wait

from ..observability.metrics import METRICS

log = logging.getLogger(__name__)


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
            late = time.monotonic() - before - tick
            if late >= self.threshold:
                self.observe(late)

    def observe(self, late: float) -> None:
        """Record (and log) a stall of `late` seconds."""
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
        log.warning(
            "the event loop was blocked for %.1f s%s. A handler or step is running blocking code: "
            "await it with asyncio.to_thread (or use an async library)",
            late,
            risk,
        )
