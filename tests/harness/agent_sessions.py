"""A research agent (Pydantic AI, offline `FunctionModel`) served as a Tether session type.

Its model plans three parallel searches, then an email, then answers. Every model request and
tool run is recorded (in memory, and in the file `TETHER_TEST_LEDGER` names, for subprocess
workers) so tests count what ran; `TETHER_TEST_HOLD` names a file whose existence keeps the
email tool waiting (a kill -9 lands inside it).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from actors import Budget, ObjectContext, VirtualObject
from actors.agents import DurableAgent, tool_idempotency_key
from harness.faults import FailOnce

SOURCES = ("web", "news", "papers")
RUNS: list[tuple[str, str]] = []
"""(kind, detail) of every model request and tool run in this process."""
FAIL_AFTER_RUN = FailOnce()
"""Keys whose handler fails once after the agent run (a handler retry replays the run)."""
SEEN: list[list[str]] = []
"""Per handler attempt: the types of the run's messages and parts."""
ONE_RESEARCH = Counter(
    {
        ("model", "0"): 1,
        ("model", "1"): 1,
        ("model", "2"): 1,
        ("tool", "search:web"): 1,
        ("tool", "search:news"): 1,
        ("tool", "search:papers"): 1,
    }
)
"""The (kind, detail) runs of one `research`, the email apart, each once: what a run repeats none of."""


def record(kind: str, detail: str) -> None:
    RUNS.append((kind, detail))
    ledger = os.environ.get("TETHER_TEST_LEDGER")
    if ledger:
        with open(ledger, "a") as f:
            f.write(json.dumps({"kind": kind, "detail": detail, "pid": os.getpid()}) + "\n")


def plan(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = sum(isinstance(m, ModelResponse) for m in messages)
    record("model", str(done))
    usage = RequestUsage(input_tokens=40, output_tokens=10)
    if done == 0:
        calls = [ToolCallPart("search", {"source": s}, tool_call_id=f"search-{s}") for s in SOURCES]
        return ModelResponse(parts=calls, usage=usage)
    if done == 1:
        return ModelResponse(parts=[ToolCallPart("send_email", {"to": "team"}, tool_call_id="email")], usage=usage)
    return ModelResponse(parts=[TextPart(f"findings from {', '.join(SOURCES)}")], usage=usage)


research_agent = Agent(FunctionModel(plan), name="researcher")


@research_agent.tool_plain
async def search(source: str) -> str:
    record("tool", f"search:{source}")
    await asyncio.sleep(0.01)
    return f"[{source} results]"


@research_agent.tool_plain
async def send_email(to: str) -> str:
    record("tool", f"email:{tool_idempotency_key()}")
    hold = os.environ.get("TETHER_TEST_HOLD")
    while hold and Path(hold).exists():
        await asyncio.sleep(0.05)
    record("effect", f"email:{tool_idempotency_key()}")
    return f"sent to {to}"


class Topic(BaseModel):
    topic: str


class Findings(BaseModel):
    text: str
    messages: int
    usage_tokens: int


class Researched(BaseModel):
    text: str


class Notes(BaseModel):
    findings: list[str] = Field(default_factory=list)


researcher = VirtualObject("researcher", state=Notes)
durable = DurableAgent(research_agent)


@researcher.handler()
async def research(ctx: ObjectContext[Notes], req: Topic) -> Findings:
    result = await durable.run(ctx, req.topic)
    SEEN.append([f"{type(m).__name__}:{','.join(type(p).__name__ for p in m.parts)}" for m in result.all_messages()])
    FAIL_AFTER_RUN.check(ctx.key)
    ctx.emit(Researched(text=result.output))
    usage = result.usage
    return Findings(
        text=result.output,
        messages=len(result.all_messages()),
        usage_tokens=usage.input_tokens + usage.output_tokens,
    )


@researcher.handler(budget=Budget(cost=60))
async def research_capped(ctx: ObjectContext[Notes], req: Topic) -> Findings:
    result = await durable.run(ctx, req.topic)  # 50 tokens per response: the second passes the cap
    return Findings(text=result.output, messages=len(result.all_messages()), usage_tokens=0)


@researcher.on_event(Researched)
def researched(state: Notes, event: Researched) -> None:
    state.findings.append(event.text)
