"""Messages and replies by reference (claim check) on both backends: a 5 MiB message and a 5 MiB
reply round-trip through the blob store (records stay small), as do a large `ctx.send`, a
stream's end and a duplicate's recorded reply; a missing blob fails the invocation, typed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from harness import blob_sessions as bs
from harness.session_harness import WAIT, assert_eventually, open_runtime, settings_for

from actors import InvocationError, RuntimeSettings
from actors.inspection.views import session_history
from actors.protocol import Message, decode_stream_record
from eventstore import Topics, unpack

MIB = 1024 * 1024
BACKENDS = ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)]


def settings_with_blobs(request: pytest.FixtureRequest, backend: str, tmp_path: Path, namespace: str):  # type: ignore[no-untyped-def]
    runtime = RuntimeSettings(blob_threshold_bytes=100_000, blob_dir=tmp_path / "blobs")
    return settings_for(request, backend, tmp_path / "data", namespace, partitions=2, runtime=runtime)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_5_mib_message_and_a_5_mib_reply_round_trip(
    request: pytest.FixtureRequest, backend: str, namespace: str, tmp_path: Path
) -> None:
    settings = settings_with_blobs(request, backend, tmp_path, namespace)
    text = bs.page(5)
    assert len(text) == 5 * MIB
    async with open_runtime([bs.docs], settings) as rt:
        reply = await rt.client.call(bs.rewrite, "d1", bs.Document(text=text), timeout=WAIT * 4)
        assert reply == bs.Rewritten(text=text.upper(), digest=bs.digest(text))
        # The same idempotency key again: the recorded reply is the reference, read back whole.
        once = await rt.client.call(bs.rewrite, "d2", bs.Document(text=text), idempotency_key="k", timeout=WAIT * 4)
        again = await rt.client.call(bs.rewrite, "d2", bs.Document(text=text), idempotency_key="k", timeout=WAIT * 4)
        assert once == again == reply
        # A streamed call ends with the reference too; the reader gets the value.
        stream = rt.client.stream(bs.rewrite_aloud, "d3", bs.Document(text=text), timeout=WAIT * 4)
        assert [c.data async for c in stream] == ["rewriting"]
        assert stream.end is not None and stream.end.result_blob is not None
        assert stream.result() == reply
        # A large ctx.send goes by reference as well and is read by the receiving session.
        await rt.client.call(bs.forward, "d4", bs.Document(text=text), timeout=WAIT * 4)

        async def kept() -> None:
            state = await rt.client.state("docs", "d4-copy")
            assert state["state"]["digests"] == [bs.digest(text)]

        await assert_eventually(kept, timeout=WAIT * 4)
        topics = Topics(settings.namespace)
        inbox = await rt.records(topics.inbox)
        replies = await rt.records(topics.replies)
        streams = [decode_stream_record(r.value) for r in await rt.records(topics.streams)]
        history = await session_history(settings, "docs", "d1")
    # Every record stayed small: the values are in the blob store, once per content.
    assert inbox and replies and max(len(r.value) for r in inbox + replies) < 1000
    big = [Message.decode(r.value) for r in inbox if unpack(r.value).get("pb")]
    assert len(big) == 6 and len({m.payload_blob for m in big}) == 1  # d1, d2 twice, d3, d4, d4-copy: one blob
    assert {"okb"} <= {k for r in replies for k in unpack(r.value)}
    assert [e.result_blob is not None for e in streams if e is not None and not hasattr(e, "seq")] == [True]
    (done,) = [e for e in history if e["kind"] == "done"]
    assert str(done["result"]["blob"]).startswith("sha256:")
    assert len(bs.blob_files(tmp_path / "blobs")) == 2  # the document and its upper-case reply


async def test_a_missing_blob_fails_the_invocation_typed(
    request: pytest.FixtureRequest, namespace: str, tmp_path: Path
) -> None:
    settings = settings_with_blobs(request, "embedded", tmp_path, namespace)
    text = bs.page(1)
    async with open_runtime([bs.docs], settings, start_worker=False) as rt:
        task = asyncio.create_task(rt.client.call(bs.rewrite, "d1", bs.Document(text=text), timeout=WAIT * 4))

        def blob_written() -> None:
            assert bs.blob_files(tmp_path / "blobs")

        await assert_eventually(blob_written, timeout=WAIT)
        for path in bs.blob_files(tmp_path / "blobs"):
            path.unlink()
        await rt.start_worker()
        with pytest.raises(InvocationError, match="missing"):
            await task
        # The worker goes on: the next message (its blob present) is answered.
        reply = await rt.client.call(bs.rewrite, "d2", bs.Document(text=text), timeout=WAIT * 4)
        assert reply.digest == bs.digest(text)
