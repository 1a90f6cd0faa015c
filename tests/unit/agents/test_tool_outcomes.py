"""A tool's control flow (`ModelRetry`, `ApprovalRequired`) is journaled as its outcome and raised
again on replay: the handler retry sees the same run without calling the model or the tool."""

from __future__ import annotations

from pathlib import Path

from harness.faults import FailOnce
from harness.session_harness import WAIT, make_settings, open_runtime
from pydantic import BaseModel
from pydantic_ai import Agent, DeferredToolRequests
from pydantic_ai.exceptions import ApprovalRequired, ModelRetry
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from actors import ObjectContext, VirtualObject
from actors.agents import DurableAgent

CALLS: list[str] = []
FAIL_ONCE = FailOnce()


def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = sum(isinstance(m, ModelResponse) for m in messages)
    CALLS.append(f"model {done}")
    if done == 0:
        return ModelResponse(parts=[ToolCallPart("lookup", {"q": "x"}, tool_call_id="first")])
    if done == 1:
        return ModelResponse(parts=[ToolCallPart("lookup", {"q": "y"}, tool_call_id="second")])
    if done == 2:
        return ModelResponse(parts=[ToolCallPart("pay", {"amount": 5}, tool_call_id="pay")])
    return ModelResponse(parts=[TextPart("unreachable")])


agent = Agent(FunctionModel(model), name="payer", output_type=[str, DeferredToolRequests])


@agent.tool_plain
def lookup(q: str) -> str:
    CALLS.append(f"lookup {q}")
    if q == "x":
        raise ModelRetry("not x: try y")
    return "found y"


@agent.tool_plain
def pay(amount: int) -> str:
    CALLS.append("pay")
    raise ApprovalRequired({"amount": amount})


class Empty(BaseModel):
    pass


class Outcome(BaseModel):
    approvals: list[str]


payer = VirtualObject("payer", state=Empty)
durable = DurableAgent(agent)


@payer.handler()
async def run(ctx: ObjectContext[Empty], req: Empty) -> Outcome:
    result = await durable.run(ctx, "pay")
    FAIL_ONCE.check(ctx.key)
    assert isinstance(result.output, DeferredToolRequests)
    return Outcome(approvals=[call.tool_call_id for call in result.output.approvals])


async def test_model_retry_and_approval_replay(tmp_path: Path, namespace: str) -> None:
    CALLS.clear()
    FAIL_ONCE.add("p1")
    settings = make_settings("embedded", tmp_path, namespace, partitions=1)
    async with open_runtime([payer], settings) as rt:
        outcome = await rt.client.call(run, "p1", Empty(), timeout=WAIT)
    assert outcome.approvals == ["pay"]
    assert CALLS == ["model 0", "lookup x", "model 1", "lookup y", "model 2", "pay"], "each ran once"
