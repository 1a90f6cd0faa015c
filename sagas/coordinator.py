"""The saga coordinator: a virtual object keyed by saga id, driven one group of steps at a time.

Handlers:
- ``start`` (the saga's input): records `SagaStarted` and sends the first ``advance``.
- ``advance``: runs the next group of actions (or of compensations, in reverse order), records
  the outcome as events, and sends itself the next ``advance``. Each invocation commits its
  events together with that message, so progress is visible and a crash loses at most the
  group in flight, whose finished attempts replay from the journal.
- ``park``: sent when the saga gets stuck; it fails for good while the saga is still stuck, so
  the runtime dead-letters it. (A failed invocation commits no events, which is why `SagaStuck`
  is recorded by the ``advance`` that failed, and the dead letter comes from this second one.)
- ``retry``: an operator resumes a stuck saga (`tether saga retry`).
- ``cancel``: an operator cancels the saga as a whole (`tether saga cancel`): `SagaCancelled`
  is recorded and the next ``advance`` compensates the completed steps in reverse order. It
  runs between two ``advance`` invocations (one group each), so no step starts after it.
- ``status`` (shared): the saga's state.

Every attempt of an action or compensation is one journaled step named ``{step}:{phase}``: it
runs the function (after the backoff of the previous attempt) and records the outcome, success
or error, as data. Retries are decided here from journaled outcomes only, so a replay takes the
same decisions. Attempts of a parallel group go in rounds, each round starting its steps in
definition order: the journal is matched by position, and this keeps positions deterministic.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from actors import ObjectContext, RetryPolicy, TerminalError, VirtualObject
from actors.clock import clock
from actors.errors import InvocationCancelledError
from actors.observability.redaction import redact

from .events import (
    FOLDS,
    Attempt,
    CompensationFailed,
    CompensationSucceeded,
    ErrorInfo,
    Phase,
    SagaCancelled,
    SagaCompensated,
    SagaCompleted,
    SagaResumed,
    SagaStarted,
    SagaState,
    SagaStatus,
    SagaStuck,
    StepFailed,
    StepPlan,
    StepState,
    StepSucceeded,
    event_name,
)
from .results import StepResults

if TYPE_CHECKING:
    from .definitions import Saga, Step

NO_RETRY = RetryPolicy(max_attempts=1)
"""The journaled step never retries by itself: an attempt's failure is a recorded outcome."""
DURABLE_BACKOFF = 1.0
"""Backoffs this long (seconds, before jitter) are durable timers (`ctx.sleep`): the coordinator
leaves memory while it waits, and a restart waits only for what is left. Shorter ones sleep
inside the next attempt's journaled step."""


class Advance(BaseModel):
    """Run the next group. Ignored unless `seq` is the saga's current one (a stale nudge)."""

    seq: int


class Park(BaseModel):
    """Dead-letter a stuck saga: the failure an operator sees."""

    round: int
    """`SagaState.resumes` when the saga got stuck; a later round makes this message moot."""
    phase: Phase
    steps: list[str]
    reason: str


class StatusQuery(BaseModel):
    """Ask for the saga's state."""


class RetryRequest(BaseModel):
    """Resume a stuck saga: its compensation, or the failed step, after the cause is fixed."""


class RetryResult(BaseModel):
    """What `retry` did."""

    resumed: bool
    """True when a stuck saga was resumed (or a stalled one nudged)."""
    status: SagaStatus
    """The saga's status afterwards."""
    message: str
    """A sentence for the operator."""


class CancelRequest(BaseModel):
    """Cancel a saga as a whole: compensate what completed, start no more steps."""

    by: str
    """Who cancels (``user@host``), recorded with the cancellation."""
    reason: str
    """Why, recorded and shown by `tether saga show`."""


class CancelResult(BaseModel):
    """What `cancel` did."""

    cancelled: bool
    """True when this request cancelled the saga."""
    status: SagaStatus
    """The saga's status afterwards."""
    message: str
    """A sentence for the operator."""


class Outcome(BaseModel):
    """One attempt, as journaled."""

    ok: bool
    result: Any = None
    error: ErrorInfo | None = None
    retry_after: float | None = None
    started: datetime
    ended: datetime


def _now() -> datetime:
    return datetime.fromtimestamp(clock().time(), tz=UTC)


def _error(exc: BaseException, policy: RetryPolicy, timeout: float | None) -> ErrorInfo:
    message = redact(str(exc))  # kept in the saga's events and shown by `tether saga show`
    if isinstance(exc, TimeoutError) and not message:
        message = f"attempt timed out after {timeout} s"
    return ErrorInfo(type=type(exc).__name__, message=message[:2000], retryable=policy.retries(exc))


class _Unit:
    """The outcome of one step in one invocation: its attempts and how it ended."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []
        self.last: Outcome | None = None

    @property
    def ok(self) -> bool:
        return self.last is not None and self.last.ok


async def _attempt(
    ctx: ObjectContext[SagaState],
    saga: Saga[Any],
    step: Step[Any, Any],
    phase: Phase,
    previous: Outcome | None,
    attempt: int,
) -> Outcome:
    """One journaled attempt of `step`'s action or compensation (after `previous`'s backoff)."""
    state = ctx.state
    key = state.effect_key(step.name, phase)
    if phase == "action":
        policy, timeout = step.retry, step.timeout
    else:
        assert step.compensation is not None
        policy, timeout = step.compensation.retry, step.compensation.timeout
    payload = saga.input_type.model_validate(state.input)
    if phase == "action" and step.wants_results:
        results = StepResults(state.model_copy(deep=True), {s.name: s for s in saga.steps})
        call: Any = lambda: step(payload, key, results)  # noqa: E731
    elif phase == "action":
        call = lambda: step(payload, key)  # noqa: E731
    else:
        assert step.compensation is not None
        done = state.step(step.name)
        # An uncertain step (it timed out) has no result: its compensation gets None.
        comp, prior = step.compensation, None if done.status == "failed" else step.revive(done.result)
        call = lambda: comp(payload, prior, key)  # noqa: E731

    async def once() -> Outcome:
        if previous is not None:
            # The backoff lives inside the journaled step: a replay skips it with the attempt.
            await clock().sleep(policy.delay(attempt - 1, previous.retry_after))
        started = _now()
        try:
            pending = call()
            value = await (clock().within(pending, timeout) if timeout else pending)
            result = _check_result(step, phase, value)
        except Exception as exc:
            ended = _now()
            error = _error(exc, policy, timeout)
            ctx.logger.warning(
                "saga %s: %s %s attempt %d failed: %s: %s",
                state.saga_id,
                step.name,
                phase,
                attempt,
                error.type,
                error.message,
            )
            return Outcome(
                ok=False,
                error=error,
                retry_after=getattr(exc, "retry_after", None),
                started=started,
                ended=ended,
            )
        return Outcome(ok=True, result=result, started=started, ended=_now())

    return await ctx.run(f"{step.name}:{phase}", once, result_type=Outcome, retry=NO_RETRY)


def _check_result(step: Step[Any, Any], phase: Phase, value: Any) -> Any:
    if phase == "compensation" or step.result_type is None:
        return None
    if not isinstance(value, step.result_type):
        # Not retryable: the code returns the wrong thing, and will again.
        raise TerminalError(
            f"step {step.name!r} returned {type(value).__qualname__}, but is annotated to "
            f"return {step.result_type.__qualname__}"
        )
    return value.model_dump(mode="json")


async def _run_group(
    ctx: ObjectContext[SagaState], saga: Saga[Any], steps: list[Step[Any, Any]], phase: Phase
) -> tuple[dict[str, _Unit], list[Step[Any, Any]]]:
    """Attempt every step of a group until each succeeds or fails for good, in rounds.

    Returns the units and the steps left pending: none, unless an operator cancelled the saga
    (`tether saga cancel` interrupts the coordinator) while the group waited between rounds.
    Then no further round starts.
    """
    units = {s.name: _Unit() for s in steps}
    pending = list(steps)
    attempt = 0
    while pending:
        attempt += 1
        backoff = {s.name: units[s.name].last for s in pending}
        if attempt > 1:
            try:
                if await _durable_backoff(ctx, pending, phase, units, attempt):
                    backoff = {}  # waited out: the attempts start at once
                await ctx.check_cancelled()  # before the round: none of its attempts starts
            except InvocationCancelledError:
                if phase == "action":
                    return units, pending
                # Compensations are never cancelled: wait again, then go on.
                if await _durable_backoff(ctx, pending, phase, units, attempt):
                    backoff = {}
        results = await asyncio.gather(
            *(_attempt(ctx, saga, s, phase, backoff.get(s.name), attempt) for s in pending), return_exceptions=True
        )
        # A cancellation restored after a restart may surface in a round's first new attempt.
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, InvocationCancelledError):
                raise result
        cancelled = [s for s, r in zip(pending, results, strict=True) if isinstance(r, InvocationCancelledError)]
        outcomes = [(s, r) for s, r in zip(pending, results, strict=True) if isinstance(r, Outcome)]
        still: list[Step[Any, Any]] = []
        for step, outcome in outcomes:
            unit = units[step.name]
            unit.last = outcome
            unit.attempts.append(Attempt(n=attempt, started=outcome.started, ended=outcome.ended, error=outcome.error))
            policy = _policy(step, phase)
            error = outcome.error
            if not outcome.ok and error is not None and error.retryable and attempt < policy.max_attempts:
                still.append(step)
        if cancelled and phase == "action":
            return units, [s for s in pending if s in cancelled or s in still]
        pending = [s for s in pending if s in cancelled or s in still]
    return units, []


def _policy(step: Step[Any, Any], phase: Phase) -> RetryPolicy:
    if phase == "action":
        return step.retry
    assert step.compensation is not None
    return step.compensation.retry


async def _durable_backoff(
    ctx: ObjectContext[SagaState], pending: list[Step[Any, Any]], phase: Phase, units: dict[str, _Unit], attempt: int
) -> bool:
    """Wait for the round's longest backoff on a durable timer, if it is long; True if it did.

    The choice depends on journaled outcomes only (no jitter), so a replay makes it again; the
    jittered wait itself is journaled by `ctx.sleep`. While waiting, the invocation suspends.
    """

    def after(step: Step[Any, Any]) -> float | None:
        last = units[step.name].last
        return last.retry_after if last is not None else None

    nominal = max(_policy(s, phase).base_delay(attempt - 1, after(s)) for s in pending)
    if nominal < DURABLE_BACKOFF:
        return False
    wait = max(_policy(s, phase).delay(attempt - 1, after(s)) for s in pending)
    ctx.logger.info("saga %s: next %s attempt in %.1f s (durable timer)", ctx.key, phase, wait)
    await ctx.sleep(wait)
    return True


def _interrupted(
    ctx: ObjectContext[SagaState], todo: list[Step[Any, Any]], units: dict[str, _Unit], left: list[Step[Any, Any]]
) -> None:
    """Record a group that a cancellation stopped between rounds.

    Steps that succeeded are recorded so, and so are steps that failed for good; a step left
    pending stays pending, unless an attempt of it timed out and it compensates timeouts (it may
    have taken effect: recorded failed and uncertain, so that the cancellation compensates it).
    None of this starts a compensation: the operator's cancel, queued behind, does.
    """
    state = ctx.state
    for step in todo:
        unit = units[step.name]
        if unit.last is None:
            continue
        if unit.ok:
            ctx.emit(StepSucceeded(step=step.name, result=unit.last.result, attempts=unit.attempts))
            continue
        uncertain = step.compensate_timeouts and _timed_out(state.step(step.name).attempts + unit.attempts)
        if step not in left or uncertain:
            assert unit.last.error is not None
            ctx.emit(
                StepFailed(
                    step=step.name, error=unit.last.error, attempts=unit.attempts, compensate=False, uncertain=uncertain
                )
            )


def _pending_group(saga: Saga[Any], state: SagaState) -> list[Step[Any, Any]] | None:
    for group in saga.groups():
        todo = [s for s in group if state.step(s.name).status == "pending"]
        if todo:
            return todo
    return None


def _due(step: StepState) -> bool:
    """Whether a step is to be compensated: it completed, or it may have taken effect."""
    return step.status == "succeeded" or (step.status == "failed" and step.uncertain)


def _timed_out(attempts: list[Attempt]) -> bool:
    return any(a.error is not None and a.error.type == "TimeoutError" for a in attempts)


def _compensation_group(saga: Saga[Any], state: SagaState) -> list[Step[Any, Any]] | None:
    for group in reversed(saga.groups()):
        todo = [s for s in group if s.compensation is not None and _due(state.step(s.name))]
        if todo:
            return todo
    return None


def _stuck_reason(saga_id: str, phase: Phase, failed: dict[str, ErrorInfo]) -> str:
    what = "compensation of" if phase == "compensation" else "step"
    errors = "; ".join(f"{n}: {e.type}: {e.message}" for n, e in failed.items())
    return (
        f"saga {saga_id}: {what} {', '.join(failed)} failed for good ({errors}). Nothing more "
        f"happens until an operator fixes the cause and runs `tether saga retry {saga_id}`"
    )


def build(saga: Saga[Any]) -> VirtualObject[SagaState]:
    """The coordinator of `saga` (call `Saga.coordinator`, which builds it once)."""
    obj: VirtualObject[SagaState] = VirtualObject(saga.object_name, state=SagaState)
    for event, fold in FOLDS.items():
        obj.on_event(event, name=event_name(event))(fold)

    def plan() -> list[StepPlan]:
        return [
            StepPlan(
                name=s.name,
                group=s.group,
                compensable=s.compensation is not None,
                on_failure=s.on_failure,
            )
            for s in saga.steps
        ]

    async def start(ctx: ObjectContext[SagaState], payload: BaseModel) -> SagaState:
        state = ctx.state
        data = payload.model_dump(mode="json")
        if state.status == "new":
            started = SagaStarted(
                saga_id=ctx.key, saga=saga.name, input=data, steps=plan(), at=ctx.now(), scoped_keys=True
            )
            ctx.emit(started)
            ctx.send(advance_handler, ctx.key, Advance(seq=ctx.state.seq))
            ctx.logger.info("saga %s started", ctx.key)
        elif state.input != data:
            raise TerminalError(f"saga {ctx.key} was already started with another input; use a new saga id")
        return ctx.state

    # The start handler takes the saga's own input model: annotate it at runtime.
    start.__annotations__ = {"ctx": ObjectContext, "payload": saga.input_type, "return": SagaState}
    obj.handler("start")(start)

    async def advance(ctx: ObjectContext[SagaState], cmd: Advance) -> None:
        if cmd.seq != ctx.state.seq:
            return  # stale: another message already moved the saga on
        worked = False
        last = ctx.now()
        while True:
            state = ctx.state
            if state.status == "running":
                todo = _pending_group(saga, state)
                if todo is None:
                    ctx.emit(SagaCompleted(at=last))
                    ctx.logger.info("saga %s completed", ctx.key)
                    return
                if worked:
                    break
                units, interrupted = await _run_group(ctx, saga, todo, "action")
                worked = True
                if interrupted:
                    # Cancelled between rounds: record what completed; the operator's cancel,
                    # queued behind this invocation, compensates it.
                    _interrupted(ctx, todo, units, interrupted)
                    break
                failed: dict[str, ErrorInfo] = {}
                compensate = False
                for step in todo:
                    unit = units[step.name]
                    last = max(last, unit.attempts[-1].ended)
                    if unit.ok:
                        assert unit.last is not None
                        ctx.emit(StepSucceeded(step=step.name, result=unit.last.result, attempts=unit.attempts))
                    else:
                        assert unit.last is not None and unit.last.error is not None
                        failed[step.name] = unit.last.error
                        compensate = compensate or step.on_failure == "compensate"
                for step in todo:
                    if step.name in failed:
                        attempts = units[step.name].attempts
                        ctx.emit(
                            StepFailed(
                                step=step.name,
                                error=failed[step.name],
                                attempts=attempts,
                                compensate=compensate,
                                uncertain=step.compensate_timeouts
                                and _timed_out(state.step(step.name).attempts + attempts),
                            )
                        )
                if failed and not compensate:
                    _park(ctx, "action", failed, last)
                    return
                if failed:
                    ctx.logger.warning("saga %s: %s failed; compensating", ctx.key, ", ".join(failed))
            elif state.status == "compensating":
                todo = _compensation_group(saga, state)
                if todo is None:
                    ctx.emit(SagaCompensated(at=last))
                    ctx.logger.info("saga %s compensated", ctx.key)
                    return
                if worked:
                    break
                units, _ = await _run_group(ctx, saga, todo, "compensation")
                worked = True
                failed = {}
                for step in todo:
                    unit = units[step.name]
                    last = max(last, unit.attempts[-1].ended)
                    assert unit.last is not None
                    if unit.ok:
                        ctx.emit(CompensationSucceeded(step=step.name, attempts=unit.attempts))
                    else:
                        assert unit.last.error is not None
                        failed[step.name] = unit.last.error
                        ctx.emit(CompensationFailed(step=step.name, error=unit.last.error, attempts=unit.attempts))
                if failed:
                    _park(ctx, "compensation", failed, last)
                    return
            else:
                return
        ctx.send(advance_handler, ctx.key, Advance(seq=ctx.state.seq))

    def _park(ctx: ObjectContext[SagaState], phase: Phase, failed: dict[str, ErrorInfo], at: datetime) -> None:
        reason = _stuck_reason(ctx.key, phase, failed)
        ctx.emit(SagaStuck(phase=phase, steps=list(failed), reason=reason, at=at))
        ctx.send(
            park_handler,
            ctx.key,
            Park(round=ctx.state.resumes, phase=phase, steps=list(failed), reason=reason),
        )
        ctx.logger.error("%s", reason)

    advance_handler = obj.handler("advance")(advance)

    async def park(ctx: ObjectContext[SagaState], cmd: Park) -> None:
        state = ctx.state
        if state.status == "stuck" and state.resumes == cmd.round:
            # Failing for good is how the runtime records a dead letter an operator sees.
            raise TerminalError(cmd.reason)

    park_handler = obj.handler("park", retry=NO_RETRY)(park)

    async def retry(ctx: ObjectContext[SagaState], cmd: RetryRequest) -> RetryResult:
        state = ctx.state
        if state.status == "stuck":
            phase: Literal["action", "compensation"] = state.stuck.phase if state.stuck else "compensation"
            ctx.emit(SagaResumed(at=ctx.now()))
            ctx.send(advance_handler, ctx.key, Advance(seq=ctx.state.seq))
            ctx.logger.info("saga %s resumed by an operator", ctx.key)
            what = "its compensation" if phase == "compensation" else "the failed step"
            return RetryResult(resumed=True, status=ctx.state.status, message=f"resumed {what}")
        if state.status in ("running", "compensating"):
            # Harmless if the saga is moving: a stale advance is ignored by its seq.
            ctx.send(advance_handler, ctx.key, Advance(seq=state.seq))
            return RetryResult(resumed=True, status=state.status, message=f"nudged a {state.status} saga")
        if state.status == "new":
            return RetryResult(resumed=False, status="new", message="no saga with this id was started")
        return RetryResult(
            resumed=False,
            status=state.status,
            message=f"the saga is {state.status}; nothing to retry",
        )

    obj.handler("retry")(retry)

    async def cancel(ctx: ObjectContext[SagaState], cmd: CancelRequest) -> CancelResult:
        state = ctx.state
        stuck_on_action = state.status == "stuck" and state.stuck is not None and state.stuck.phase == "action"
        if state.status == "running" or stuck_on_action:
            ctx.emit(SagaCancelled(by=cmd.by, reason=cmd.reason, at=ctx.now()))
            ctx.send(advance_handler, ctx.key, Advance(seq=ctx.state.seq))
            ctx.logger.warning("saga %s cancelled by %s: %s", ctx.key, cmd.by, cmd.reason)
            done = [s.name for s in ctx.state.steps if _due(s) and s.compensable]
            undo = f"compensating {', '.join(reversed(done))}" if done else "no completed step to compensate"
            return CancelResult(cancelled=True, status=ctx.state.status, message=f"cancelled; {undo}")
        if state.status == "new":
            return CancelResult(cancelled=False, status="new", message="no saga with this id was started")
        if state.status == "compensating":
            # The cancellation may have stopped the advance queued before this: nudge (a stale
            # advance is ignored by its seq), so the compensation goes on.
            ctx.send(advance_handler, ctx.key, Advance(seq=state.seq))
        if state.cancelled is not None:
            who = state.cancelled
            return CancelResult(
                cancelled=False, status=state.status, message=f"cancelled before by {who.by}: {who.reason}"
            )
        return CancelResult(
            cancelled=False, status=state.status, message=f"the saga is {state.status}; nothing to cancel"
        )

    obj.handler("cancel", retry=NO_RETRY)(cancel)

    async def status(ctx: ObjectContext[SagaState], query: StatusQuery) -> SagaState:
        return ctx.state

    obj.handler("status", kind="shared")(status)
    return obj
