"""The README's approval flow: a durable sleep, a human approval with a one-day timeout, a fallback model.

`tests/unit/actors/test_testkit.py` tests it with `actors.testing.SessionTestKit` in virtual
time (the day-long wait takes milliseconds). Serve it with `tether serve examples.approval_flow:agent`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from actors import Budget, CircuitPolicy, ObjectContext, VirtualObject


class PublishState(BaseModel):
    waiting_for: str | None = None
    published: list[str] = Field(default_factory=list)
    rejected: int = 0


class Draft(BaseModel):
    text: str


class Answer(BaseModel):
    text: str


class ApprovalRequested(BaseModel):
    awakeable_id: str


class Published(BaseModel):
    text: str


class Rejected(BaseModel):
    verdict: str


agent = VirtualObject("publisher", state=PublishState)


async def big_model(text: str) -> str:  # stand-ins for two LLMs
    return f"polished: {text}"


async def small_model(text: str) -> str:
    return f"ok: {text}"


@agent.handler(deadline=3 * 86400, budget=Budget(retries=20, cost=5.0))
async def publish(ctx: ObjectContext[PublishState], req: Draft) -> Answer:
    await ctx.sleep(30)  # a durable timer: survives any restart
    approval = ctx.awakeable(str)  # a durable promise with an id
    ctx.emit(ApprovalRequested(awakeable_id=approval.id))  # commits now: visible while it waits
    verdict = await approval.result(timeout=86400)  # days, across restarts, holding no memory
    if verdict != "yes":
        ctx.emit(Rejected(verdict=verdict))
        return Answer(text="")
    text = await ctx.run(
        "llm:final",
        lambda: big_model(req.text),
        fallback=lambda: small_model(req.text),
        fallback_after=2,  # a cheaper model after 2 failures
        circuit=CircuitPolicy(failure_threshold=5, reset_timeout=30),  # stop calling a failing provider
        timeout=60,
        heartbeat_timeout=10,
        result_type=str,
    )
    ctx.charge(0.02)  # cost units against the budget
    ctx.emit(Published(text=text))
    return Answer(text=text)


@agent.on_event(ApprovalRequested)
def approval_requested(state: PublishState, event: ApprovalRequested) -> None:
    state.waiting_for = event.awakeable_id


@agent.on_event(Published)
def published(state: PublishState, event: Published) -> None:
    state.waiting_for = None
    state.published.append(event.text)


@agent.on_event(Rejected)
def rejected(state: PublishState, event: Rejected) -> None:
    state.waiting_for = None
    state.rejected += 1
