"""Errors of the saga layer.

    TetherError (eventstore.errors)
    ├── UsageError              a saga defined wrongly (re-exported)
    └── SagaError
        ├── SagaNotFoundError   no saga of that id in the log
        └── SagaTimeoutError    the saga did not settle in time (it goes on)

What an action or compensation raises is not wrapped: `actors.TerminalError` fails a step at
once, `actors.RetryableError(retry_after=...)` and any other exception are retried under the
step's policy.
"""

from __future__ import annotations

from typing import ClassVar

from actors import TetherError, UsageError

__all__ = ["SagaError", "SagaNotFoundError", "SagaTimeoutError", "UsageError"]


class SagaError(TetherError):
    """Root of the saga layer's errors."""


class SagaNotFoundError(SagaError):
    """No saga with that id (and definition) is in the log."""


class SagaTimeoutError(SagaError):
    """A saga did not settle within the caller's timeout; it is still running."""

    retriable: ClassVar[bool] = True
