"""Step results by reference (claim check) on the embedded log: a 20 MiB step result goes to the
blob store and comes back live, on a handler retry and after a crash between the blob write and
the step's commit (which leaves nothing visible and no second blob)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from harness import blob_sessions as bs
from harness.session_harness import WAIT, make_settings, open_runtime

from actors import RuntimeSettings
from actors.inspection.views import session_history
from actors.protocol import Step
from eventstore.blobs import FileBlobStore, blob_ref
from eventstore.errors import BlobError

STEP_WITH_BLOB = (
    b"\x88\xa1k\xa4step\xa1i\xa2m1\xa1n\x00\xa4name\xa5fetch\xa1a\x01\xa2t0\x01\xa2t1\x02\xa2rb\xd9G"
    b"sha256:0000000000000000000000000000000000000000000000000000000000000000"
)


def settings_with_blobs(tmp_path: Path, namespace: str) -> tuple[object, Path]:
    blobs = tmp_path / "blobs"
    runtime = RuntimeSettings(blob_threshold_bytes=100_000, blob_dir=blobs)
    return make_settings("embedded", tmp_path / "data", namespace, partitions=1, runtime=runtime), blobs


def expected(mib: int) -> bs.Fetched:
    text = bs.page(mib)
    return bs.Fetched(size=len(text), digest=hashlib.sha256(text.encode()).hexdigest())


def test_a_step_entry_with_a_blob_reference_golden_bytes() -> None:
    ref = "sha256:" + "0" * 64
    step = Step("m1", 0, "fetch", None, None, 1, 1, 2, ref)
    assert step.encode() == STEP_WITH_BLOB
    assert Step.from_wire(step.to_wire()) == step
    assert step.outcome == ({"blob": ref}, None)
    assert Step.from_wire(step.to_seed()).blob == ref  # `sessions restart --from-step` keeps it


async def test_the_file_store_is_content_addressed_and_checks_what_it_reads(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    ref = await store.put(b"page")
    assert ref == blob_ref(b"page") and await store.put(b"page") == ref
    assert len(bs.blob_files(tmp_path)) == 1
    assert await store.get(ref) == b"page"
    (path,) = bs.blob_files(tmp_path)
    path.write_bytes(b"tampered")
    with pytest.raises(BlobError, match="corrupt"):
        await store.get(ref)
    for bad in ("sha256:../../etc/passwd", "md5:abc", blob_ref(b"never stored")):
        with pytest.raises(BlobError):
            await store.get(bad)


async def test_a_20_mib_step_result_round_trips_and_replays(tmp_path: Path, namespace: str) -> None:
    bs.RUNS.clear()
    bs.FAIL_ONCE.add("k1")
    settings, blobs = settings_with_blobs(tmp_path, namespace)
    async with open_runtime([bs.big], settings) as rt:
        reply = await rt.client.call(bs.fetch, "k1", bs.Fetch(mib=20), timeout=WAIT)
        history = await session_history(settings, "big", "k1")  # type: ignore[arg-type]
    assert reply == expected(20)
    assert bs.RUNS == ["k1"], "the handler retry read the result from the blob store"
    (step,) = [e for e in history if e["kind"] == "step"]
    assert step["result"] == {"blob": step["blob"]} and step["blob"].startswith("sha256:")
    assert len(bs.blob_files(blobs)) == 1


async def test_a_crash_between_the_blob_write_and_the_commit_leaves_no_half_state(
    tmp_path: Path, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bs.RUNS.clear()
    settings, blobs = settings_with_blobs(tmp_path, namespace)
    written = asyncio.Event()
    original = FileBlobStore.put

    async def put_then_hang(self: FileBlobStore, data: bytes) -> str:
        ref = await original(self, data)
        if not written.is_set():
            written.set()
            await asyncio.Event().wait()  # the worker stops here: blob written, step not committed
        return ref

    monkeypatch.setattr(FileBlobStore, "put", put_then_hang)
    async with open_runtime([bs.big], settings) as rt:
        call = asyncio.create_task(rt.client.call(bs.fetch, "k2", bs.Fetch(mib=2), timeout=60))
        await asyncio.wait_for(written.wait(), WAIT)
        await rt.stop_worker()
        history = await session_history(settings, "big", "k2")  # type: ignore[arg-type]
        assert not [e for e in history if e["kind"] == "step"], "nothing of the step is visible"
        assert len(bs.blob_files(blobs)) == 1  # an unreferenced blob, never read
        await rt.start_worker()
        reply = await call
    assert reply == expected(2)
    assert bs.RUNS == ["k2", "k2"]  # the step ran again
    assert len(bs.blob_files(blobs)) == 1, "the same content: the same blob, no duplicate"


def test_a_threshold_needs_a_blob_dir_and_fits_a_record() -> None:
    with pytest.raises(ValueError, match="blob_dir"):
        RuntimeSettings(blob_threshold_bytes=1000)
    with pytest.raises(ValueError, match="half of max_message_bytes"):
        RuntimeSettings(blob_threshold_bytes=900_000, blob_dir=Path("/tmp/blobs"))
