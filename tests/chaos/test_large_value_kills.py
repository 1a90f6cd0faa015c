"""A 5 MiB reply by reference and a kill -9 between its blob write and the commit of its
invocation: nothing of the invocation is visible (no done entry, no reply), the new worker runs
it again into the same blob (no second one), and the caller gets the whole reply."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from harness import blob_sessions as bs
from harness.session_harness import WorkerProcess, assert_eventually, settings_for, worker_env

from actors import Client, RuntimeSettings
from actors.inspection.views import session_history

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize("backend", ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
async def test_kill_9_after_the_reply_blob_write_leaves_no_half_state(
    request: pytest.FixtureRequest, backend: str, namespace: str, tmp_path: Path
) -> None:
    blobs, hold, ledger = tmp_path / "blobs", tmp_path / "hold", tmp_path / "ledger"
    runtime = RuntimeSettings(blob_threshold_bytes=100_000, blob_dir=blobs)
    settings = settings_for(request, backend, tmp_path / "data", namespace, partitions=2, runtime=runtime)
    hold.touch()
    env = worker_env(
        settings,
        TETHER_RUNTIME__BLOB_THRESHOLD_BYTES="100000",
        TETHER_RUNTIME__BLOB_DIR=str(blobs),
        TETHER_TEST_BLOB_HOLD=str(hold),
        TETHER_TEST_LEDGER=str(ledger),
    )
    text = bs.page(5)
    worker = WorkerProcess("harness.blob_sessions:docs", env, tmp_path)
    worker.start()
    try:
        async with Client.connect(settings) as client:
            call = asyncio.create_task(client.call(bs.rewrite, "doc-1", bs.Document(text=text), timeout=240))

            def reply_blob_written() -> None:  # the client wrote the message's blob, the worker the reply's
                assert hold.with_suffix(".written").exists(), worker.output()[-2000:]

            await assert_eventually(reply_blob_written, timeout=120)
            worker.kill()
            history = await session_history(settings, "docs", "doc-1")
            assert not [e for e in history if e["kind"] == "done"], "nothing of the invocation is visible"
            assert not call.done()
            assert len(bs.blob_files(blobs)) == 2
            hold.unlink()
            worker.start()
            reply = await call
            history = await session_history(settings, "docs", "doc-1")
    except BaseException:
        print(worker.logs())
        raise
    finally:
        worker.cleanup()
    assert reply == bs.Rewritten(text=text.upper(), digest=bs.digest(text))
    assert len(ledger.read_text().splitlines()) == 2  # the handler ran again after the kill
    assert len(bs.blob_files(blobs)) == 2, "the same contents: the same two blobs, no duplicate"
    (done,) = [e for e in history if e["kind"] == "done"]
    assert done["result"] == {"blob": hold.with_suffix(".written").read_text()}
