"""Pydantic AI agents whose runs are durable: each model request and tool call a journaled step.

Needs the optional extra ``tether[agents]`` (``pydantic-ai-slim``). Inside a handler::

    result = await DurableAgent(agent).run(ctx, prompt)

`DurableAgent` runs the agent with its model and toolsets wrapped so that every model request
(`{name}:model`) and every tool call (`{name}:tool:{tool}:{call id}`) goes through `ctx.run`:
after a retry or a crash the journaled responses and tool results are given back instead of
calling the model or the tool again. Each response's usage is charged to the invocation's budget
(`ctx.charge`), so a cost cap stops a runaway agent.
"""

from .durable_agent import DurableAgent, UsageCost, durable_agent, token_cost
from .toolset import tool_idempotency_key

__all__ = ["DurableAgent", "UsageCost", "durable_agent", "token_cost", "tool_idempotency_key"]
