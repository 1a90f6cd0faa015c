"""Checked by mypy (see tests/unit/test_static_checks.py): the public API keeps its types."""

from __future__ import annotations

from typing import assert_type

from pydantic import BaseModel

from actors import Awakeable, Client, ObjectContext, VirtualObject


class State(BaseModel):
    n: int = 0


class In(BaseModel):
    x: int


class Out(BaseModel):
    y: int


obj = VirtualObject("typed", state=State)


@obj.handler()
async def double(ctx: ObjectContext[State], req: In) -> Out:
    value = await ctx.run("sync step", lambda: req.x * 2)
    assert_type(value, int)

    async def fetch() -> str:
        return "text"

    text = await ctx.run("async step", fetch)
    assert_type(text, str)
    awk = ctx.awakeable(str)
    assert_type(awk, Awakeable[str])
    assert_type(ctx.state, State)
    return Out(y=value)


async def caller(client: Client) -> None:
    out = await client.call(double, "k", In(x=1))
    assert_type(out, Out)
    message_id = await client.send(double, "k", In(x=1))
    assert_type(message_id, str)
