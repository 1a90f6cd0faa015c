"""Session types exercising fallbacks, circuit breakers and large inputs.

The assistant keeps the quickstart agent's state, reply and event (and its fold); only its
request and handlers are its own.
"""

from __future__ import annotations

from pydantic import BaseModel

from actors import CircuitPolicy, ObjectContext, RetryableError, RetryPolicy, VirtualObject
from harness.examples import example

quickstart = example("quickstart")
Notes, Answer, Answered = quickstart.AgentState, quickstart.Answer, quickstart.Answered
CALLS: dict[str, int] = {}


class Ask(BaseModel):
    question: str
    primary_up: bool = False


assistant = VirtualObject("assistant", state=Notes)


def _count(name: str) -> None:
    CALLS[name] = CALLS.get(name, 0) + 1


@assistant.handler()
async def ask(ctx: ObjectContext[Notes], req: Ask) -> Answer:
    async def big_model() -> str:
        _count("big")
        raise RetryableError("503 from the big model")

    async def small_model() -> str:
        _count("small")
        return f"small says: {req.question}"

    text = await ctx.run(
        "llm",
        big_model,
        fallback=small_model,
        fallback_after=2,
        retry=RetryPolicy(max_attempts=5, initial_interval=0.01),
    )
    ctx.emit(Answered(text=text))
    return Answer(text=text)


@assistant.handler(retry=RetryPolicy(max_attempts=1))
async def guarded(ctx: ObjectContext[Notes], req: Ask) -> Answer:
    async def provider() -> str:
        _count("provider")
        if not req.primary_up:
            raise RetryableError("provider down")
        return "ok"

    text = await ctx.run(
        "provider",
        provider,
        circuit=CircuitPolicy(failure_threshold=2, reset_timeout=60),
        retry=RetryPolicy(max_attempts=2, initial_interval=0.01, max_interval=0.01),
    )
    return Answer(text=text)


@assistant.handler()
async def pipeline(ctx: ObjectContext[Notes], req: Ask) -> Answer:
    parts = []
    for i in range(3):
        parts.append(await ctx.run(f"part{i}", lambda i=i: (_count(f"part{i}"), f"{req.question}-{i}")[1]))
    ctx.emit(Answered(text="|".join(parts)))
    return Answer(text="|".join(parts))


assistant.on_event(Answered)(quickstart.answered)
