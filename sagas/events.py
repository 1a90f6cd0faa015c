"""A saga's events and the state they fold into: the coordinator's whole memory.

The folds are pure and know nothing of the saga's definition, so operators' tools rebuild any
saga from the log (`sagas.inspect`) without importing the code that defined it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from eventstore import Codec

SagaStatus = Literal["new", "running", "compensating", "completed", "compensated", "cancelled", "stuck"]
"""Where a saga is. `completed`, `compensated`, `cancelled` (an operator cancelled it and its
completed steps were compensated) are final; `stuck` waits for an operator."""
StepStatus = Literal["pending", "succeeded", "failed", "compensated", "compensation_failed"]
"""Where one step is. A step that failed is not compensated (it did not complete), unless its
outcome is uncertain (`StepState.uncertain`)."""
Phase = Literal["action", "compensation"]
"""Which half of a step."""

FINAL: frozenset[str] = frozenset({"completed", "compensated", "cancelled"})
"""Statuses a saga never leaves."""
SETTLED: frozenset[str] = FINAL | {"stuck"}
"""Statuses in which nothing happens until an operator acts (`SagaHandle.result` returns)."""

R = TypeVar("R")


class ErrorInfo(BaseModel):
    """An exception as data."""

    type: str
    """The exception class name."""
    message: str
    """Its message."""
    retryable: bool = False
    """Whether the step's retry policy would retry it."""


class Attempt(BaseModel):
    """One execution of an action or a compensation."""

    n: int
    """1-based attempt number within its round (a resumed saga starts a new round)."""
    started: datetime
    """Wall-clock start (UTC), journaled: the same on every replay."""
    ended: datetime
    """Wall-clock end (UTC)."""
    error: ErrorInfo | None = None
    """Why it failed; None when it succeeded."""

    @property
    def seconds(self) -> float:
        """How long it ran."""
        return (self.ended - self.started).total_seconds()


class StepPlan(BaseModel):
    """A step as the saga was started with it."""

    name: str
    """The step's name."""
    group: int
    """Steps of one group run in parallel; groups run in order."""
    compensable: bool
    """Whether the step has a compensation."""
    on_failure: Literal["compensate", "park"] = "compensate"
    """What a failure for good leads to."""


class StepState(BaseModel):
    """What the saga knows of one step."""

    name: str
    """The step's name."""
    group: int
    """Its group (position in the saga)."""
    compensable: bool
    """Whether it has a compensation."""
    on_failure: Literal["compensate", "park"] = "compensate"
    """What its failure leads to."""
    status: StepStatus = "pending"
    """Where it is."""
    result: Any = None
    """The action's result as JSON-like data (see `SagaState.result` for the typed value)."""
    error: ErrorInfo | None = None
    """Why the action failed for good."""
    uncertain: bool = False
    """The action failed for good, but an attempt timed out and may have taken effect; the
    step declared ``compensate_timeouts``, so it is compensated like a completed one."""
    attempts: list[Attempt] = Field(default_factory=list)
    """Every attempt of the action, over all rounds."""
    compensation_error: ErrorInfo | None = None
    """Why the compensation failed for good (last round)."""
    compensation_attempts: list[Attempt] = Field(default_factory=list)
    """Every attempt of the compensation, over all rounds."""


class StuckInfo(BaseModel):
    """Why a saga waits for an operator."""

    phase: Phase
    """`action`: a step that must not be compensated failed; `compensation`: a compensation did."""
    steps: list[str]
    """The steps that failed."""
    reason: str
    """A sentence for the operator."""
    at: datetime
    """When it got stuck."""


class CancelInfo(BaseModel):
    """Who cancelled a saga, when and why (`tether saga cancel`)."""

    by: str
    """The operator (``user@host``)."""
    reason: str
    """Why, as they said it."""
    at: datetime
    """When the coordinator took the cancellation."""


class SagaState(BaseModel):
    """The coordinator's state: a saga, rebuilt from its events."""

    saga_id: str = ""
    """The saga's id (the coordinator's key)."""
    saga: str = ""
    """The definition's name."""
    status: SagaStatus = "new"
    """Where the saga is."""
    input: Any = None
    """The input as JSON-like data."""
    steps: list[StepState] = Field(default_factory=list)
    """Every step, in definition order."""
    started_at: datetime | None = None
    """When it started."""
    ended_at: datetime | None = None
    """When it completed or finished compensating."""
    failed_step: str | None = None
    """The step whose failure started the compensation."""
    failure: ErrorInfo | None = None
    """That step's error."""
    stuck: StuckInfo | None = None
    """Set while the saga is stuck."""
    cancelled: CancelInfo | None = None
    """Set once an operator cancelled the saga: it compensates, then ends `cancelled`."""
    resumes: int = 0
    """How often an operator resumed it."""
    seq: int = 0
    """Events folded so far; drive messages carry it so that stale ones are ignored."""
    scoped_keys: bool = False
    """Whether effect keys name the saga type (sagas started since Tether 0.2)."""

    def effect_key(self, step: str, phase: str) -> str:
        """The idempotency key a step's action or compensation gets: unique per saga session."""
        return effect_key(self.saga_id, step, phase, saga=self.saga if self.scoped_keys else None)

    def step(self, name: str) -> StepState:
        """The step called `name`.

        Raises:
            KeyError: the saga has no such step.
        """
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"saga {self.saga!r} has no step {name!r}")

    @property
    def compensated_steps(self) -> list[str]:
        """Steps whose compensation took effect."""
        return [s.name for s in self.steps if s.status == "compensated"]

    @property
    def settled(self) -> bool:
        """Final, or stuck: nothing happens until an operator acts."""
        return self.status in SETTLED


def effect_key(saga_id: str, step: str, phase: str, *, saga: str | None = None) -> str:
    """The idempotency key of a step's action or compensation: ``{saga}/{saga_id}:{step}:{phase}``.

    The saga type is part of the key, so two saga types run under one id (a booking and a refund
    of order 7) never share an effect key. Without `saga`, the Tether 0.1 form
    ``{saga_id}:{step}:{phase}`` (sagas started before 0.2 keep it to the end).
    """
    prefix = f"{saga}/{saga_id}" if saga is not None else saga_id
    return f"{prefix}:{step}:{phase}"


# -- events ---------------------------------------------------------------------------------
class SagaStarted(BaseModel):
    """A saga was started with this input and these steps."""

    saga_id: str
    saga: str
    input: Any
    steps: list[StepPlan]
    at: datetime
    scoped_keys: bool = False
    """Effect keys name the saga type (``{saga}/{saga_id}:{step}:{phase}``); sagas started by
    Tether 0.1 lack the field and keep their ``{saga_id}:{step}:{phase}`` keys to the end."""


class StepSucceeded(BaseModel):
    """A step's action took effect."""

    step: str
    result: Any
    attempts: list[Attempt]


class StepFailed(BaseModel):
    """A step's action failed for good (fatal error or retries exhausted)."""

    step: str
    error: ErrorInfo
    attempts: list[Attempt]
    compensate: bool
    """True: the saga now compensates; False: it parks (see `SagaStuck`)."""
    uncertain: bool = False
    """An attempt timed out and the step compensates timeouts: compensate it too."""


class CompensationSucceeded(BaseModel):
    """A step's compensation took effect."""

    step: str
    attempts: list[Attempt]


class CompensationFailed(BaseModel):
    """A step's compensation failed for good; `SagaStuck` follows."""

    step: str
    error: ErrorInfo
    attempts: list[Attempt]


class SagaCompleted(BaseModel):
    """Every step took effect."""

    at: datetime


class SagaCompensated(BaseModel):
    """A step failed and every completed step was compensated."""

    at: datetime


class SagaStuck(BaseModel):
    """The saga cannot go on by itself; it is dead-lettered for an operator."""

    phase: Phase
    steps: list[str]
    reason: str
    at: datetime


class SagaCancelled(BaseModel):
    """An operator cancelled the saga (`tether saga cancel`).

    No step starts any more, and the completed ones are compensated in reverse order.
    """

    by: str
    reason: str
    at: datetime


class SagaResumed(BaseModel):
    """An operator resumed a stuck saga (`tether saga retry`)."""

    at: datetime


# -- folds ----------------------------------------------------------------------------------
def _started(state: SagaState, e: SagaStarted) -> None:
    state.saga_id, state.saga, state.input, state.started_at = e.saga_id, e.saga, e.input, e.at
    state.scoped_keys = e.scoped_keys
    state.steps = [
        StepState(name=p.name, group=p.group, compensable=p.compensable, on_failure=p.on_failure) for p in e.steps
    ]
    state.status = "running"


def _step_succeeded(state: SagaState, e: StepSucceeded) -> None:
    step = state.step(e.step)
    step.status, step.result, step.error = "succeeded", e.result, None
    step.attempts.extend(e.attempts)


def _step_failed(state: SagaState, e: StepFailed) -> None:
    step = state.step(e.step)
    step.status, step.error, step.uncertain = "failed", e.error, e.uncertain
    step.attempts.extend(e.attempts)
    if e.compensate and state.status == "running":
        state.status, state.failed_step, state.failure = "compensating", e.step, e.error


def _compensation_succeeded(state: SagaState, e: CompensationSucceeded) -> None:
    step = state.step(e.step)
    step.status, step.compensation_error = "compensated", None
    step.compensation_attempts.extend(e.attempts)


def _compensation_failed(state: SagaState, e: CompensationFailed) -> None:
    step = state.step(e.step)
    step.status, step.compensation_error = "compensation_failed", e.error
    step.compensation_attempts.extend(e.attempts)


def _completed(state: SagaState, e: SagaCompleted) -> None:
    state.status, state.ended_at = "completed", e.at


def _compensated(state: SagaState, e: SagaCompensated) -> None:
    state.status, state.ended_at = ("cancelled" if state.cancelled is not None else "compensated"), e.at


def _cancelled(state: SagaState, e: SagaCancelled) -> None:
    state.cancelled = CancelInfo(by=e.by, reason=e.reason, at=e.at)
    state.status, state.stuck = "compensating", None


def _stuck(state: SagaState, e: SagaStuck) -> None:
    state.status = "stuck"
    state.stuck = StuckInfo(phase=e.phase, steps=e.steps, reason=e.reason, at=e.at)


def _resumed(state: SagaState, e: SagaResumed) -> None:
    if state.stuck is None:
        return
    if state.stuck.phase == "compensation":
        state.status = "compensating"
        for step in state.steps:
            if step.status == "compensation_failed":
                # Due for compensation again: completed (or failed with an uncertain outcome).
                step.status = "failed" if step.uncertain else "succeeded"
    else:
        state.status = "running"
        for step in state.steps:
            if step.status == "failed":
                step.status, step.error, step.uncertain = "pending", None, False
    state.stuck = None
    state.resumes += 1


def _counted(fn: Callable[[SagaState, R], None]) -> Callable[[SagaState, R], None]:
    def fold(state: SagaState, event: R) -> None:
        fn(state, event)
        state.seq += 1

    fold.__name__ = fn.__name__
    return fold


FOLDS: dict[type[BaseModel], Callable[[SagaState, Any], None]] = {
    SagaStarted: _counted(_started),
    StepSucceeded: _counted(_step_succeeded),
    StepFailed: _counted(_step_failed),
    CompensationSucceeded: _counted(_compensation_succeeded),
    CompensationFailed: _counted(_compensation_failed),
    SagaCompleted: _counted(_completed),
    SagaCompensated: _counted(_compensated),
    SagaStuck: _counted(_stuck),
    SagaResumed: _counted(_resumed),
    SagaCancelled: _counted(_cancelled),
}
"""Event type -> fold; each fold also counts the event in `SagaState.seq`."""

EVENT_NAME_PREFIX = "tether.saga."
"""Events are registered as ``tether.saga.<ClassName>``, schema version 1."""


def event_name(event: type[BaseModel]) -> str:
    """The codec name of a saga event type."""
    return EVENT_NAME_PREFIX + event.__name__


def codec() -> Codec:
    """A codec that decodes every saga event (for readers of the log)."""
    c = Codec()
    for event in FOLDS:
        c.register(event, name=event_name(event))
    return c


def apply(state: SagaState, event: BaseModel) -> SagaState:
    """Fold one event into `state` (in place) and return it."""
    FOLDS[type(event)](state, event)
    return state
