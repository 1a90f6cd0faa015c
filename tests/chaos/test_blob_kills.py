"""A value by reference and a kill -9 between its blob write and the commit of the entry that
names it, on both backends: nothing of the step or invocation is visible, the new worker runs it
again into the same blob (no second one), and the caller gets the whole reply.

A 20 MiB step result, and a 5 MiB reply (the invocation's done entry)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from harness import blob_sessions as bs
from harness.blob_kills import held_blob_run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("backend", ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)]),
]


async def test_kill_9_after_the_blob_write_leaves_no_half_state(
    request: pytest.FixtureRequest, backend: str, namespace: str, tmp_path: Path
) -> None:
    run = held_blob_run(request, backend, namespace, tmp_path, "big")
    reply, history = await run.call_across_a_kill(
        lambda client: client.call(bs.fetch, "big-1", bs.Fetch(mib=20), timeout=240), ("big", "big-1"), "step", 1
    )
    text = bs.page(20)
    assert reply == bs.Fetched(size=len(text), digest=hashlib.sha256(text.encode()).hexdigest())
    assert len(run.ledger.read_text().splitlines()) == 2  # the step ran again after the kill
    assert len(bs.blob_files(run.blobs)) == 1, "the same content: the same blob, no duplicate"
    (step,) = [e for e in history if e["kind"] == "step"]
    assert step["blob"] == "sha256:" + hashlib.sha256(bs.blob_files(run.blobs)[0].read_bytes()).hexdigest()


async def test_kill_9_after_the_reply_blob_write_leaves_no_half_state(
    request: pytest.FixtureRequest, backend: str, namespace: str, tmp_path: Path
) -> None:
    run = held_blob_run(request, backend, namespace, tmp_path, "docs")
    text = bs.page(5)
    # two blobs at the kill: the client wrote the message's, the worker the reply's
    document = bs.Document(text=text)
    reply, history = await run.call_across_a_kill(
        lambda client: client.call(bs.rewrite, "doc-1", document, timeout=240), ("docs", "doc-1"), "done", 2
    )
    assert reply == bs.Rewritten(text=text.upper(), digest=bs.digest(text))
    assert len(run.ledger.read_text().splitlines()) == 2  # the handler ran again after the kill
    assert len(bs.blob_files(run.blobs)) == 2, "the same contents: the same two blobs, no duplicate"
    (done,) = [e for e in history if e["kind"] == "done"]
    assert done["result"] == {"blob": run.hold.with_suffix(".written").read_text()}
