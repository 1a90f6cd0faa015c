"""Saga definitions: ordered, named steps, each an action and the compensation that undoes it.

Example::

    booking = Saga("booking", input=Trip)

    @booking.step("flight", compensate="cancel_flight", timeout=5)
    async def book_flight(trip: Trip, key: str) -> FlightRef: ...

    @booking.compensation("flight")
    async def cancel_flight(trip: Trip, flight: FlightRef, key: str) -> None: ...

    booking.parallel("hotel", "car")      # consecutive steps that run side by side
    coordinator = booking.coordinator()   # the VirtualObject to serve (`tether serve`)
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, get_args, get_type_hints

from pydantic import BaseModel

from actors import Handler, RetryPolicy, UsageError, VirtualObject

from .events import Phase, SagaState, effect_key
from .results import StepResults

if TYPE_CHECKING:
    from .coordinator import Advance, CancelRequest, CancelResult, Park, RetryRequest, RetryResult, StatusQuery

I = TypeVar("I", bound=BaseModel)  # noqa: E741 - the saga's input
R = TypeVar("R", bound=BaseModel | None)

OnFailure = Literal["compensate", "park"]

DEFAULT_STEP_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.1, max_interval=2.0)
"""Actions: three attempts, then the saga compensates."""
DEFAULT_COMPENSATION_RETRY = RetryPolicy(max_attempts=5, initial_interval=0.2, max_interval=5.0)
"""Compensations: five attempts, then the saga is stuck and dead-lettered."""

OBJECT_PREFIX = "saga."
"""A saga's coordinator is the session type ``saga.<name>``, keyed by saga id."""


def idempotency_key(saga: str, saga_id: str, step: str, phase: Phase) -> str:
    """The key an action or compensation receives: the same on every attempt and replay.

    Pass it to the outside service (as an ``Idempotency-Key`` header, a request id, a
    conditional write), so that running the effect again changes nothing. It names the saga
    type and id (``{saga}/{saga_id}:{step}:{phase}``), so it is unique per saga session.
    """
    return effect_key(saga_id, step, phase, saga=saga)


def object_name(saga: str) -> str:
    """The coordinator's session type name of the saga called `saga`."""
    return OBJECT_PREFIX + saga


ActionFn = Callable[[I, str], Awaitable[R]] | Callable[[I, str, StepResults], Awaitable[R]]
CompensationFn = Callable[[I, R, str], Awaitable[None]]


@dataclass(eq=False)
class Compensation(Generic[I, R]):
    """Undoes a step: receives the saga's input, the step's result and its own key."""

    step: str
    """The step it undoes."""
    name: str
    """Its name (the function's)."""
    fn: CompensationFn[I, R]
    """The async function."""
    retry: RetryPolicy
    """Attempts before the saga is stuck."""
    timeout: float | None
    """Seconds one attempt may take (None: no limit)."""

    def __call__(self, input: I, result: R, key: str) -> Awaitable[None]:
        """Run the function (the coordinator does this; tests may too)."""
        return self.fn(input, result, key)


@dataclass(eq=False)
class Step(Generic[I, R]):
    """One named step of a saga: an action, its policies, and (optionally) a compensation."""

    saga: str
    """The saga it belongs to."""
    name: str
    """Its name: unique in the saga, part of the idempotency keys and of the journal."""
    fn: ActionFn[I, R]
    """The action."""
    result_type: type[BaseModel] | None
    """The model the action returns (None: it returns nothing)."""
    retry: RetryPolicy
    """Attempts before the step fails for good."""
    timeout: float | None
    """Seconds one attempt may take (None: no limit). A timed-out attempt is retried."""
    compensate: str | None
    """Name of the compensation the step declares (None: nothing to undo)."""
    on_failure: OnFailure
    """``compensate``: undo the completed steps; ``park``: stay stuck until an operator retries
    (for steps past the point of no return, e.g. after the card was charged)."""
    compensate_timeouts: bool
    """Compensate the step even though it failed, when one of its attempts timed out: the
    request may have reached the service and taken effect. Its compensation then receives
    None as the result (and the same key as always, which names the action's effect)."""
    wants_results: bool
    """Whether the action takes a third `StepResults` argument."""
    compensation: Compensation[I, R] | None = None
    """The registered compensation."""
    group: int = field(default=-1)
    """Position of the step's group (assigned when the coordinator is built)."""

    def __call__(self, *args: Any) -> Awaitable[R]:
        """Run the action (the coordinator does this; tests may too)."""
        return self.fn(*args)

    def revive(self, data: Any) -> R:
        """The typed result from its journaled, JSON-like form."""
        if self.result_type is None:
            return None  # type: ignore[return-value]  # R is None for such steps
        return self.result_type.model_validate(data)  # type: ignore[return-value]  # R is result_type


class Saga(Generic[I]):
    """A saga: steps run in order (groups of them in parallel); a failure undoes what completed.

    Every action and compensation runs inside the coordinator as a journaled step, so a worker
    that dies re-runs only what was not yet recorded, and receives the same idempotency key
    (`idempotency_key`) on every attempt: at-least-once execution, once in effect.
    """

    def __init__(
        self,
        name: str,
        *,
        input: type[I],
        retry: RetryPolicy = DEFAULT_STEP_RETRY,
        compensation_retry: RetryPolicy = DEFAULT_COMPENSATION_RETRY,
    ) -> None:
        if not name or "/" in name or ":" in name:
            raise UsageError(f"saga name {name!r} must be non-empty and contain no '/' or ':'")
        if not (isinstance(input, type) and issubclass(input, BaseModel)):
            raise UsageError(f"input of saga {name!r} must be a pydantic model class, got {input!r}")
        self.name = name
        self.input_type: type[I] = input
        self.step_retry = retry
        self.compensation_retry = compensation_retry
        self._steps: dict[str, Step[I, Any]] = {}
        self._parallel: list[list[str]] = []
        self._object: VirtualObject[SagaState] | None = None

    # -- definition ------------------------------------------------------------------------
    @property
    def object_name(self) -> str:
        """The coordinator's session type name, ``saga.<name>``."""
        return object_name(self.name)

    @property
    def steps(self) -> list[Step[I, Any]]:
        """The steps in definition order."""
        return list(self._steps.values())

    def _check_open(self, what: str) -> None:
        if self._object is not None:
            raise UsageError(
                f"saga {self.name!r}: cannot {what} after coordinator() was built; define every step first"
            )

    def step(
        self,
        name: str | None = None,
        *,
        compensate: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        on_failure: OnFailure = "compensate",
        compensate_timeouts: bool = False,
    ) -> Callable[[ActionFn[I, R]], Step[I, R]]:
        """Register the next step's action: ``async def fn(input, key[, results]) -> Model | None``.

        Args:
            name: The step's name (default: the function's).
            compensate: Name of the compensation (registered with `compensation`); None when
                the step has nothing to undo.
            retry: Attempts and backoff of the action (default: the saga's).
            timeout: Seconds one attempt may take; a timeout is retried like any retryable error.
            on_failure: ``compensate`` (default) or ``park`` (see `Step.on_failure`).
            compensate_timeouts: when the step fails for good after an attempt timed out, run
                its compensation too, with None as the result (see `Step.compensate_timeouts`).
                The compensation's result parameter must accept None.

        Raises:
            UsageError: the function is not async, has the wrong parameters or return type, or
                the name is taken.
        """
        self._check_open("add a step")
        if on_failure not in ("compensate", "park"):
            raise UsageError(f"on_failure must be 'compensate' or 'park', got {on_failure!r}")
        if timeout is not None and timeout <= 0:
            raise UsageError(f"timeout must be positive, got {timeout}")
        if compensate_timeouts and compensate is None:
            raise UsageError("compensate_timeouts=True needs a compensation (compensate=...)")

        def decorate(fn: ActionFn[I, R]) -> Step[I, R]:
            step_name = name if name else str(getattr(fn, "__name__", ""))
            where = f"step {self.name}.{step_name}"
            _check_name(step_name, where)
            if step_name in self._steps:
                raise UsageError(f"{where}: the saga already has a step of that name")
            params = _params(fn, where)
            if len(params) not in (2, 3):
                raise UsageError(
                    f"{where} must take (input, key) or (input, key, results), got {len(params)} parameters"
                )
            hints = _hints(fn, where)
            self._check_input(hints.get(params[0]), where)
            result_type = _result_type(hints, where)
            step: Step[I, R] = Step(
                saga=self.name,
                name=step_name,
                fn=fn,
                result_type=result_type,
                retry=retry or self.step_retry,
                timeout=timeout,
                compensate=compensate,
                on_failure=on_failure,
                compensate_timeouts=compensate_timeouts,
                wants_results=len(params) == 3,
            )
            self._steps[step_name] = step
            return step

        return decorate

    def compensation(
        self,
        step: str | Step[I, R],
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> Callable[[CompensationFn[I, R]], Compensation[I, R]]:
        """Register the compensation of `step`: ``async def fn(input, result, key) -> None``.

        The function's name must be the one the step declared with ``compensate=``.

        Raises:
            UsageError: no such step, the step declared another (or no) compensation, or the
                function is not async or has the wrong parameters.
        """
        self._check_open("add a compensation")
        step_name = step if isinstance(step, str) else step.name

        def decorate(fn: CompensationFn[I, R]) -> Compensation[I, R]:
            fn_name = getattr(fn, "__name__", "")
            where = f"compensation {self.name}.{fn_name} of step {step_name!r}"
            target = self._steps.get(step_name)
            if target is None:
                raise UsageError(f"{where}: no such step; define the step first")
            if target.compensate is None:
                raise UsageError(
                    f"{where}: the step declares no compensation; write "
                    f"@{self.name}.step({step_name!r}, compensate={fn_name!r}) so the step "
                    "list shows how it is undone"
                )
            if target.compensate != fn_name:
                raise UsageError(f"{where}: the step declares compensate={target.compensate!r}")
            if target.compensation is not None:
                raise UsageError(f"{where}: the step already has its compensation")
            params = _params(fn, where)
            if len(params) != 3:
                raise UsageError(f"{where} must take (input, result, key), got {len(params)}")
            hints = _hints(fn, where)
            self._check_input(hints.get(params[0]), where)
            result = hints.get(params[1])
            if target.compensate_timeouts and result is not None and not _accepts_none(result):
                raise UsageError(
                    f"{where}: the step compensates timeouts, when there is no result: annotate "
                    f"the result parameter {params[1]!r} as Optional (`... | None`)"
                )
            if timeout is not None and timeout <= 0:
                raise UsageError(f"timeout must be positive, got {timeout}")
            comp: Compensation[I, R] = Compensation(
                step=step_name,
                name=fn_name,
                fn=fn,
                retry=retry or self.compensation_retry,
                timeout=timeout,
            )
            target.compensation = comp
            return comp

        return decorate

    def parallel(self, *steps: str | Step[I, Any]) -> None:
        """Run these steps side by side; they must be consecutive in definition order.

        The saga moves on once all of them are done. If one fails, the others still finish
        (an effect in flight cannot be recalled), then every completed step is compensated;
        compensations of one group also run side by side.
        """
        self._check_open("declare a parallel group")
        names = [s if isinstance(s, str) else s.name for s in steps]
        if len(names) < 2 or len(set(names)) != len(names):
            raise UsageError(f"parallel() needs two or more distinct steps, got {names}")
        order = list(self._steps)
        for n in names:
            if n not in self._steps:
                raise UsageError(f"parallel(): saga {self.name!r} has no step {n!r} (yet)")
            if any(n in g for g in self._parallel):
                raise UsageError(f"parallel(): step {n!r} is already in a parallel group")
        positions = sorted(order.index(n) for n in names)
        if positions != list(range(positions[0], positions[0] + len(names))):
            raise UsageError(f"parallel(): steps {names} must be consecutive in definition order ({order})")
        self._parallel.append([order[p] for p in positions])

    def _check_input(self, annotation: Any, where: str) -> None:
        if annotation is None:
            return
        ok = isinstance(annotation, type) and issubclass(self.input_type, annotation)
        if not ok:
            raise UsageError(
                f"{where}: first parameter is annotated {annotation!r}, but the saga's input is "
                f"{self.input_type.__qualname__}"
            )

    # -- the coordinator -------------------------------------------------------------------
    def groups(self) -> list[list[Step[I, Any]]]:
        """The steps grouped as they run: one group after the other, each group in parallel."""
        out: list[list[Step[I, Any]]] = []
        grouped = {n: g for g in self._parallel for n in g}
        for name, step in self._steps.items():
            group = grouped.get(name)
            if group is not None and group[0] != name:
                continue
            out.append([self._steps[n] for n in group] if group else [step])
        return out

    def coordinator(self) -> VirtualObject[SagaState]:
        """The saga's coordinator: a virtual object ``saga.<name>`` keyed by saga id.

        Serve it like any session type (``Worker([coordinator])``, ``tether serve
        module:coordinator``). Built once; the definition is frozen from then on.

        Raises:
            UsageError: the saga has no steps, or a step lacks the compensation it declares.
        """
        if self._object is None:
            if not self._steps:
                raise UsageError(f"saga {self.name!r} has no steps")
            for step in self._steps.values():
                if step.compensate is not None and step.compensation is None:
                    raise UsageError(
                        f"step {self.name}.{step.name} declares compensate={step.compensate!r} "
                        f"but none is registered; add @{self.name}.compensation({step.name!r})"
                    )
            for index, group in enumerate(self.groups()):
                for step in group:
                    step.group = index
            from .coordinator import build

            self._object = build(self)
        return self._object

    def _handler(self, name: str) -> Handler[SagaState, Any, Any]:
        return self.coordinator().handlers[name]

    @property
    def start(self) -> Handler[SagaState, I, SagaState]:
        """Handler that starts a saga from its input (idempotent per saga id).

        From a session: ``ctx.send(booking.start, saga_id, trip)``, or ``await ctx.call(...)``
        to get the started saga's state.
        """
        return self._handler("start")

    @property
    def status(self) -> Handler[SagaState, StatusQuery, SagaState]:
        """Shared handler returning the saga's state."""
        return self._handler("status")

    @property
    def resume(self) -> Handler[SagaState, RetryRequest, RetryResult]:
        """Handler behind `tether saga retry`: resume a stuck saga (or nudge a stalled one)."""
        return self._handler("retry")

    @property
    def cancel(self) -> Handler[SagaState, CancelRequest, CancelResult]:
        """Handler behind `tether saga cancel`: compensate what completed, start no more steps."""
        return self._handler("cancel")

    @property
    def advance(self) -> Handler[SagaState, Advance, Any]:
        """Internal: runs the next group of actions or compensations."""
        return self._handler("advance")

    @property
    def park(self) -> Handler[SagaState, Park, Any]:
        """Internal: fails for good while the saga is stuck, which dead-letters it."""
        return self._handler("park")

    def __repr__(self) -> str:
        return f"Saga({self.name!r}, steps={[[s.name for s in g] for g in self.groups()]})"


# -- checks ---------------------------------------------------------------------------------
def _check_name(name: str, where: str) -> None:
    if not name or ":" in name or "/" in name or name.startswith("_"):
        raise UsageError(f"{where}: a step name must be non-empty, without ':' or '/', not '_...'")


def _params(fn: Callable[..., Any], where: str) -> list[str]:
    if not inspect.iscoroutinefunction(fn):
        raise UsageError(f"{where} must be an async function")
    return list(inspect.signature(fn).parameters)


def _hints(fn: Callable[..., Any], where: str) -> dict[str, Any]:
    try:
        return get_type_hints(fn)
    except Exception as exc:  # a forward reference that does not resolve
        raise UsageError(f"{where}: cannot resolve its annotations: {exc}") from exc


def _accepts_none(annotation: Any) -> bool:
    return annotation is Any or annotation is type(None) or type(None) in get_args(annotation)


def _result_type(hints: dict[str, Any], where: str) -> type[BaseModel] | None:
    result = hints.get("return", inspect.Signature.empty)
    if result in (None, type(None)):
        return None
    if isinstance(result, type) and issubclass(result, BaseModel):
        return result
    raise UsageError(
        f"{where} must be annotated to return a pydantic model or None, got {result!r}; results are journaled and typed"
    )
