"""The peer's Counter virtual object (Restate Python SDK), served by hypercorn over HTTP/2.

Run as a process of its own: ``python -m bench.peer_restate.service --port 9080``; stop it
with SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

import restate
from restate import ObjectContext, ObjectSharedContext, VirtualObject

counter = VirtualObject("Counter")


@counter.handler()
async def add(ctx: ObjectContext, n: int) -> int:
    """Read the counter, add n, write it back, return the new value."""
    value = (await ctx.get("count", type_hint=int)) or 0
    value += n
    ctx.set("count", value)
    return value


def _step(value: int) -> int:
    return value


@counter.handler()
async def add_with_step(ctx: ObjectContext, n: int) -> int:
    """As ``add``, with one journaled ``ctx.run`` step between the read and the write."""
    value = (await ctx.get("count", type_hint=int)) or 0
    value = await ctx.run_typed("step", _step, restate.RunOptions(), value + n)
    ctx.set("count", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: ObjectSharedContext) -> int:
    """The current value (0 for a new key)."""
    return (await ctx.get("count", type_hint=int)) or 0


sdk_app = restate.app(services=[counter])


async def app(scope: Any, receive: Any, send: Any) -> None:
    """The SDK's ASGI app, with ASGI lifespan answered here (the SDK rejects it, noisily)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await sdk_app(scope, receive, send)


async def _serve(host: str, port: int) -> None:
    import hypercorn.asyncio
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    # The SDK's serving docs ask for these: Restate multiplexes many invocations as HTTP/2
    # streams over few connections and keeps them open.
    config.h2_max_concurrent_streams = 2**31 - 1
    config.keep_alive_max_requests = 2**31 - 1
    config.keep_alive_timeout = 2**31 - 1
    stop = asyncio.Event()
    # SIGINT, not SIGTERM: the SDK's ASGI app installs its own SIGTERM handler on its first
    # call (to notify open invocations), replacing any handler set here, so SIGTERM alone never
    # stops the server. The bench stops this process with SIGINT, then SIGKILL.
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    await hypercorn.asyncio.serve(app, config, shutdown_trigger=stop.wait)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
