"""A session type that streams tokens (`ctx.stream`), for the streaming tests.

`TETHER_TEST_HOLD` names a file: while it exists, the handler waits after streaming token
`hold_at` (a kill -9 lands mid-stream). Keys in `FAIL_ONCE` fail their first attempt after
`hold_at` tokens (a handler retry streams again and supersedes it).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic import BaseModel

from actors import ObjectContext, TerminalError, VirtualObject

FAIL_ONCE: set[str] = set()


class Tell(BaseModel):
    tokens: int = 30
    pause: float = 0.01
    hold_at: int = -1


class Told(BaseModel):
    text: str


class Quiet(BaseModel):
    pass


streamer = VirtualObject("streamer", state=Quiet)


def token(n: int) -> str:
    return f"tok{n} "


@streamer.handler()
async def tell(ctx: ObjectContext[Quiet], req: Tell) -> Told:
    for n in range(req.tokens):
        await ctx.stream(token(n))
        if n == req.hold_at:
            if ctx.key in FAIL_ONCE:
                FAIL_ONCE.discard(ctx.key)
                raise RuntimeError("fail mid-stream: the retry streams again")
            hold = os.environ.get("TETHER_TEST_HOLD")
            while hold and Path(hold).exists():
                await asyncio.sleep(0.05)
        await asyncio.sleep(req.pause)
    return Told(text="".join(token(n) for n in range(req.tokens)))


@streamer.handler()
async def silent(ctx: ObjectContext[Quiet], req: Tell) -> Told:
    return Told(text="nothing streamed")


@streamer.handler()
async def broken(ctx: ObjectContext[Quiet], req: Tell) -> Told:
    await ctx.stream("partial ")
    raise TerminalError("the provider refused")


@streamer.handler()
async def bloated(ctx: ObjectContext[Quiet], req: Tell) -> Told:
    await ctx.stream("a chunk ")
    return Told(text="x" * 50_000)  # a reply over the test's max_message_bytes
