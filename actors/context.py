"""The handler context contract: what a handler may do. The implementation is `invocation.py`."""

from __future__ import annotations

import abc
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypedDict, TypeVar, Unpack, overload

from pydantic import BaseModel

from .policies import CircuitPolicy, RetryPolicy

if TYPE_CHECKING:
    from .definitions import Handler

S = TypeVar("S", bound=BaseModel)
T = TypeVar("T")
O = TypeVar("O", bound=BaseModel)  # noqa: E741


class StepOptions(TypedDict, Generic[T], total=False):
    """The keywords of `ObjectContext.run` (all optional), typed for the step's result `T`."""

    result_type: type[T] | None
    """What the result decodes to, live and on replay (default: the function's return annotation)."""
    retry: RetryPolicy | None
    """The step's retry policy (default: up to 3 attempts, the first retry after 50 ms)."""
    timeout: float | None
    """Seconds one attempt may take."""
    heartbeat_timeout: float | None
    """Seconds a function that takes ``heartbeat`` may go without calling it."""
    fallback: Callable[[], Awaitable[T]] | Callable[[], T] | None
    """What to call instead once the step failed `fallback_after` times, transiently."""
    fallback_after: int
    """Transient failures before `fallback` is used (default 1)."""
    circuit: CircuitPolicy | None
    """A breaker per step name: while open, attempts fail at once with `CircuitOpenError`."""


class Awakeable(abc.ABC, Generic[T]):
    """A durable promise created by a handler and completed from outside."""

    @property
    @abc.abstractmethod
    def id(self) -> str:
        """Pass this to whoever resolves it (``client.resolve(id, value)``)."""

    @abc.abstractmethod
    async def result(self, timeout: float | None = None) -> T:
        """Wait (durably) until resolved; raises `TerminalError` if rejected or timed out."""


class ObjectContext(abc.ABC, Generic[S]):
    """What a handler sees. Everything on it is deterministic under replay."""

    @property
    @abc.abstractmethod
    def key(self) -> str:
        """The session's key."""

    @property
    @abc.abstractmethod
    def state(self) -> S:
        """The session's state, including events this invocation emitted so far.

        Treat it as read-only: only folds change state (through `emit`).
        """

    @property
    @abc.abstractmethod
    def invocation_id(self) -> str:
        """Id of this invocation (the message id); stable across retries and replays."""

    @abc.abstractmethod
    def emit(self, event: BaseModel) -> None:
        """Record an event; it is folded into `state` now and committed with the reply."""

    @overload
    async def run(self, name: str, fn: Callable[[], Awaitable[T]], **options: Unpack[StepOptions[T]]) -> T: ...

    @overload
    async def run(self, name: str, fn: Callable[[], T], **options: Unpack[StepOptions[T]]) -> T: ...

    @abc.abstractmethod
    async def run(
        self, name: str, fn: Callable[[], Awaitable[T]] | Callable[[], T], **options: Unpack[StepOptions[T]]
    ) -> T:
        """Run a side effect once: its result is durable before this returns.

        `options` are keywords (`StepOptions`): ``result_type``, ``retry``, ``timeout``,
        ``heartbeat_timeout``, ``fallback``, ``fallback_after`` and ``circuit``.

        On replay (a retry, or another worker after a crash) a recorded step returns its
        recorded result (or raises its recorded terminal error) without running `fn` again.
        Steps are matched by call order and name; a different name raises
        `JournalMismatchError`. Results must be JSON-like data or pydantic models.

        `timeout` bounds one attempt; a step function that takes one argument gets a
        ``heartbeat()`` callable, and an attempt that does not call it for `heartbeat_timeout`
        seconds is cancelled early. Both failures follow the step's retry policy.

        After `fallback_after` transient failures the step calls `fallback` instead (a cheaper
        model, a cached answer). With `circuit`, a breaker per step name stops calling a
        provider that keeps failing: while it is open, attempts fail at once with a retryable
        `CircuitOpenError` whose `retry_after` is the time left.
        """

    @abc.abstractmethod
    async def stream(self, data: Any) -> None:  # noqa: ANN401 - plain data
        """Publish a chunk (a token, a progress note: plain data) to this invocation's stream.

        Appended at once, without waiting for the broker per chunk (chunks queued meanwhile
        go in one append, in order), and visible to readers (`client.stream`) before the
        invocation commits; all are appended before it commits. Chunks carry the attempt: a
        retried attempt streams again from its first chunk and supersedes what an earlier one
        streamed; the stream ends with the committed attempt's reply or error.
        """

    @abc.abstractmethod
    def send(self, handler: Handler[Any, Any, Any], key: str, payload: BaseModel) -> str:
        """Send a message to another session; it is delivered once, after this invocation commits."""

    @abc.abstractmethod
    async def call(self, handler: Handler[Any, Any, O], key: str, payload: BaseModel) -> O:
        """Call another session's handler and await its reply (journaled as a step)."""

    @abc.abstractmethod
    async def sleep(self, seconds: float) -> None:
        """Wait durably: the session resumes after `seconds` even across restarts, once.

        While it waits the invocation holds no worker memory; later messages of the session
        queue behind it (shared handlers still answer).
        """

    @abc.abstractmethod
    def awakeable(self, result_type: type[T] | None = None) -> Awakeable[T]:
        """A durable promise: hand out its `id`; anyone resolves it with the client or CLI."""

    async def check_cancelled(self) -> None:
        """Raise `InvocationCancelledError` now if an operator cancelled this invocation.

        The runtime checks by itself at every new step and wait; a handler that starts several
        steps at once (`asyncio.gather`) calls this first, so a cancellation stops all of them
        rather than the first. Raised once per invocation, at the same point on replay.
        """

    @abc.abstractmethod
    def charge(self, cost: float) -> None:
        """Report cost units (tokens, dollars); past the handler's budget the invocation fails."""

    @abc.abstractmethod
    def now(self) -> datetime:
        """The invocation's logical time: the same on every replay."""

    @abc.abstractmethod
    def uuid(self) -> uuid.UUID:
        """A UUID derived from the invocation; the n-th call returns the same on replay."""

    @property
    @abc.abstractmethod
    def random(self) -> random.Random:
        """A random generator seeded by the invocation; same sequence on replay."""

    @property
    @abc.abstractmethod
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger that stays quiet while steps are replayed and tags key and handler."""

    @property
    @abc.abstractmethod
    def attempt(self) -> int:
        """Which attempt of this invocation this is (1 = first)."""
