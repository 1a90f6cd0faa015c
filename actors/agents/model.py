"""A Pydantic AI model whose requests are journaled steps of a Tether invocation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import RequestUsage

from ..context import ObjectContext
from ..errors import TerminalError
from ..policies import RetryPolicy

UsageCost = Callable[[RequestUsage], float]
"""Cost units a model response's usage is charged to the invocation's budget."""


def encode_response(response: ModelResponse, cost: float) -> dict[str, Any]:
    """The journaled form of one model request, as `tether sessions history` shows it.

    The response (serialized as Pydantic AI serializes messages), its token usage and the cost
    charged for it.
    """
    usage = response.usage
    return {
        "response": ModelMessagesTypeAdapter.dump_python([response], mode="json"),
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
        "cost": cost,
    }


def decode_response(plain: Any) -> tuple[ModelResponse, float]:  # noqa: ANN401 - journaled data
    """The response and cost of a journaled model request (live and on replay alike)."""
    if not isinstance(plain, dict) or "response" not in plain:
        raise TerminalError(f"a journaled model request is not in the agent step form: {type(plain).__name__}")
    (message,) = ModelMessagesTypeAdapter.validate_python(plain["response"])
    if not isinstance(message, ModelResponse):
        raise TerminalError(f"a journaled model request holds a {type(message).__name__}, not a ModelResponse")
    return message, float(plain.get("cost") or 0.0)


class JournaledModel(WrapperModel):
    """Runs each request of the wrapped model as the step `{step_prefix}:model`.

    The step's result is the serialized response, decoded back live as on replay, so the agent
    sees the same `ModelResponse` either way; its cost is charged with `ctx.charge` each time
    (a replay rebuilds the invocation's spending before the next live request).
    """

    def __init__(
        self,
        wrapped: Model,
        ctx: ObjectContext[Any],
        *,
        step_prefix: str,
        cost: UsageCost,
        retry: RetryPolicy | None,
        timeout: float | None,
    ) -> None:
        super().__init__(wrapped)
        self._ctx = ctx
        self._step = f"{step_prefix}:model"
        self._cost = cost
        self._retry = retry
        self._timeout = timeout

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        """The wrapped model's response, from the journal when this request already completed."""

        async def call_model() -> dict[str, Any]:
            response = await self.wrapped.request(messages, model_settings, model_request_parameters)
            return encode_response(response, float(self._cost(response.usage)))

        plain = await self._ctx.run(self._step, call_model, retry=self._retry, timeout=self._timeout)
        response, cost = decode_response(plain)
        if cost:
            self._ctx.charge(cost)
        return response
