"""A Pydantic AI toolset whose tool calls are journaled steps of a Tether invocation."""

from __future__ import annotations

import contextvars
from typing import Any

from pydantic_ai import RunContext
from pydantic_ai.exceptions import ApprovalRequired, CallDeferred, ModelRetry, ToolFailed
from pydantic_ai.toolsets import AbstractToolset, WrapperToolset
from pydantic_ai.toolsets.abstract import ToolsetTool
from pydantic_core import to_jsonable_python

from eventstore.errors import UsageError

from ..context import ObjectContext
from ..policies import RetryPolicy

_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar("tether_tool_idempotency_key", default=None)


def tool_idempotency_key() -> str:
    """The idempotency key of the tool call running now: the invocation id and the step name.

    The same on every attempt and replay of that call and different for every other call, so a
    tool that is a side effect (an email, a payment) passes it to the provider, which applies it
    once. Only valid inside a tool called through `DurableAgent`.
    """
    key = _KEY.get()
    if key is None:
        raise UsageError("tool_idempotency_key() is only available inside a tool run by DurableAgent")
    return key


class JournaledToolset(WrapperToolset[Any]):
    """Runs each tool call of the wrapped toolset as the step `{step_prefix}:tool:{name}:{call id}`.

    The tool call id comes from the (journaled) model response, so step names are the same on
    replay; a replay that reached the calls in another order would fail loudly with
    `JournalMismatchError` instead of handing one call another's result. A tool's `ModelRetry`,
    `ToolFailed`, `ApprovalRequired` and `CallDeferred` are journaled as outcomes (not retried
    as failures) and raised again, live and on replay.
    Results are journaled as JSON-compatible data and given back in that form both times.
    """

    def __init__(
        self,
        wrapped: AbstractToolset[Any],
        ctx: ObjectContext[Any],
        *,
        step_prefix: str,
        retry: RetryPolicy | None,
        timeout: float | None,
    ) -> None:
        super().__init__(wrapped)
        self._ctx = ctx
        self._prefix = step_prefix
        self._retry = retry
        self._timeout = timeout

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:  # noqa: ANN401 - whatever the tool returns
        """The tool's result, from the journal when this call already completed."""
        step = f"{self._prefix}:tool:{name}:{ctx.tool_call_id}"
        key = f"{self._ctx.invocation_id}:{step}"

        async def call() -> dict[str, Any]:
            token = _KEY.set(key)
            try:
                result = await self.wrapped.call_tool(name, tool_args, ctx, tool)
            except ModelRetry as retry:
                return {"retry": retry.message}
            except ToolFailed as failed:
                return {"failed": failed.message}
            except ApprovalRequired as approval:
                return {"approval": to_jsonable_python(approval.metadata)}
            except CallDeferred as deferred:
                return {"deferred": to_jsonable_python(deferred.metadata), "kind": deferred.kind}
            finally:
                _KEY.reset(token)
            return {"result": to_jsonable_python(result)}

        outcome = await self._ctx.run(step, call, retry=self._retry, timeout=self._timeout)
        return _given_back(outcome)


def _given_back(outcome: dict[str, Any]) -> Any:  # noqa: ANN401 - whatever the tool returned
    """A journaled tool outcome: its result, or the control-flow exception it raised, again."""
    if "retry" in outcome:
        raise ModelRetry(str(outcome["retry"]))
    if "failed" in outcome:
        raise ToolFailed(str(outcome["failed"]))
    if "approval" in outcome:
        raise ApprovalRequired(outcome["approval"])
    if "deferred" in outcome:
        raise CallDeferred(outcome["deferred"], kind="question" if outcome.get("kind") == "question" else "external")
    return outcome.get("result")
