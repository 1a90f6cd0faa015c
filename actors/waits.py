"""Durable waits: suspended invocations, messages queued behind them, delayed messages, timers.

A waiting invocation holds no coroutine and no stack: it raises `Suspended`, the processor writes
a ``sus`` entry (the message itself, so the inbox offset can move on) and forgets the call. When
its timer fires or its awakeable is resolved, the handler runs again from the start and replays
its journal up to the wait, which now returns. Messages that arrive for a waiting session are
written to the events log as ``q`` entries (the session's queue survives any restart), and
``send(..., delay=...)`` messages as ``dly`` entries with their due time.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eventstore.codec import pack

from .messages import Message

SLEEP_STEP = "sleep"


class Suspended(BaseException):  # noqa: N818 - control flow, not an error
    """The invocation waits (a timer or an awakeable); the runtime resumes it later.

    Do not catch this: the handler runs again from its journal when the wait is over.
    """

    def __init__(self, *, wake_ms: int | None = None, awakeable: str | None = None) -> None:
        super().__init__("invocation suspended")
        self.wake_ms = wake_ms
        self.awakeable = awakeable


@dataclass
class Suspension:
    """One suspended invocation."""

    message: Message
    offset: int
    wake_ms: int | None
    awakeable: str | None
    emitted: int = 0
    """Events the invocation emitted (and committed) before it suspended."""
    parked: bool = False
    """Not an invocation: a session parked behind its dead letter (resolving it unparks)."""


def now_ms() -> int:
    """Wall-clock milliseconds (timers are wall-clock: they must survive restarts)."""
    return int(time.time() * 1000)


def suspend_entry(
    message: Message,
    offset: int,
    wake_ms: int | None,
    awakeable: str | None,
    events: list[Any],
    emitted: int,
    version: int,
    *,
    parked: bool = False,
) -> bytes:
    """Events-topic value: an invocation waits; the events it emitted so far commit with it.

    `events` are the ones new since its last suspension, `emitted` counts all so far (a resumed
    run skips that many `emit` calls), `version` is the session's version after them.
    """
    return pack(
        {
            "k": "sus",
            "i": message.id,
            "m": message.model_dump(by_alias=True),
            "o": offset,
            "t": wake_ms,
            "a": awakeable,
            "ev": events,
            "ne": emitted,
            "sv": version,
            "pk": parked,
        }
    )


def queued_entry(message: Message, offset: int) -> bytes:
    """Events-topic value: a message waits behind a suspended invocation of its session."""
    return pack({"k": "q", "i": message.id, "m": message.model_dump(by_alias=True), "o": offset})


def delayed_entry(message: Message, offset: int, due_ms: int) -> bytes:
    """Events-topic value: a message to deliver at `due_ms`."""
    return pack({"k": "dly", "i": message.id, "m": message.model_dump(by_alias=True), "o": offset, "t": due_ms})


def completion_entry(invocation_id: str, awakeable_id: str, reply: dict[str, Any]) -> bytes:
    """Events-topic value: an awakeable was resolved (``ok``) or rejected (``err``)."""
    return pack({"k": "awk", "i": invocation_id, "id": awakeable_id, **reply})


def awakeable_id(object_name: str, key: str, invocation_id: str, n: int) -> str:
    """An awakeable's id: it names the session, so a resolution can be routed to it."""
    return f"awk:{object_name}/{key}#{invocation_id}#{n}"


def parse_awakeable_id(awk_id: str) -> tuple[str, str, str]:
    """(object, key, invocation id) of an awakeable id; ValueError if malformed."""
    if not awk_id.startswith("awk:"):
        raise ValueError(f"{awk_id!r} is not an awakeable id (they start with 'awk:')")
    session, invocation, _ = awk_id[4:].rsplit("#", 2)
    object_name, key = session.split("/", 1)
    return object_name, key, invocation


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` up to `timeout` s; True if it was set.

    Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that arrives just as the
    event is set, and a loop cancelled that way (a stopping processor) never ends.
    """
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return bool(done)


class Timers:
    """Wall-clock timers keyed by id; `on_due(id)` is called once per scheduling, in due order."""

    def __init__(self, on_due: Callable[[str], None]) -> None:
        self._on_due = on_due
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

    def start(self) -> None:
        """Run the timer loop."""
        self._task = asyncio.create_task(self._run(), name="tether-timers")

    async def stop(self) -> None:
        """Stop the loop (timers are durable elsewhere; nothing is lost)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

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
            await wait_event(self._changed, min(wait, 3600.0))
