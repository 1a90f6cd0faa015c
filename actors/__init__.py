"""Tether's session runtime: virtual objects, journaled steps, workers and the client.

The package's layout is its architecture (README, "Layout"): the user API here (`definitions`,
`context`, `policies`, `errors`, `settings`); `protocol/`, every record Tether writes; `runtime/`,
the engine; `hosting/`, workers and Ray; `client/`; `inspection/`, read-only views; `cli/`.
`Worker`, `serve` and `load_objects` load on first use, so ``import actors.client`` (or a
session type's module) does not load the engine.
"""

from typing import TYPE_CHECKING, Any

from eventstore.errors import TetherError, UsageError

from .client import Client, SyncClient
from .context import Awakeable, ObjectContext
from .definitions import Handler, VirtualObject
from .errors import (
    ActorError,
    BudgetExceededError,
    CallTimeoutError,
    CircuitOpenError,
    DeadlineExceededError,
    InvalidPayloadError,
    InvocationError,
    JournalMismatchError,
    MessageTooLargeError,
    RecordTooLargeError,
    RetryableError,
    SendTimeoutError,
    StateMutationError,
    StepTimeoutError,
    StepTypeError,
    TerminalError,
    UnknownHandlerError,
    UnknownObjectError,
)
from .policies import Budget, CircuitPolicy, RetryPolicy
from .settings import RuntimeSettings, Settings

if TYPE_CHECKING:
    from .hosting.worker import Worker, load_objects, serve

_HOSTED = frozenset({"Worker", "load_objects", "serve"})


def __getattr__(name: str) -> Any:
    """Load the engine when its entry points are first asked for (PEP 562)."""
    if name in _HOSTED:
        from .hosting import worker

        return getattr(worker, name)
    raise AttributeError(f"module 'actors' has no attribute {name!r}")


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
    "StepTimeoutError",
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
