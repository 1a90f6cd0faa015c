"""`ctx.run`'s keywords (`StepOptions`): read by the step as given, and an unknown one refused."""

from __future__ import annotations

from typing import Any, cast

import pytest
from pydantic import BaseModel

from actors import RetryableError, RetryPolicy, VirtualObject
from actors.protocol.entries import Completion, Step
from actors.protocol.inbox import Message
from actors.runtime.invocation import Invocation


class _State(BaseModel):
    pass


class _Out(BaseModel):
    n: int


class _Host:
    """An invocation's partition reduced to a journal in memory."""

    step_overrides = None
    client = cast(Any, None)
    step_blobs = None

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def step_limit(self, message: Message, index: int) -> int:
        return 1 << 20

    async def journal_step(self, message: Message, step: Step) -> None:
        self.steps.append(step)

    def completion(self, awakeable: str) -> Completion | None:
        return None

    async def stream_chunk(self, message: Message, chunk: Any) -> None:  # noqa: ANN401
        raise AssertionError("nothing streams here")


def _invocation(host: _Host) -> Invocation[_State]:
    obj = VirtualObject("opts", state=_State)
    message = Message(id="m1", o="opts", k="k", h="h", p={}, ts=0)
    return Invocation(host, obj, message, _State(), {}, 1)


async def test_the_keywords_reach_the_step() -> None:
    host = _Host()
    ctx = _invocation(host)
    calls: list[str] = []

    def primary() -> str:
        calls.append("primary")
        raise RetryableError("429")

    def fallback() -> str:
        calls.append("fallback")
        return "cheap"

    no_wait = RetryPolicy(max_attempts=5, initial_interval=0.0, jitter=0.0)
    value = await ctx.run("llm", primary, retry=no_wait, fallback=fallback, fallback_after=2)
    assert (value, calls) == ("cheap", ["primary", "primary", "fallback"])
    out = await ctx.run("typed", lambda: _Out(n=7), result_type=_Out)  # undeclared, a model would fail
    assert isinstance(out, _Out) and out.n == 7
    assert [(s.name, s.attempts) for s in host.steps] == [("llm", 3), ("typed", 1)]


async def test_an_unknown_keyword_is_refused_before_anything_runs() -> None:
    host = _Host()
    ctx = _invocation(host)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['retries'\]"):
        await ctx.run("llm", lambda: "x", retries=3)  # type: ignore[call-overload]
    assert host.steps == []
