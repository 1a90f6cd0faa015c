"""A stream reader that disconnects and reconnects (from its position) as a chat UI would."""

from __future__ import annotations

from typing import Any

from actors import Client
from actors.client import StreamChunk
from harness import stream_sessions as ss


async def read_with_reconnects(
    client: Client, key: str, req: ss.Tell, *, reconnects: int = 3, every: int = 5, timeout: float = 120
) -> tuple[list[StreamChunk], Any, int]:
    """Read `tell`'s stream, leaving after every `every` chunks, `reconnects` times.

    Returns the chunks seen (across all readers), the reply and how many times it reconnected.
    """
    message_id = f"stream-{key}"
    stream = client.stream(ss.tell, key, req, idempotency_key=message_id, timeout=timeout)
    chunks: list[StreamChunk] = []
    done = 0
    while True:
        left_early = False
        async for chunk in stream:
            chunks.append(chunk)
            if done < reconnects and len(chunks) % every == 0:
                left_early = True
                break
        if not left_early:
            return chunks, stream.result(), done
        position = stream.position
        await stream.aclose()
        done += 1
        stream = client.stream_of(ss.tell, key, message_id, after=position, timeout=timeout)
