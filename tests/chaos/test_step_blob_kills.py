"""A 20 MiB step result by reference on the real broker, and a kill -9 between its blob write and
its entry's commit: nothing of the step is visible, the new worker runs it again, the same blob
serves it (no second one), and the caller gets the right reply."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from harness import blob_sessions as bs
from harness.session_harness import WorkerProcess, assert_eventually, settings_for, worker_env

from actors import Client, RuntimeSettings
from actors.inspection.views import session_history

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize("backend", ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
async def test_kill_9_after_the_blob_write_leaves_no_half_state(
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
    worker = WorkerProcess("harness.blob_sessions:big", env, tmp_path)
    worker.start()
    try:
        async with Client.connect(settings) as client:
            call = asyncio.create_task(client.call(bs.fetch, "big-1", bs.Fetch(mib=20), timeout=240))

            def blob_written() -> None:
                assert hold.with_suffix(".written").exists(), worker.output()[-2000:]

            await assert_eventually(blob_written, timeout=120)
            worker.kill()
            history = await session_history(settings, "big", "big-1")
            assert not [e for e in history if e["kind"] == "step"], "nothing of the step is visible"
            assert len(bs.blob_files(blobs)) == 1
            hold.unlink()
            worker.start()
            reply = await call
            history = await session_history(settings, "big", "big-1")
    except BaseException:
        print(worker.logs())
        raise
    finally:
        worker.cleanup()
    text = bs.page(20)
    assert reply == bs.Fetched(size=len(text), digest=hashlib.sha256(text.encode()).hexdigest())
    assert len(ledger.read_text().splitlines()) == 2  # the step ran again after the kill
    assert len(bs.blob_files(blobs)) == 1, "the same content: the same blob, no duplicate"
    (step,) = [e for e in history if e["kind"] == "step"]
    assert step["blob"] == "sha256:" + hashlib.sha256(bs.blob_files(blobs)[0].read_bytes()).hexdigest()
