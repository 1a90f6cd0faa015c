"""A Pydantic AI model whose requests are journaled steps of a Tether invocation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelResponse,
    ModelResponseStreamEvent,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
)
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

    With `stream`, the request is streamed and its text goes out through `ctx.stream` as the
    model produces it; a request given back from the journal streams its text again (whole), so
    a retried attempt's stream is complete too.

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
        stream: bool = False,
    ) -> None:
        super().__init__(wrapped)
        self._ctx = ctx
        self._step = f"{step_prefix}:model"
        self._cost = cost
        self._retry = retry
        self._timeout = timeout
        self._stream = stream

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        """The wrapped model's response, from the journal when this request already completed."""
        ran = False

        async def call_model() -> dict[str, Any]:
            nonlocal ran
            ran = True
            if self._stream:
                response = await self._streamed(messages, model_settings, model_request_parameters)
            else:
                response = await self.wrapped.request(messages, model_settings, model_request_parameters)
            return encode_response(response, float(self._cost(response.usage)))

        plain = await self._ctx.run(self._step, call_model, retry=self._retry, timeout=self._timeout)
        response, cost = decode_response(plain)
        if self._stream and not ran:  # from the journal: stream its text again, for this attempt's readers
            for part in response.parts:
                if isinstance(part, TextPart) and part.content:
                    await self._ctx.stream(part.content)
        if cost:
            self._ctx.charge(cost)
        return response

    async def _streamed(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        """A streamed request: each piece of text goes to `ctx.stream` as it arrives."""
        async with self.wrapped.request_stream(messages, model_settings, model_request_parameters) as streamed:
            async for event in streamed:
                text = _text_of(event)
                if text:
                    await self._ctx.stream(text)
            return streamed.get()


def _text_of(event: ModelResponseStreamEvent) -> str | None:
    """The text a stream event adds (a text part's start or delta), if any."""
    if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
        return event.part.content
    if isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
        return event.delta.content_delta
    return None
