"""Sagas on Tether: ordered steps with compensations, run by an event-sourced coordinator.

A `Saga` lists named steps, each an action and the compensation that undoes it. Its
coordinator is a virtual object keyed by saga id (built only on the public `actors` API): it
runs each action and compensation as a journaled step with a derived idempotency key
(``{saga}/{saga_id}:{step}:{action|compensation}``), undoes the completed steps in reverse order when a
step fails for good, and parks the saga as ``stuck`` (a dead letter) when a compensation does.
"""

from .client import SagaClient, SagaHandle, SagaOutcome
from .coordinator import CancelRequest, CancelResult, RetryRequest, RetryResult, StatusQuery
from .definitions import (
    DEFAULT_COMPENSATION_RETRY,
    DEFAULT_STEP_RETRY,
    Compensation,
    Saga,
    Step,
    idempotency_key,
)
from .errors import SagaError, SagaNotFoundError, SagaTimeoutError, UsageError
from .events import Attempt, CancelInfo, ErrorInfo, SagaState, SagaStatus, StepState, StepStatus, StuckInfo
from .inspect import SagaRecord, find_saga, read_sagas
from .results import StepResults

__all__ = [
    "Attempt",
    "CancelInfo",
    "CancelRequest",
    "CancelResult",
    "Compensation",
    "DEFAULT_COMPENSATION_RETRY",
    "DEFAULT_STEP_RETRY",
    "ErrorInfo",
    "RetryRequest",
    "RetryResult",
    "Saga",
    "SagaClient",
    "SagaError",
    "SagaHandle",
    "SagaNotFoundError",
    "SagaOutcome",
    "SagaRecord",
    "SagaState",
    "SagaStatus",
    "SagaTimeoutError",
    "StatusQuery",
    "Step",
    "StepResults",
    "StepState",
    "StepStatus",
    "StuckInfo",
    "UsageError",
    "find_saga",
    "idempotency_key",
    "read_sagas",
]
