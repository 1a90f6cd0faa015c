"""`DurableAgent(stream_text=True)`: the model's text goes out through `ctx.stream` as it arrives;
after a handler retry the replayed request streams its journaled text again, without calling
the model again, so the last attempt's stream is complete."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from harness.faults import FailOnce
from harness.session_harness import make_settings, open_runtime
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage
from pydantic_ai.models.function import AgentInfo, FunctionModel

from actors import ObjectContext, VirtualObject
from actors.agents import DurableAgent

WORDS = ["one ", "two ", "three ", "four "]
REQUESTS: list[int] = []
FAIL_ONCE = FailOnce()


async def words(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
    REQUESTS.append(len(messages))
    for word in WORDS:
        yield word


class Empty(BaseModel):
    pass


class Said(BaseModel):
    text: str


talker = VirtualObject("talker", state=Empty)
durable = DurableAgent(Agent(FunctionModel(stream_function=words), name="talker"), stream_text=True)


@talker.handler()
async def talk(ctx: ObjectContext[Empty], req: Empty) -> Said:
    result = await durable.run(ctx, "talk")
    FAIL_ONCE.check(ctx.key)
    return Said(text=result.output)


async def test_model_text_streams_live_and_again_from_the_journal(tmp_path: Path, namespace: str) -> None:
    REQUESTS.clear()
    FAIL_ONCE.add("t1")
    settings = make_settings("embedded", tmp_path, namespace, partitions=1)
    async with open_runtime([talker], settings) as rt:
        stream = rt.client.stream(talk, "t1", Empty())
        chunks = [c async for c in stream]
        reply = stream.result()
    assert reply.text == "".join(WORDS)
    assert REQUESTS == [1], "the model was called once: the retry replayed its journaled response"
    restarts = [i for i, c in enumerate(chunks) if c.seq == 0]
    assert len(restarts) == 2
    assert [c.data for c in chunks[: restarts[1]]] == WORDS  # live, token by token
    assert "".join(c.data for c in chunks[restarts[1] :]) == "".join(WORDS)  # replayed: the text again
    assert stream.end is not None and stream.end.attempt == 2
