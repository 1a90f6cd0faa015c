"""One invocation of a handler: the context implementation and the step journal.

An invocation knows its partition only through `InvocationHost`: where to make a step durable,
how large a step result may be, which awakeables completed, and the client for calls (as
Restate's server context talks to its VM through one wrapper).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, Unpack

from pydantic import BaseModel

from eventstore.lifecycle import cancel_and_wait

from ..clock import clock, now_ms
from ..context import Awakeable, ObjectContext, StepOptions
from ..definitions import Handler, VirtualObject
from ..errors import (
    BudgetExceededError,
    CircuitOpenError,
    InvocationCancelledError,
    JournalMismatchError,
    StateMutationError,
    StepTimeoutError,
    TerminalError,
    error_payload,
)
from ..observability import tracing
from ..observability.metrics import METRICS
from ..observability.scope import current as current_scope
from ..policies import DEFAULT_RETRY, Budget, RetryPolicy
from ..protocol.awakeables import awakeable_id, cancel_awakeable_id
from ..protocol.entries import Completion, Step
from ..protocol.inbox import Message
from ..protocol.streams import StreamChunk
from .circuits import Breakers
from .step_blobs import StepBlobs
from .step_results import StepResults, declared_type
from .waits import SLEEP_STEP, Suspended

if TYPE_CHECKING:
    from ..client import Client

T = TypeVar("T")
O = TypeVar("O", bound=BaseModel)  # noqa: E741
S = TypeVar("S", bound=BaseModel)

_log = logging.getLogger("tether.handler")

STEP_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.05)
CANCEL_STEP = "cancelled"
"""The journal entry that records where an operator's cancellation reached the invocation."""


class _ReplayQuietAdapter(logging.LoggerAdapter[logging.Logger]):
    """Drops records while the invocation is replaying journaled steps."""

    def __init__(self, logger: logging.Logger, invocation: Invocation[Any]) -> None:
        super().__init__(logger, {})
        self._invocation = invocation

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self._invocation.replaying:
            return
        super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        inv = self._invocation
        kwargs.setdefault("extra", {}).update(
            {"session": inv.message.session, "handler": inv.message.handler, "invocation": inv.invocation_id}
        )
        return msg, kwargs


class StepOverrides(Protocol):
    """Replaces the function of a step by its name: a test kit's stubs and injected failures.

    Consulted only for steps that run live (a journaled step returns its recorded result).
    """

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """The function to run for one live attempt sequence of step `name` instead of `fn`."""
        ...


_NO_LIMIT = 1 << 62
"""The size limit of a step result that may go to the blob store."""


class InvocationHost(Protocol):
    """What an invocation needs of the partition that runs it (the partition processor)."""

    step_overrides: StepOverrides | None
    """Stubs of steps by name (a test kit's; None in production)."""

    @property
    def client(self) -> Client:
        """The client that `ctx.call` goes through."""
        ...

    def step_limit(self, message: Message, index: int) -> int:
        """Bytes step `index` of `message`'s invocation may take as its result."""
        ...

    async def journal_step(self, message: Message, step: Step) -> None:
        """Make `step` durable; returns once it is (raises `PartitionLost` if it cannot be)."""
        ...

    def completion(self, awakeable: str) -> Completion | None:
        """The completion of `awakeable`, if it was resolved or rejected."""
        ...

    @property
    def step_blobs(self) -> StepBlobs | None:
        """Where step results over the threshold go (None: every result in its record)."""
        ...

    async def stream_chunk(self, message: Message, chunk: StreamChunk) -> None:
        """Queue a chunk `message`'s handler streamed for an append (before its commit)."""
        ...


class Invocation(ObjectContext[S]):
    """The context of one attempt of one message."""

    def __init__(
        self,
        host: InvocationHost,
        obj: VirtualObject[S],
        message: Message,
        state: S,
        journal: dict[int, Step],
        attempt: int,
        *,
        check_writes: bool = True,
    ) -> None:
        self._host = host
        self._obj = obj
        self.message = message
        self._logger = _ReplayQuietAdapter(_log, self)
        self._state = state
        self._copied = False
        self._seen: dict[str, Any] | None = None
        """The state as the handler last read it (to catch writes behind the folds' back)."""
        self.check_writes = check_writes
        self._journal = journal
        self._attempt = attempt
        self._run_ms = now_ms()
        self._step = 0
        self._uuids = 0
        self._sends = 0
        self._awakeables = 0
        self._random: random.Random | None = None  # seeded on first use: most handlers never ask
        self._cancel_delivered = False
        self.skip_emits = 0
        self._retries = 0
        self._cost = 0.0
        self.events: list[BaseModel] = []
        self.outgoing: list[Message] = []
        self._streamed = 0

    # -- identity and deterministic helpers ------------------------------------------------
    @property
    def key(self) -> str:
        return self.message.key

    @property
    def invocation_id(self) -> str:
        return self.message.invocation_id

    @property
    def replaying(self) -> bool:
        """Whether the next step is already in the journal."""
        return self._step in self._journal

    # -- streaming ---------------------------------------------------------------------------
    async def stream(self, data: Any) -> None:  # noqa: ANN401 - plain data
        chunk = StreamChunk(self.invocation_id, self._run_ms, self._attempt, self._streamed, data)
        self._streamed += 1
        await self._host.stream_chunk(self.message, chunk)

    @property
    def stream_position(self) -> tuple[int, int, int]:
        """(run, attempt, chunks streamed) of this attempt, for the end of its stream."""
        return (self._run_ms, self._attempt, self._streamed)

    # -- durable waits ----------------------------------------------------------------------
    async def sleep(self, seconds: float) -> None:
        wake_ms = await self.run(SLEEP_STEP, lambda: now_ms() + int(seconds * 1000), result_type=int)
        if now_ms() < wake_ms:
            await self.check_cancelled()
            raise Suspended(wake_ms=wake_ms)

    def awakeable(self, result_type: type[T] | None = None) -> Awakeable[T]:
        self._awakeables += 1
        awk_id = awakeable_id(self.message.object, self.message.key, self.message.id, self._awakeables)
        return _Awakeable(self, awk_id, result_type)

    @property
    def cost(self) -> float:
        """Cost units charged so far by this run (`charge`)."""
        return self._cost

    async def check_cancelled(self) -> None:
        """Raise `InvocationCancelledError` once, if an operator cancelled this invocation.

        Checked where the invocation would do new work or wait (a step not in the journal, a
        sleep, an awakeable not yet completed) and when it starts. The delivery is itself a
        journaled step (`CANCEL_STEP`), so a replay raises at the same point and never again
        after it: a handler that catches the error (a saga coordinator) runs its clean-up steps.
        """
        if self._cancel_delivered:
            return
        recorded = self._journal.get(self._step)
        if recorded is not None:
            if recorded.name != CANCEL_STEP:
                return  # replaying past this point: the cancellation, if any, comes later
            self._step += 1
            self._cancel_delivered = True
            raise InvocationCancelledError((recorded.error or {}).get("message") or "cancelled")
        message = self.message
        cancel = self._host.completion(cancel_awakeable_id(message.object, message.key, message.id))
        if cancel is None:
            return
        reason = (cancel.error or {}).get("message") or "no reason given"
        by = f" by {cancel.by}" if cancel.by else ""
        error = InvocationCancelledError(f"cancelled{by}: {reason}")
        index = self._step
        self._step += 1
        self._cancel_delivered = True
        now = _ms()
        await self._host.journal_step(
            message, Step(message.id, index, CANCEL_STEP, None, error_payload(error), 1, now, now)
        )
        raise error

    def charge(self, cost: float) -> None:
        self._cost += cost
        if not self.replaying:  # a charge the journal shows was made before is not counted twice
            scope = current_scope()
            if scope is not None:
                scope.cost += cost
        budget = self._budget
        if budget is not None and budget.cost is not None and self._cost > budget.cost:
            raise BudgetExceededError(f"cost {self._cost:g} exceeds the invocation budget of {budget.cost:g}")

    @property
    def _budget(self) -> Budget | None:
        handler = self._obj.handlers.get(self.message.handler)
        return handler.budget if handler is not None else None

    def _count_retry(self, step: str) -> None:
        if METRICS.enabled:
            METRICS.step_retry(self._obj.name, step)
        self._retries += 1
        budget = self._budget
        if budget is not None and budget.retries is not None and self._retries > budget.retries:
            raise BudgetExceededError(f"{self._retries} step retries exceed the invocation budget of {budget.retries}")

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.message.timestamp_ms / 1000, tz=UTC)

    def uuid(self) -> uuid.UUID:
        self._uuids += 1
        return uuid.uuid5(uuid.NAMESPACE_URL, f"tether:{self.invocation_id}:{self._uuids}")

    @property
    def random(self) -> random.Random:
        if self._random is None:
            self._random = random.Random(self.invocation_id)
        return self._random

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        return self._logger

    @property
    def attempt(self) -> int:
        return self._attempt

    # -- state and events ------------------------------------------------------------------
    @property
    def state(self) -> S:
        if self.check_writes and self._seen is None:
            self._seen = self._state.model_dump()
        return self._state

    def verify_state(self) -> None:
        """Raise `StateMutationError` if the handler changed `state` itself since it last read it.

        The session's state is put back first, so the failed attempt leaves nothing behind.
        """
        seen = self._seen
        if seen is None or self._state.model_dump() == seen:
            return
        self._seen = None
        if not self._copied:  # the change is in the session's own state object: undo it in place
            clean = type(self._state).model_validate(seen)
            for name, value in clean.__dict__.items():
                object.__setattr__(self._state, name, value)
        raise StateMutationError(
            f"{self._obj.name}.{self.message.handler} changed ctx.state directly; that change is in no "
            "event, so it would be lost on the next restart; emit an event instead (ctx.emit(...)) and "
            f"change state in its fold (@{self._obj.name}.on_event); ctx.state is read-only for handlers"
        )

    def emit(self, event: BaseModel) -> None:
        if type(event) not in self._obj.folds:
            raise TerminalError(
                f"{self._obj.name} emitted {type(event).__qualname__}, which has no fold; "
                f"register one with @{self._obj.name}.on_event"
            )
        if self.skip_emits > 0:
            # Emitted and committed before this invocation last suspended: already in state.
            self.skip_emits -= 1
            return
        self.verify_state()
        if not self._copied:
            # Folds may change state in place: work on a copy so a failed attempt leaves none.
            self._state = self._state.model_copy(deep=True)
            self._copied = True
        self._state = self._obj.fold(self._state, event)
        self._seen = None  # folds change state: the next read takes a new reference copy
        self.events.append(event)

    # -- steps -----------------------------------------------------------------------------
    async def run(
        self, name: str, fn: Callable[[], Awaitable[T]] | Callable[[], T], **options: Unpack[StepOptions[T]]
    ) -> T:
        unknown = options.keys() - StepOptions.__optional_keys__
        if unknown:  # a typed caller cannot get here; an untyped one gets what Python would say
            known = ", ".join(sorted(StepOptions.__optional_keys__))
            raise TypeError(f"run() got unexpected keyword argument(s) {sorted(unknown)} (it takes {known})")
        await self.check_cancelled()
        index = self._step
        self._step += 1
        result_type = options.get("result_type")
        results = StepResults.of(name, result_type if result_type is not None else declared_type(fn))
        recorded = self._journal.get(index)
        if recorded is not None:
            if recorded.name != name:
                raise JournalMismatchError(index=index, recorded=recorded.name, requested=name)
            if recorded.error is not None:
                raise TerminalError(f"step {name!r} failed: {recorded.error['message']}")
            if recorded.blob is not None:
                return results.decode(await self._blob(name, recorded.blob))  # type: ignore[no-any-return]
            return results.decode(recorded.result)  # type: ignore[no-any-return]
        overrides = self._host.step_overrides
        if overrides is not None:
            fn = overrides.wrap(name, fn)
        started = now_ms()
        t0 = time.perf_counter()
        cost_before = self._cost
        span = tracing.step_span(self.message, self._attempt, name, index) if tracing.enabled() else None
        try:
            plain, attempt = await self._execute(name, index, fn, results, started, options)
        except BaseException as exc:
            if METRICS.enabled and not isinstance(exc, asyncio.CancelledError):
                METRICS.step(self._obj.name, name, "error", time.perf_counter() - t0)
            if span is not None:
                error = None if isinstance(exc, asyncio.CancelledError) else exc
                span.end(error, {"tether.cost": self._cost - cost_before})
            raise
        if METRICS.enabled:
            METRICS.step(self._obj.name, name, "ok", time.perf_counter() - t0)
        if span is not None:
            span.end(attributes={"tether.attempts": attempt, "tether.cost": self._cost - cost_before})
        # The live result is decoded from the journaled data, exactly as a replay decodes it.
        return results.decode(plain)  # type: ignore[no-any-return]

    async def _execute(
        self,
        name: str,
        index: int,
        fn: Callable[[], Awaitable[T]] | Callable[[], T],
        results: StepResults,
        started: int,
        options: StepOptions[T],
    ) -> tuple[Any, int]:
        """Run a step that is not in the journal until it succeeds or fails for good; journal it."""
        policy = options.get("retry") or STEP_RETRY
        timeout, heartbeat_timeout = options.get("timeout"), options.get("heartbeat_timeout")
        fallback, fallback_after = options.get("fallback"), options.get("fallback_after", 1)
        circuit = options.get("circuit")
        attempt = 0
        failures = 0
        breaker = Breakers.get(name, circuit) if circuit is not None else None
        current: Callable[..., Any] = fn
        while True:
            attempt += 1
            on_fallback = current is fallback
            try:
                if breaker is not None and not on_fallback:
                    breaker.before_call()
                value = await _attempt(current, timeout, heartbeat_timeout)
                if breaker is not None and not on_fallback:
                    breaker.succeeded()
                # Encoded (and size-checked) inside the attempt: a result that cannot be
                # journaled fails this attempt, under the step's retry policy.
                blobs = self._host.step_blobs
                if blobs is None:
                    plain = results.encode(value, self._host.step_limit(self.message, index))
                    ref = None
                else:  # over the threshold, the result goes to the blob store: no record limit
                    plain = results.encode(value, _NO_LIMIT)
                    ref = await blobs.offload(plain)
                break
            except Exception as exc:
                transient = policy.retries(exc)
                if breaker is not None and not on_fallback and not isinstance(exc, CircuitOpenError):
                    was_open = breaker.opened_at
                    breaker.failed()
                    if METRICS.enabled and breaker.opened_at is not None and breaker.opened_at != was_open:
                        METRICS.circuit_opened(self._obj.name, name)
                failures += 1
                if fallback is not None and not on_fallback and transient and failures >= fallback_after:
                    # A cheaper model, a cached answer: used once the primary kept failing.
                    self.logger.warning("step %s: %r; switching to its fallback", name, exc)
                    current = fallback
                    continue
                delay = policy.next_delay(attempt, exc)
                if delay is not None:
                    self._count_retry(name)
                    self.logger.warning("step %s attempt %d failed: %r; retrying in %.2f s", name, attempt, exc, delay)
                    await clock().sleep(delay)
                    continue
                failed = Step(self.message.id, index, name, None, error_payload(exc), attempt, started, _ms())
                await self._host.journal_step(self.message, failed)
                if isinstance(exc, TerminalError):
                    raise
                raise TerminalError(f"step {name!r} failed after {attempt} attempt(s): {exc!r}") from exc
        journaled = None if ref is not None else plain
        await self._host.journal_step(
            self.message, Step(self.message.id, index, name, journaled, None, attempt, started, _ms(), ref)
        )
        return plain, attempt

    async def _blob(self, name: str, ref: str) -> Any:  # noqa: ANN401 - a step's journal form
        blobs = self._host.step_blobs
        if blobs is None:
            raise TerminalError(
                f"step {name!r} has its result in a blob store ({ref}), but this worker has none: "
                "set TETHER_RUNTIME__BLOB_THRESHOLD_BYTES and TETHER_RUNTIME__BLOB_DIR"
            )
        return await blobs.load(name, ref)

    # -- other sessions --------------------------------------------------------------------
    def send(self, handler: Handler[Any, Any, Any], key: str, payload: BaseModel) -> str:
        self._sends += 1
        message = Message(
            id=f"{self.invocation_id}:send:{self._sends}",
            o=handler.object_name,
            k=key,
            h=handler.name,
            p=payload.model_dump(mode="json"),
            ts=self.message.timestamp_ms,
            tp=tracing.current_traceparent(),
        )
        self.outgoing.append(message)
        return message.id

    async def call(self, handler: Handler[Any, Any, O], key: str, payload: BaseModel) -> O:
        index_id = f"{self.invocation_id}:call:{self._step}"
        client = self._host.client

        async def do_call() -> Any:
            return await client.call(handler, key, payload, idempotency_key=index_id)

        return await self.run(
            f"call {handler.object_name}.{handler.name}",
            do_call,
            result_type=handler.output_type,
            retry=DEFAULT_RETRY,
        )


class _Awakeable(Awakeable[T]):
    def __init__(self, invocation: Invocation[Any], awk_id: str, result_type: type[T] | None) -> None:
        self._invocation = invocation
        self._id = awk_id
        self._type = result_type

    @property
    def id(self) -> str:
        return self._id

    async def result(self, timeout: float | None = None) -> T:
        inv = self._invocation
        deadline: int | None = None
        if timeout is not None:
            deadline = await inv.run(
                f"awakeable-timeout {self._id}", lambda: now_ms() + int(timeout * 1000), result_type=int
            )
        done = inv._host.completion(self._id)
        if done is not None:
            if done.error is not None:
                raise TerminalError(f"awakeable {self._id} was rejected: {done.error['message']}")
            return StepResults.of(f"awakeable {self._id}", self._type).decode(done.result)  # type: ignore[no-any-return]
        if deadline is not None and now_ms() >= deadline:
            raise TerminalError(f"awakeable {self._id} timed out after {timeout} s")
        await inv.check_cancelled()
        raise Suspended(wake_ms=deadline, awakeable=self._id)


def _ms() -> int:
    return now_ms()


async def _attempt(fn: Callable[..., Any], timeout: float | None, heartbeat_timeout: float | None) -> Any:
    """Run one attempt of a step under its timeout and heartbeat watchdog."""
    clk = clock()
    last_beat = clk.monotonic()

    def heartbeat() -> None:
        nonlocal last_beat
        last_beat = clk.monotonic()

    try:
        required = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        wants_heartbeat = len(required) == 1
    except (TypeError, ValueError):  # builtins without a signature
        wants_heartbeat = False
    value = fn(heartbeat) if wants_heartbeat else fn()
    if not inspect.isawaitable(value):
        return value
    task = asyncio.ensure_future(value)
    started = clk.monotonic()
    try:
        while True:
            waits = [timeout - (clk.monotonic() - started)] if timeout else []
            if heartbeat_timeout:
                waits.append(heartbeat_timeout - (clk.monotonic() - last_beat))
            if waits and min(waits) <= 0:
                what = (
                    "stopped heartbeating"
                    if heartbeat_timeout and clk.monotonic() - last_beat >= heartbeat_timeout
                    else "timed out"
                )
                raise StepTimeoutError(f"step attempt {what}")
            if await clk.wait_done(task, min(waits) if waits else None):
                return task.result()
    finally:
        if not task.done():
            await cancel_and_wait(task)
