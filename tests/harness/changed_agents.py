"""The quickstart agent and approval flow as a later deploy might change them, for the replayer tests.

Each is the same session type (same name, state and events) with one handler changed.
"""

from __future__ import annotations

import asyncio

from actors import ObjectContext, VirtualObject
from harness.examples import example

quickstart = example("quickstart")
approval = example("approval_flow")
original = quickstart.agent
Ask, Answer, Answered, AgentState = quickstart.Ask, quickstart.Answer, quickstart.Answered, quickstart.AgentState


def _agent() -> VirtualObject[AgentState]:
    agent: VirtualObject[AgentState] = VirtualObject("agent", state=AgentState)

    @agent.on_event(Answered)
    def answered(state: AgentState, event: Answered) -> None:
        state.answers.append(event.text)

    return agent


async def _final(ctx: ObjectContext[AgentState], draft: str, web: str, docs: str) -> Answer:
    """The quickstart's last step and event, which no variant changes."""
    text = await ctx.run("llm:final", lambda: quickstart.call_llm(draft + web + docs))
    ctx.emit(Answered(text=text))
    return Answer(text=text)


renamed = _agent()


@renamed.handler("ask")
async def ask_renamed(ctx: ObjectContext[AgentState], req: Ask) -> Answer:
    draft = await ctx.run("llm:draft", lambda: quickstart.call_llm(req.question))
    web, docs = await asyncio.gather(
        ctx.run("tool:search", lambda: quickstart.search_web(draft)),  # was "tool:web"
        ctx.run("tool:docs", lambda: quickstart.search_docs(draft)),
    )
    return await _final(ctx, draft, web, docs)


inserted = _agent()


@inserted.handler("ask")
async def ask_inserted(ctx: ObjectContext[AgentState], req: Ask) -> Answer:
    draft = await ctx.run("llm:draft", lambda: quickstart.call_llm(req.question))
    await ctx.run("llm:check", lambda: "fine")  # new
    web, docs = await asyncio.gather(
        ctx.run("tool:web", lambda: quickstart.search_web(draft)),
        ctx.run("tool:docs", lambda: quickstart.search_docs(draft)),
    )
    return await _final(ctx, draft, web, docs)


appended = _agent()


@appended.handler("ask")
async def ask_appended(ctx: ObjectContext[AgentState], req: Ask) -> Answer:
    answer = await quickstart.ask.fn(ctx, req)
    await ctx.run("email:send", lambda: "sent")  # new, after the recorded ones
    return answer  # type: ignore[no-any-return]


no_sleep = VirtualObject("publisher", state=approval.PublishState)
for event_type, fold in approval.agent.folds.items():
    no_sleep.on_event(event_type)(fold)


@no_sleep.handler("publish", deadline=3 * 86400)
async def publish_at_once(ctx: ObjectContext[approval.PublishState], req: approval.Draft) -> approval.Answer:
    approval_request = ctx.awakeable(str)  # the 30 s sleep is gone
    ctx.emit(approval.ApprovalRequested(awakeable_id=approval_request.id))
    await approval_request.result(timeout=86400)
    return approval.Answer(text="")
