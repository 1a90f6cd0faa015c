"""Errors of the session runtime.

    TetherError (eventstore.errors)
    ├── UsageError                      definition-time misuse (re-exported)
    │   ├── NamespaceNotFoundError      a read-only command found no such namespace (nothing is created)
    │   ├── InvalidTimeError            a time an operator typed that is no time (``2h``, ISO 8601, ms)
    │   └── SessionNotFoundError        a read-only command found no record of the session
    └── ActorError
        ├── TerminalError               raised by user code: do not retry
        │   ├── StepTypeError           a step returned a value its declared type cannot hold
        │   ├── BudgetExceededError     retries or cost past the handler's budget
        │   ├── DeadlineExceededError   past the handler's deadline
        │   ├── JournalMismatchError    the handler no longer matches its journal on replay
        │   ├── InvocationCancelledError  an operator cancelled it (`tether sessions cancel`)
        │   └── StateMutationError      a handler wrote to ``ctx.state`` (also a UsageError)
        ├── RetryableError              raised by user code: retry (optionally after `retry_after`)
        │   ├── CircuitOpenError        the step's breaker is open (actors.runtime.circuits)
        │   └── StepTimeoutError        a step attempt ran past its timeout or stopped heartbeating
        ├── InvocationError             what a caller gets when a handler failed for good
        │   ├── UnknownObjectError      no session type of that name is served
        │   ├── UnknownHandlerError     the session type has no handler of that name
        │   └── InvalidPayloadError     the payload failed the handler's input model
        ├── MessageTooLargeError        larger than max_message_bytes
        │   └── RecordTooLargeError     a record Tether writes (step result, event, reply) too large
        ├── CallTimeoutError            no reply within the caller's timeout (the message stays durable)
        ├── SendTimeoutError            the log did not take a message within the send deadline
        └── WorkerPoolError             Ray workers did not start (actors.hosting.ray)

Control flow, not errors: `Suspended` (actors.runtime.waits) and `PartitionLost` derive from
BaseException so that a handler's ``except Exception`` cannot swallow them. The unit test
``tests/unit/test_error_tree.py`` checks this drawing against the classes.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, fields
from typing import Any, ClassVar

from eventstore.errors import TetherError, UsageError

from .observability.redaction import redact

__all__ = [
    "ActorError",
    "BudgetExceededError",
    "CallTimeoutError",
    "CircuitOpenError",
    "DeadlineExceededError",
    "InvalidPayloadError",
    "InvalidTimeError",
    "InvocationCancelledError",
    "InvocationError",
    "JournalMismatchError",
    "MessageTooLargeError",
    "NamespaceNotFoundError",
    "PartitionLost",
    "RecordTooLargeError",
    "RetryableError",
    "SendTimeoutError",
    "SessionNotFoundError",
    "StateMutationError",
    "StepTimeoutError",
    "StepTypeError",
    "TerminalError",
    "UnknownHandlerError",
    "UnknownObjectError",
    "UsageError",
]


class ActorError(TetherError):
    """Root of the runtime's errors."""


class TerminalError(ActorError):
    """Raise in a handler or step to fail for good: no retry; the message is dead-lettered."""


class RetryableError(ActorError):
    """Raise in a handler or step to ask for a retry, optionally not before `retry_after` s."""

    retriable: ClassVar[bool] = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CircuitOpenError(RetryableError):
    """The step's breaker is open: the provider failed repeatedly; retry after `retry_after`."""


class StepTimeoutError(RetryableError):
    """One attempt of a step ran past its `timeout` or stopped heartbeating (retried)."""


@dataclass(eq=False, repr=False)  # compared and shown as exceptions are, not as records
class InvocationError(ActorError):
    """A handler failed for good; carries the failure as the worker recorded it."""

    message: str
    _: KW_ONLY
    error_type: str
    object_name: str | None = None
    key: str | None = None
    handler: str | None = None
    attempts: int | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        where = f"{self.object_name}/{self.key}.{self.handler}" if self.handler else "handler"
        tries = f" after {self.attempts} attempt(s)" if self.attempts else ""
        return f"{where} failed{tries}: {self.error_type}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by fields (a Ray task may raise it to its caller): `error_type` is keyword-only."""
        return (_rebuild, (type(self), {f.name: getattr(self, f.name) for f in fields(self)}))


def _rebuild(cls: type[InvocationError], values: dict[str, Any]) -> InvocationError:
    return cls(**values)


class UnknownObjectError(InvocationError):
    """No session type of that name is served by the workers."""


class UnknownHandlerError(InvocationError):
    """The session type has no handler of that name."""


class InvalidPayloadError(InvocationError):
    """The payload did not validate against the handler's input model."""


class MessageTooLargeError(ActorError):
    """A message is larger than `max_message_bytes`; it is refused (client) or dead-lettered."""


class RecordTooLargeError(MessageTooLargeError):
    """A record the runtime was about to write is over `max_message_bytes`.

    A step result fails its step (under the step's retry policy); a reply or an invocation's
    events fail the invocation into the dead-letter topic. Nothing over the limit is ever sent
    to the log, so the partition goes on.
    """

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class StepTypeError(TerminalError):
    """A step's result cannot be journaled and given back as the same type on replay."""


class CallTimeoutError(ActorError):
    """No reply within the timeout. The message is durable and will still be processed."""

    retriable = True


class SendTimeoutError(ActorError):
    """The log did not confirm a message in time (the broker is down or unreachable).

    The message may or may not be durable: retry with the same idempotency key, which applies
    it once either way.
    """

    retriable = True


class BudgetExceededError(TerminalError):
    """The invocation spent its retry or cost budget; it fails instead of burning more."""


class DeadlineExceededError(TerminalError):
    """The invocation ran past its handler's deadline (across waits and restarts)."""


class InvocationCancelledError(TerminalError):
    """An operator cancelled the invocation (``tether sessions cancel``).

    It ends at its next wait or new step with this error, which its caller gets; it is recorded
    in the session's history, not dead-lettered. A handler may catch it to undo what it did.
    """


class JournalMismatchError(TerminalError):
    """On replay, the handler asked for a different step than its journal recorded."""

    def __init__(self, *, index: int, recorded: str, requested: str) -> None:
        super().__init__(
            f"journal mismatch at step {index}: recorded {recorded!r}, the code now runs "
            f"{requested!r}. The handler changed while an invocation was in flight; deploy "
            "code that replays the recorded steps, or restart the invocation"
        )
        self.index = index
        self.recorded = recorded
        self.requested = requested


class NamespaceNotFoundError(UsageError):
    """A read-only command found no topics (or no embedded log) for the namespace; it created none."""


class InvalidTimeError(UsageError):
    """A time given on the command line is none of ``2h`` (ago), ISO 8601 or epoch milliseconds."""


class SessionNotFoundError(UsageError):
    """A read-only command found neither a snapshot nor an event of the session."""


class PartitionLost(BaseException):  # noqa: N818 - control flow, not an error
    """The worker lost its partition (fenced or revoked); the invocation stops here.

    Do not catch this: another worker owns the session now and will finish the invocation.
    """


MAX_ERROR_CHARS = 8192
"""Characters of an error message kept in replies, journals and dead letters."""


def error_payload(exc: BaseException) -> dict[str, Any]:
    """A failure as plain data for replies, journals and dead letters."""
    cls = type(exc)
    message = redact(str(exc))  # it reaches the caller, the journal and the dead-letter headers
    if len(message) > MAX_ERROR_CHARS:  # an error message must never make its record too large
        message = f"{message[:MAX_ERROR_CHARS]}... ({len(message) - MAX_ERROR_CHARS} more characters)"
    return {
        "type": cls.__name__,
        "fqcn": f"{cls.__module__}.{cls.__qualname__}",
        "message": message,
    }


class StateMutationError(TerminalError, UsageError):
    """A handler wrote `ctx.state` directly; state changes only through events and their folds."""
