"""The README's quick example: a session type, a worker and the client, on the embedded log.

Run it with `python examples/quickstart.py` (or against Kafka with
TETHER_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092). `tether serve examples.quickstart:agent` serves
the same session type from the command line.
"""

from __future__ import annotations

import asyncio
import tempfile

from pydantic import BaseModel, Field

from actors import Client, ObjectContext, Settings, VirtualObject, Worker


class AgentState(BaseModel):
    answers: list[str] = Field(default_factory=list)


class Ask(BaseModel):
    question: str


class Answer(BaseModel):
    text: str


class Answered(BaseModel):  # an event: the only way state changes
    text: str


agent = VirtualObject("agent", state=AgentState)


async def call_llm(prompt: str) -> str:  # stand-ins for a real LLM and real tools
    await asyncio.sleep(0.01)
    return f"<answer to {prompt!r}>"


async def search_web(query: str) -> str:
    return f"[web: {query[:20]}]"


async def search_docs(query: str) -> str:
    return f"[docs: {query[:20]}]"


@agent.handler()
async def ask(ctx: ObjectContext[AgentState], req: Ask) -> Answer:
    # Each step runs once; after a crash its journaled result is returned instead.
    draft = await ctx.run("llm:draft", lambda: call_llm(req.question))
    web, docs = await asyncio.gather(  # parallel tool calls journal deterministically
        ctx.run("tool:web", lambda: search_web(draft)),
        ctx.run("tool:docs", lambda: search_docs(draft)),
    )
    text = await ctx.run("llm:final", lambda: call_llm(draft + web + docs))
    ctx.emit(Answered(text=text))
    return Answer(text=text)


@agent.on_event(Answered)
def answered(state: AgentState, event: Answered) -> None:
    state.answers.append(event.text)


async def main() -> None:
    settings = Settings(data_dir=tempfile.mkdtemp(prefix="tether-quickstart-"), partitions=2)
    async with Worker([agent], settings), Client.connect(settings) as client:
        answer = await client.call(ask, "session-42", Ask(question="What is durable execution?"))
        print("answer:", answer.text)
        await client.send(ask, "session-42", Ask(question="And why Kafka?"), idempotency_key="q2")
        await client.send(ask, "session-42", Ask(question="And why Kafka?"), idempotency_key="q2")  # applied once
        await client.call(ask, "session-42", Ask(question="Thanks!"))  # one key: runs after both sends
        state = await client.state("agent", "session-42")
        print("answers:", len(state["state"]["answers"]), "version:", state["version"])


if __name__ == "__main__":
    asyncio.run(main())
