"""Circuit breakers per step name: stop calling a provider that keeps failing until it recovers.

A breaker is per worker process and per step name, so every session of the worker that calls
the same provider shares it. Closed: calls go through and consecutive failures are counted;
at `failure_threshold` it opens. Open: calls fail at once with `CircuitOpenError` (retryable,
with `retry_after` = time left), so sessions back off instead of hammering the provider.
After `reset_timeout` one trial call goes through (half-open): success closes it, failure
opens it again.
"""

from __future__ import annotations

from typing import ClassVar

from ..clock import clock
from ..errors import CircuitOpenError
from ..policies import CircuitPolicy


class CircuitBreaker:
    """The state of one breaker."""

    def __init__(self, name: str, policy: CircuitPolicy) -> None:
        self.name = name
        self.policy = policy
        self.failures = 0
        self.opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        if self.opened_at is None:
            return "closed"
        if clock().monotonic() - self.opened_at >= self.policy.reset_timeout:
            return "half-open"
        return "open"

    def before_call(self) -> None:
        """Raise `CircuitOpenError` unless a call may go through now."""
        state = self.state
        if state == "closed":
            return
        if state == "half-open" and not self._trial:
            self._trial = True
            return
        assert self.opened_at is not None
        left = max(0.05, self.policy.reset_timeout - (clock().monotonic() - self.opened_at))
        raise CircuitOpenError(
            f"circuit {self.name!r} is open after {self.failures} consecutive failures; next trial in {left:.1f} s",
            retry_after=left,
        )

    def succeeded(self) -> None:
        """A call went through: close the breaker."""
        self.failures = 0
        self.opened_at = None
        self._trial = False

    def failed(self) -> None:
        """A call failed: count it, and open (again) at the threshold or after a failed trial."""
        self.failures += 1
        if self._trial or self.failures >= self.policy.failure_threshold:
            self.opened_at = clock().monotonic()
        self._trial = False


class Breakers:
    """The breakers of this process, by step name."""

    _all: ClassVar[dict[str, CircuitBreaker]] = {}

    @classmethod
    def get(cls, name: str, policy: CircuitPolicy) -> CircuitBreaker:
        """The breaker of `name` (created with `policy` on first use)."""
        breaker = cls._all.get(name)
        if breaker is None:
            breaker = cls._all[name] = CircuitBreaker(name, policy)
        return breaker

    @classmethod
    def reset(cls) -> None:
        """Forget every breaker (tests)."""
        cls._all.clear()
