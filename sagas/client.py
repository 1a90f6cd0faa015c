"""Start sagas and await their outcome from outside a session, through the actors `Client`."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from actors import CallTimeoutError, Client
from actors.inspection.cancelling import cancel_live

from .coordinator import CancelRequest, CancelResult, RetryRequest, RetryResult, StatusQuery
from .definitions import Saga, Step, object_name
from .errors import SagaTimeoutError
from .events import SagaState

I = TypeVar("I", bound=BaseModel)  # noqa: E741
R = TypeVar("R", bound=BaseModel | None)

POLL_START = 0.05
"""Seconds between the first status polls of `SagaHandle.result`."""
POLL_MAX = 1.0
"""Upper bound of the poll interval (it doubles from `POLL_START`)."""


class SagaOutcome(SagaState):
    """A settled saga: completed, compensated, cancelled, or stuck. Typed access to step results."""

    @property
    def ok(self) -> bool:
        """Whether every step took effect."""
        return self.status == "completed"

    def result(self, step: Step[Any, R]) -> R:
        """The typed result of `step`.

        Raises:
            KeyError: the step did not complete (or was compensated: its result is void).
        """
        state = self.step(step.name)
        if state.status != "succeeded":
            raise KeyError(f"step {step.name!r} has no result: it is {state.status}")
        return step.revive(state.result)


class SagaHandle(Generic[I]):
    """One saga, by id: its status now, or its outcome once it settles."""

    def __init__(self, client: Client, saga: Saga[I], saga_id: str) -> None:
        self.client = client
        self.saga = saga
        self.saga_id = saga_id

    async def status(self, *, timeout: float = 10.0) -> SagaState:
        """The saga's state as its worker has it (status ``new``: not started yet)."""
        state = await self.client.call(self.saga.status, self.saga_id, StatusQuery(), timeout=timeout)
        assert isinstance(state, SagaState)
        return state

    async def result(self, *, timeout: float = 60.0) -> SagaOutcome:
        """Wait until the saga is completed, compensated, cancelled or stuck, and return it.

        Raises:
            SagaTimeoutError: it did not settle within `timeout` s (it goes on regardless).
        """
        deadline = time.monotonic() + timeout
        interval = POLL_START
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SagaTimeoutError(
                    f"saga {self.saga_id} did not settle within {timeout} s; it goes on "
                    "(is a worker serving it? see `tether saga show`)"
                )
            try:
                state = await self.status(timeout=max(0.5, min(10.0, left)))
            except CallTimeoutError:
                continue
            if state.settled:
                return SagaOutcome.model_validate(state.model_dump())
            await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(POLL_MAX, interval * 2)

    async def retry(self, *, timeout: float = 30.0) -> RetryResult:
        """Resume the saga if it is stuck (see `tether saga retry`)."""
        result = await self.client.call(self.saga.resume, self.saga_id, RetryRequest(), timeout=timeout)
        assert isinstance(result, RetryResult)
        return result

    async def cancel(self, reason: str, *, by: str, timeout: float = 30.0) -> CancelResult:
        """Cancel the saga as a whole (see `SagaClient.cancel`)."""
        return await SagaClient(self.client).cancel(self.saga, self.saga_id, reason, by=by, timeout=timeout)


class SagaClient:
    """Starts sagas through an actors `Client` (which the caller opens and closes)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def start(self, saga: Saga[I], saga_id: str, input: I) -> SagaHandle[I]:
        """Start `saga` as `saga_id`; returns once the start message is durable.

        Starting is idempotent per saga id: the same id with the same input is one saga. A
        different input for a started id is refused (dead-lettered: the id is taken).
        """
        if not isinstance(input, saga.input_type):
            raise TypeError(f"saga {saga.name!r} takes {saga.input_type.__qualname__}, got {type(input).__qualname__}")
        # The same id and input is one message (a retried start is deduplicated); another input
        # is another message, which the coordinator refuses.
        digest = hashlib.sha256(input.model_dump_json().encode()).hexdigest()[:16]
        await self.client.send(saga.start, saga_id, input, idempotency_key=f"saga:{saga_id}:start:{digest}")
        return SagaHandle(self.client, saga, saga_id)

    def handle(self, saga: Saga[I], saga_id: str) -> SagaHandle[I]:
        """A handle on a saga started elsewhere."""
        return SagaHandle(self.client, saga, saga_id)

    async def retry(self, saga: str | Saga[Any], saga_id: str, *, timeout: float = 30.0) -> RetryResult:
        """Resume a stuck saga by the name of its definition (no need to import it)."""
        name = saga if isinstance(saga, str) else saga.name
        raw = await self.client.call_raw(object_name(name), saga_id, "retry", {}, timeout=timeout)
        return RetryResult.model_validate(raw)

    async def cancel(
        self, saga: str | Saga[Any], saga_id: str, reason: str, *, by: str, timeout: float = 30.0
    ) -> CancelResult:
        """Cancel a saga as a whole by the name of its definition (no need to import it).

        The coordinator records who and why (`SagaCancelled`), starts no more steps and
        compensates the completed ones in reverse order; the saga then ends ``cancelled``. A
        group of steps already running finishes its current attempts first (and is compensated
        with the rest); a group waiting to retry a step starts no further attempt. A worker
        serving the saga must answer.
        """
        name = saga if isinstance(saga, str) else saga.name
        coordinator = object_name(name)
        payload = CancelRequest(by=by, reason=reason).model_dump(mode="json")
        request_id = f"saga-cancel:{uuid.uuid4().hex}"
        # First the request, durable and queued behind whatever the coordinator runs; then that
        # run is interrupted (a retry round it waits for does not start); then the request's
        # reply, asked for again by its id (a duplicate is answered with the recorded reply).
        await self.client.send_raw(coordinator, saga_id, "cancel", payload, idempotency_key=request_id)
        await cancel_live(self.client, coordinator, saga_id, reason=reason, by=by, handler="advance", timeout=timeout)
        raw = await self.client.call_raw(
            coordinator, saga_id, "cancel", payload, timeout=timeout, idempotency_key=request_id
        )
        return CancelResult.model_validate(raw)
