"""Test workload for cancellation: a session whose invocation runs before it journals anything,
and a three-step saga whose steps a test can hold or use to cancel it between steps.

`trip` is a -> b -> c, each compensable; b retries after 30 s (a durable backoff).
`HOOKS[step]` (an async function) runs inside that step's action before its effect;
`EFFECTS` lists each effect (``a:action``, ``b:compensation``) as it takes place, so a test
sees order and count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from actors import ObjectContext, RetryPolicy, VirtualObject
from harness.models import Empty
from sagas import Saga


class Trip(BaseModel):
    city: str = "Lyon"


class Ref(BaseModel):
    ref: str


class Gates:
    """Events of the current test's loop (made fresh by `reset`)."""

    entered: asyncio.Event
    release: asyncio.Event


GATES = Gates()
STEPS: list[str] = []
"""Steps of `desk.begin` that really ran."""
EFFECTS: list[str] = []
"""``step:phase`` in the order they took effect."""
HOOKS: dict[str, Callable[[], Awaitable[None]]] = {}
"""By step name: awaited inside its action, before the effect."""


def reset() -> None:
    GATES.entered, GATES.release = asyncio.Event(), asyncio.Event()
    STEPS.clear()
    EFFECTS.clear()
    HOOKS.clear()


desk = VirtualObject("canceldesk", state=Empty)


@desk.handler()
async def begin(ctx: ObjectContext[Empty], req: Empty) -> Empty:
    """Runs a while before its first step: until then, nothing of it is in the log."""
    GATES.entered.set()
    await GATES.release.wait()
    await ctx.run("first", lambda: STEPS.append("first"))
    return Empty()


trip = Saga("canceltrip", input=Trip)


SLOW_RETRY = RetryPolicy(max_attempts=3, initial_interval=30.0, max_interval=60.0)
"""b's retries wait 30 s or more: on a durable timer (the coordinator suspends)."""


def _compensable_step(step: str, retry: RetryPolicy | None = None) -> None:
    """Add `step` to `trip`: its action awaits ``HOOKS[step]`` (if any), then both its action and
    its compensation (``undo_{step}``) record their effect in `EFFECTS`."""

    async def action(t: Trip, key: str) -> Ref:
        hook = HOOKS.get(step)
        if hook is not None:
            await hook()
        EFFECTS.append(f"{step}:action")
        return Ref(ref=step)

    async def compensation(t: Trip, done: Ref, key: str) -> None:
        EFFECTS.append(f"{step}:compensation")

    compensation.__name__ = f"undo_{step}"  # the name the step declares (compensate=...)
    trip.step(step, compensate=compensation.__name__, retry=retry)(action)
    trip.compensation(step)(compensation)


_compensable_step("a")
_compensable_step("b", retry=SLOW_RETRY)
_compensable_step("c")

coordinator = trip.coordinator()
