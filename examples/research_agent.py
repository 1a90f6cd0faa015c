"""A Pydantic AI research agent made durable with Tether, streaming its answer to the caller.

Run it with `python examples/research_agent.py` (embedded log; needs `pip install tether[agents]`).
The model is a stand-in (Pydantic AI's `FunctionModel`) so it runs offline: it plans two
parallel searches, then writes its answer token by token. Put a real model in its place
(`Agent("openai:gpt-5", ...)`): nothing else changes.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator

from pydantic import BaseModel, Field
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

from actors import Budget, Client, ObjectContext, Settings, VirtualObject, Worker
from actors.agents import DurableAgent, tool_idempotency_key


async def stand_in_model(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
    if not any(isinstance(m, ModelResponse) for m in messages):  # first request: search two sources
        for n, source in enumerate(("web", "papers")):
            yield {n: DeltaToolCall("search", json.dumps({"source": source}), tool_call_id=f"search-{source}")}
        return
    for word in "Durable agents resume from their journal instead of starting over.".split():
        yield word + " "


class Notes(BaseModel):
    answers: list[str] = Field(default_factory=list)


class Question(BaseModel):
    text: str


class Answer(BaseModel):
    text: str
    tokens: int


class Answered(BaseModel):
    text: str


researcher = Agent(FunctionModel(stream_function=stand_in_model), name="researcher")


@researcher.tool_plain
async def search(source: str) -> str:
    # A side effect would pass tool_idempotency_key() to its provider: the same on every retry.
    return f"[{source} results for call {tool_idempotency_key()[-12:]}]"


session = VirtualObject("research", state=Notes)
durable = DurableAgent(researcher, stream_text=True)  # each model request and tool call: a step


@session.handler(budget=Budget(cost=10_000))  # tokens: a runaway agent stops here
async def ask(ctx: ObjectContext[Notes], question: Question) -> Answer:
    result = await durable.run(ctx, question.text)
    ctx.emit(Answered(text=result.output))
    return Answer(text=result.output, tokens=result.usage.total_tokens)


@session.on_event(Answered)
def answered(state: Notes, event: Answered) -> None:
    state.answers.append(event.text)


async def main() -> None:
    settings = Settings(data_dir=tempfile.mkdtemp(prefix="tether-research-"), partitions=2)
    async with Worker([session], settings), Client.connect(settings) as client:
        stream = client.stream(ask, "user-1", Question(text="Why durable agents?"))
        async for chunk in stream:  # tokens as the model writes them
            print(chunk.data, end="", flush=True)
        answer = stream.result()
        print(f"\nanswer: {answer.text.strip()!r} ({answer.tokens} tokens)")


if __name__ == "__main__":
    asyncio.run(main())
