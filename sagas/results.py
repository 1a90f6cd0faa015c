"""`StepResults`: what an action sees of the steps that completed before it.

Its own module so that the coordinator, which builds one for each action that asks, does not
import the definitions (which build the coordinator): no import cycle in the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from .events import SagaState

if TYPE_CHECKING:
    from .definitions import Step

R = TypeVar("R", bound=BaseModel | None)


class StepResults:
    """Results of the steps that completed before this one; an action may ask for it.

    Declare a third parameter to receive it::

        @booking.step("charge", compensate="refund")
        async def charge(trip: Trip, key: str, done: StepResults) -> Payment:
            flight = done[book_flight]   # a FlightRef
    """

    def __init__(self, state: SagaState, steps: Mapping[str, Step[Any, Any]]) -> None:
        self._state = state
        self._steps = steps

    def __getitem__(self, step: Step[Any, R]) -> R:
        return self.get(step)

    def get(self, step: Step[Any, R]) -> R:
        """The typed result of `step`.

        Raises:
            KeyError: `step` has not completed (it is later, parallel, or failed).
        """
        state = self._state.step(step.name)
        if state.status != "succeeded":
            raise KeyError(f"step {step.name!r} has not completed (it is {state.status})")
        return step.revive(state.result)
