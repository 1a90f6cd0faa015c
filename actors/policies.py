"""Policies a handler or step declares: retries, budgets, circuit breakers.

Plain frozen models with no runtime state; the runtime applies them (`actors.runtime.invocation`
retries and charges, `actors.runtime.circuits` keeps the breakers).
"""

from __future__ import annotations

import random

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from .errors import TerminalError

__all__ = ["DEFAULT_RETRY", "Budget", "CircuitPolicy", "RetryPolicy"]


class RetryPolicy(BaseModel):
    """How a failing handler or step is retried before it fails for good."""

    model_config = ConfigDict(frozen=True)

    max_attempts: int = Field(default=3, ge=1)
    """Attempts in total, the first included."""
    initial_interval: float = 0.05
    """Seconds before the first retry."""
    multiplier: float = 2.0
    """Each retry waits this much longer than the one before."""
    max_interval: float = 5.0
    """Upper bound of a single wait, in seconds."""
    jitter: float = 0.2
    """Fraction of each wait that is randomized, so retries of many sessions spread out."""
    non_retryable: tuple[str, ...] = ()
    """Exception class names (or fully qualified names) that fail at once."""

    def base_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """`delay` without its jitter: the same on every call (for decisions a replay repeats)."""
        return max(min(self.max_interval, self.initial_interval * self.multiplier ** (attempt - 1)), retry_after or 0.0)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        base = min(self.max_interval, self.initial_interval * self.multiplier ** (attempt - 1))
        base *= 1 + self.jitter * (2 * random.random() - 1)
        return max(base, retry_after or 0.0)

    def next_delay(self, attempt: int, exc: BaseException) -> float | None:
        """The wait before the next attempt, or None when `exc` ends the retries.

        Retries end after `max_attempts`, for non-retryable errors, and when the error asks
        for a longer wait (`retry_after`, e.g. a 429 or an open circuit) than `max_interval`:
        waiting that long inside a step would hold the session; fail instead.
        """
        if attempt >= self.max_attempts or not self.retries(exc):
            return None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None and retry_after > self.max_interval:
            return None
        return self.delay(attempt, retry_after)

    def retries(self, exc: BaseException) -> bool:
        """Whether `exc` may be retried under this policy."""
        if isinstance(exc, TerminalError) or isinstance(exc, pydantic.ValidationError):
            return False
        cls = type(exc)
        names = {cls.__name__, f"{cls.__module__}.{cls.__qualname__}"}
        return not names & set(self.non_retryable)


DEFAULT_RETRY = RetryPolicy()


class Budget(BaseModel):
    """Limits of one invocation, so a retry loop cannot burn money forever."""

    model_config = ConfigDict(frozen=True)

    retries: int | None = None
    """Step retries allowed in total across the invocation (None: no limit)."""
    cost: float | None = None
    """Cost units (`ctx.charge`) allowed in total (None: no limit)."""


class CircuitPolicy(BaseModel):
    """When a step's breaker opens and how long it stays open."""

    model_config = ConfigDict(frozen=True)

    failure_threshold: int = Field(default=5, ge=1)
    """Consecutive failures that open the breaker."""
    reset_timeout: float = 30.0
    """Seconds the breaker stays open before a trial call."""
