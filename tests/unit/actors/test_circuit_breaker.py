import time

import pytest

from actors import CircuitOpenError, CircuitPolicy
from actors.runtime.circuits import CircuitBreaker


def test_breaker_opens_at_threshold_then_trials_after_reset_timeout() -> None:
    breaker = CircuitBreaker("llm", CircuitPolicy(failure_threshold=3, reset_timeout=0.2))
    for _ in range(2):
        breaker.before_call()
        breaker.failed()
    assert breaker.state == "closed"
    breaker.before_call()
    breaker.failed()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError) as info:
        breaker.before_call()
    assert 0 < (info.value.retry_after or 0) <= 0.2
    time.sleep(0.25)
    assert breaker.state == "half-open"
    breaker.before_call()  # the one trial call
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # no second trial while the first is out
    breaker.failed()
    assert breaker.state == "open"  # a failed trial opens it again
    time.sleep(0.25)
    breaker.before_call()
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.failures == 0


def test_success_resets_consecutive_failures() -> None:
    breaker = CircuitBreaker("tool", CircuitPolicy(failure_threshold=2, reset_timeout=10))
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    assert breaker.state == "closed"
