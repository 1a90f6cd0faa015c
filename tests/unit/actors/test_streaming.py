"""Durable token streaming on the embedded log: `ctx.stream`, `client.stream`, `client.stream_of`.

The same reader runs against the real broker in tests/integration/test_streaming.py and under a
kill -9 in tests/chaos/test_stream_kills.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from harness import stream_sessions as ss
from harness.session_harness import make_settings, open_runtime
from harness.streaming import read_with_reconnects

from actors import InvocationError, RuntimeSettings, SyncClient


async def test_a_reader_that_reconnects_three_times_sees_every_chunk_once_in_order(
    tmp_path: Path, namespace: str
) -> None:
    settings = make_settings("embedded", tmp_path, namespace, partitions=2)
    async with open_runtime([ss.streamer], settings) as rt:
        chunks, reply, reconnects = await read_with_reconnects(rt.client, "r1", ss.Tell(tokens=40, pause=0.01))
    assert reconnects == 3
    assert [c.data for c in chunks] == [ss.token(n) for n in range(40)]
    assert [c.seq for c in chunks] == list(range(40))
    assert reply.text == "".join(ss.token(n) for n in range(40))


async def test_a_retried_attempt_supersedes_the_failed_one(tmp_path: Path, namespace: str) -> None:
    settings = make_settings("embedded", tmp_path, namespace, partitions=2)
    ss.FAIL_ONCE.add("r2")
    async with open_runtime([ss.streamer], settings) as rt:
        stream = rt.client.stream(ss.tell, "r2", ss.Tell(tokens=12, pause=0.0, hold_at=5))
        chunks = [chunk async for chunk in stream]
        reply = stream.result()
    restarts = [i for i, c in enumerate(chunks) if c.seq == 0]
    assert restarts == [0, 6], [(c.attempt, c.seq) for c in chunks]  # attempt 1 streamed 0..5, then failed
    final = chunks[restarts[-1] :]
    assert [c.data for c in final] == [ss.token(n) for n in range(12)]
    assert {c.attempt for c in final} == {2} and chunks[0].attempt == 1
    assert stream.end is not None and stream.end.attempt == 2 and stream.end.chunks == 12
    assert reply.text.startswith("tok0 ")


async def test_the_stream_ends_with_the_typed_error(tmp_path: Path, namespace: str) -> None:
    settings = make_settings("embedded", tmp_path, namespace, partitions=2)
    async with open_runtime([ss.streamer], settings) as rt:
        stream = rt.client.stream(ss.broken, "r3", ss.Tell())
        assert [c.data async for c in stream] == ["partial "]
        assert stream.end is not None and stream.end.error is not None
        with pytest.raises(InvocationError, match="the provider refused"):
            stream.result()


async def test_a_handler_that_streams_nothing_ends_with_its_reply(tmp_path: Path, namespace: str) -> None:
    settings = make_settings("embedded", tmp_path, namespace, partitions=2)
    async with open_runtime([ss.streamer], settings) as rt:
        stream = rt.client.stream(ss.silent, "q", ss.Tell())
        with pytest.raises(RuntimeError, match="not ended"):
            stream.result()
        assert [c async for c in stream] == []
        assert stream.end is None and stream.result().text == "nothing streamed"


async def test_the_sync_client_streams_too(tmp_path: Path, namespace: str) -> None:
    settings = make_settings("embedded", tmp_path, namespace, partitions=2)
    async with open_runtime([ss.streamer], settings):

        def read() -> tuple[list[str], str]:
            with SyncClient(settings) as client:
                stream = client.stream(ss.tell, "sync", ss.Tell(tokens=5, pause=0.0))
                return [c.data for c in stream], stream.result().text

        chunks, text = await asyncio.to_thread(read)
    assert chunks == [ss.token(n) for n in range(5)] and text == "".join(chunks)


async def test_an_oversize_reply_ends_the_stream_with_its_error(tmp_path: Path, namespace: str) -> None:
    settings = make_settings(
        "embedded", tmp_path, namespace, partitions=2, runtime=RuntimeSettings(max_message_bytes=20_000)
    )
    async with open_runtime([ss.streamer], settings) as rt:
        stream = rt.client.stream_of(ss.bloated, "big", await rt.client.send(ss.bloated, "big", ss.Tell()), timeout=30)
        assert [c.data async for c in stream] == ["a chunk "]
        assert stream.end is not None and stream.end.error is not None
        with pytest.raises(InvocationError, match="max_message_bytes|bytes"):
            stream.result()
