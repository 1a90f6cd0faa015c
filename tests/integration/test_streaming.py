"""Durable token streaming on the real broker: a reader that reconnects three times sees every
chunk once, in order, then the reply (the embedded log's cases: tests/unit/actors/test_streaming.py)."""

from __future__ import annotations

import pytest
from harness import stream_sessions as ss
from harness.session_harness import Runtime
from harness.streaming import read_with_reconnects

pytestmark = [pytest.mark.kafka, pytest.mark.serves(ss.streamer, backend="kafka")]


async def test_a_reader_that_reconnects_three_times_on_kafka(runtime: Runtime) -> None:
    chunks, reply, reconnects = await read_with_reconnects(runtime.client, "k1", ss.Tell(tokens=40, pause=0.01))
    assert reconnects == 3
    assert [c.data for c in chunks] == [ss.token(n) for n in range(40)]
    assert reply.text == "".join(ss.token(n) for n in range(40))
