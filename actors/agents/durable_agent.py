"""`DurableAgent`: a Pydantic AI agent run inside a Tether handler, resumable from its journal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, Literal, TypeVar

from pydantic_ai import Agent
from pydantic_ai.agent import AgentRunResult
from pydantic_ai.messages import ModelMessage
from pydantic_ai.models import Model, infer_model
from pydantic_ai.toolsets import AbstractToolset
from pydantic_ai.usage import RequestUsage

from eventstore.errors import UsageError

from ..context import ObjectContext
from ..policies import RetryPolicy
from .model import JournaledModel, UsageCost
from .toolset import JournaledToolset

__all__ = ["DurableAgent", "UsageCost", "durable_agent", "token_cost"]

DepsT = TypeVar("DepsT")
OutputT = TypeVar("OutputT")
ToolMode = Literal["sequential", "parallel_ordered_events"]


def token_cost(usage: RequestUsage) -> float:
    """The default cost of a model response: its input plus output tokens."""
    return float(usage.input_tokens + usage.output_tokens)


class DurableAgent(Generic[DepsT, OutputT]):
    """Runs a Pydantic AI `Agent` with every model request and tool call journaled in `ctx`.

    Step names are `{name}:model` for model requests and `{name}:tool:{tool}:{tool call id}` for
    tool calls (the call id comes from the journaled model response), so they are the same on
    every replay. Tool calls of one model response run in parallel as the agent would run them;
    each starts its step in the response's order (as Pydantic AI starts them), and a replay that
    met them in another order fails with `JournalMismatchError` rather than mixing results up.
    ``sequential_tools=True`` runs them one at a time instead.

    `cost` turns each response's usage into cost units charged with `ctx.charge` (default:
    input plus output tokens), so a handler's `Budget(cost=...)` stops a runaway agent with
    `BudgetExceededError`. `model_retry` / `tool_retry` and the timeouts are the steps' policies.
    ``stream_text=True`` streams each model request and publishes its text with `ctx.stream`
    as it arrives (read it with `client.stream`).
    """

    def __init__(
        self,
        agent: Agent[DepsT, OutputT],
        *,
        name: str | None = None,
        cost: UsageCost = token_cost,
        model_retry: RetryPolicy | None = None,
        tool_retry: RetryPolicy | None = None,
        model_timeout: float | None = None,
        tool_timeout: float | None = None,
        sequential_tools: bool = False,
        stream_text: bool = False,
    ) -> None:
        step_prefix = name or agent.name
        if not step_prefix:
            raise UsageError("DurableAgent needs a stable name for its step names: Agent(name=...) or name=")
        if agent.model is None:
            raise UsageError(f"agent {step_prefix!r} has no model: give Agent(model=...) before making it durable")
        self.agent = agent
        self.name = step_prefix
        self._model: Model = infer_model(agent.model)
        self._cost = cost
        self._model_retry = model_retry
        self._tool_retry = tool_retry
        self._model_timeout = model_timeout
        self._tool_timeout = tool_timeout
        self._sequential = sequential_tools
        self._stream = stream_text

    async def run(
        self,
        ctx: ObjectContext[Any],
        prompt: str,
        *,
        deps: DepsT = None,  # type: ignore[assignment]  # Pydantic AI's own default
        message_history: Sequence[ModelMessage] | None = None,
    ) -> AgentRunResult[OutputT]:
        """Run the agent on `prompt` as part of the invocation `ctx` (inside a handler).

        Completed model requests and tool calls of this invocation are given back from the
        journal; only the rest run. The result's messages (`all_messages()`) are the same
        Pydantic AI types after a replay as on the first run.
        """
        model = JournaledModel(
            self._model,
            ctx,
            step_prefix=self.name,
            cost=self._cost,
            retry=self._model_retry,
            timeout=self._model_timeout,
            stream=self._stream,
        )
        toolsets: list[AbstractToolset[Any]] = [
            JournaledToolset(t, ctx, step_prefix=self.name, retry=self._tool_retry, timeout=self._tool_timeout)
            for t in self.agent.toolsets
        ]
        mode: Literal["sequential", "parallel_ordered_events"] = (
            "sequential" if self._sequential else "parallel_ordered_events"
        )
        with (
            self.agent.override(model=model, tools=(), toolsets=toolsets),
            self.agent.parallel_tool_call_execution_mode(mode),
        ):
            return await self.agent.run(prompt, deps=deps, message_history=message_history)


def durable_agent(agent: Agent[DepsT, OutputT], **options: Any) -> DurableAgent[DepsT, OutputT]:  # noqa: ANN401
    """Make `agent` durable, the same as constructing `DurableAgent` with these options.

    Inside a handler: ``result = await durable_agent(agent).run(ctx, prompt)``.
    """
    return DurableAgent(agent, **options)
