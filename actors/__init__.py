"""Tether's session runtime: virtual objects, journaled steps, workers and the client."""

from eventstore.errors import TetherError, UsageError

from .client import Client, SyncClient
from .context import Awakeable, ObjectContext
from .definitions import Budget, Handler, RetryPolicy, VirtualObject
from .errors import (
    ActorError,
    BudgetExceededError,
    CallTimeoutError,
    DeadlineExceededError,
    InvalidPayloadError,
    InvocationError,
    JournalMismatchError,
    MessageTooLargeError,
    RecordTooLargeError,
    RetryableError,
    SendTimeoutError,
    StateMutationError,
    StepTypeError,
    TerminalError,
    UnknownHandlerError,
    UnknownObjectError,
)
from .resilience import CircuitOpenError, CircuitPolicy
from .settings import RuntimeSettings, Settings
from .worker import Worker, load_objects, serve

__all__ = [
    "ActorError",
    "Awakeable",
    "Budget",
    "BudgetExceededError",
    "CallTimeoutError",
    "CircuitOpenError",
    "CircuitPolicy",
    "Client",
    "DeadlineExceededError",
    "Handler",
    "InvalidPayloadError",
    "InvocationError",
    "JournalMismatchError",
    "MessageTooLargeError",
    "ObjectContext",
    "RecordTooLargeError",
    "RetryPolicy",
    "RetryableError",
    "RuntimeSettings",
    "SendTimeoutError",
    "Settings",
    "StateMutationError",
    "StepTypeError",
    "SyncClient",
    "TerminalError",
    "TetherError",
    "UnknownHandlerError",
    "UnknownObjectError",
    "UsageError",
    "VirtualObject",
    "Worker",
    "load_objects",
    "serve",
]
