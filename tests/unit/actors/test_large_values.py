"""`actors.protocol.large_values`: which values go by reference, and how readers get them back."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from actors import RuntimeSettings
from actors.protocol import Message
from actors.protocol.inbox import RESOLVE_HANDLER
from actors.protocol.large_values import LargeValues, by_reference, load_value, payload_of
from eventstore.blob_stores import open_blob_store
from eventstore.blobs import FileBlobStore, blob_ref
from eventstore.codec import pack
from eventstore.errors import BlobError

EF = b"sha256:" + b"ef" * 32
DONE_WITH_EVENTS_BLOB = (
    b"\x8b\xa1k\xa4done\xa2sv\x04\xa1o\x07\xa1i\xa2m1\xa1h\xa3ask\xa2ev\x90\xa1a\x01\xa2t0\x05\xa2t1\x06\xa1r"
    b"\x81\xa4text\xa2hi\xa3evb\xd9G" + EF
)
SUSPEND_WITH_EVENTS_BLOB = (
    b"\x8b\xa1k\xa3sus\xa1i\xa2m1\xa1m\x89\xa2id\xa2m1\xa1o\xa5agent\xa1k\xa2k1\xa1h\xa3ask\xa1p\x81\xa1q"
    b"\x01\xa2rp\x03\xa2ts\xcf\x00\x00\x01\x8f4\x06\x9e\x00\xa2nb\xc0\xa2sj\xc0\xa1o\x07\xa1t\t\xa1a\xc0\xa2ev"
    b"\x90\xa2ne\x01\xa2sv\x05\xa2pk\xc2\xa3evb\xd9G" + EF
)
SNAPSHOT_WITH_STATE_BLOB = b"\x84\xa1s\xc0\xa2sv\x03\xa2rc\x90\xa2sb\xd9G" + EF


def message(payload: object, handler: str = "ask") -> Message:
    return Message(id="m1", o="agent", k="k1", h=handler, p=payload, ts=1)


async def test_only_values_over_the_threshold_go_to_the_store(tmp_path: Path) -> None:
    values = LargeValues(FileBlobStore(tmp_path), threshold=1000)
    assert await values.offload("x" * 900) is None
    ref = await values.offload("x" * 2000)
    assert ref == blob_ref(pack("x" * 2000))
    assert await values.load(ref, "a value") == "x" * 2000
    assert await LargeValues(FileBlobStore(tmp_path), threshold=None).offload("x" * 2000) is None  # reads only

    small, large = message({"q": "hi"}), message({"q": "x" * 2000})
    assert await by_reference(values, small) is small
    moved = await by_reference(values, large)
    assert moved.payload is None and moved.payload_blob is not None and moved.id == large.id
    assert await by_reference(values, moved) is moved
    assert await payload_of(values, moved) == {"q": "x" * 2000}
    assert await payload_of(None, small) == {"q": "hi"}
    # The runtime's own handlers (an awakeable's resolution) keep their payload in the record.
    resolution = message({"id": "awk", "ok": "x" * 2000}, handler=RESOLVE_HANDLER)
    assert await by_reference(values, resolution) is resolution


async def test_a_reference_without_a_store_or_blob_is_a_typed_error(tmp_path: Path) -> None:
    moved = message(None).model_copy(update={"payload_blob": blob_ref(b"gone")})
    with pytest.raises(BlobError, match="no blob store is configured"):
        await payload_of(None, moved)
    values = LargeValues(FileBlobStore(tmp_path), threshold=1000)
    with pytest.raises(BlobError, match="missing"):
        await payload_of(values, moved)
    not_msgpack = await values.store.put(b"\xc1")
    with pytest.raises(BlobError, match="not a stored value"):
        await load_value(values, not_msgpack, "a reply")


def test_settings_name_the_store_by_location(tmp_path: Path) -> None:
    assert RuntimeSettings().blob_location is None and LargeValues.of(RuntimeSettings()) is None
    by_dir = RuntimeSettings(blob_threshold_bytes=1000, blob_dir=tmp_path)
    assert by_dir.blob_location == str(tmp_path)
    by_store = RuntimeSettings(blob_threshold_bytes=1000, blob_dir=tmp_path / "old", blob_store=str(tmp_path / "new"))
    assert by_store.blob_location == str(tmp_path / "new")
    values = LargeValues.of(by_store)
    assert values is not None and isinstance(values.store, FileBlobStore) and values.threshold == 1000
    reader = LargeValues.of(RuntimeSettings(blob_store=str(tmp_path)))  # a client that only reads
    assert reader is not None and reader.threshold is None
    assert RuntimeSettings(blob_dir="", blob_store="").blob_location is None  # empty variables name nothing
    with pytest.raises(ValidationError, match="TETHER_RUNTIME__BLOB_STORE"):
        RuntimeSettings(blob_threshold_bytes=1000)
    with pytest.raises(ValidationError, match="at most half"):
        RuntimeSettings(blob_threshold_bytes=900_000, blob_store=str(tmp_path))


def test_an_s3_location_without_the_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "boto3", None)  # as if `tether[s3]` were not installed
    monkeypatch.delitem(sys.modules, "eventstore.s3_blobs", raising=False)
    with pytest.raises(BlobError, match=r"tether\[s3\]"):
        open_blob_store("s3://bucket/prefix")


@pytest.mark.parametrize("checkpoint_every", [1, 100_000], ids=["from-snapshots", "from-events"])
async def test_large_events_and_snapshots_go_by_reference_and_a_restore_reads_them(
    tmp_path: Path, namespace: str, checkpoint_every: int
) -> None:
    from harness import blob_sessions as bs
    from harness.session_harness import WAIT, assert_eventually, make_settings, open_runtime

    from actors.inspection.views import session_history, session_view
    from actors.protocol.entries import Done, Suspend, decode
    from actors.protocol.snapshot import Snapshot

    blobs = tmp_path / "blobs"
    runtime = RuntimeSettings(blob_threshold_bytes=100_000, blob_dir=blobs, checkpoint_every=checkpoint_every)
    settings = make_settings("embedded", tmp_path / "data", namespace, partitions=1, runtime=runtime)
    text = bs.page(1)
    async with open_runtime([bs.docs], settings) as rt:
        await rt.client.call(bs.file, "d1", bs.Document(text=text), timeout=WAIT)
        await rt.client.send(bs.file_then_wait, "d2", bs.Document(text=text + "!"))

        async def suspended() -> None:
            assert [e for e in await session_history(settings, "docs", "d2") if e["kind"] == "sus"]

        await assert_eventually(suspended, timeout=WAIT)
        await rt.client.call(bs.file, "d3", bs.Document(text="small"), timeout=WAIT)  # a checkpoint after d2's
        events_records = await rt.records(rt.topics.events)
        snapshot_records = [r for r in await rt.records(rt.topics.snapshots) if r.key != b"__checkpoint__"]
        assert max(len(r.value or b"") for r in events_records + snapshot_records) < 100_000
        entries = [decode(r.value) for r in events_records if r.value is not None]
        snapshots = [Snapshot.decode(r.value) for r in snapshot_records if r.value is not None]
        await rt.restart_worker()  # a restore from the log: snapshots, then the events after them
        for key, filed in (("d1", [text]), ("d2", [text + "!"]), ("d3", ["small"])):
            state = await rt.state("docs", key)
            assert state["filed"] == filed, key
        view = await session_view(settings, "docs", "d1", objects=[bs.docs])
        assert view["state"]["filed"] == [text]
        plain_view = await session_view(settings, "docs", "d1")  # the snapshot's state, unfolded
        assert plain_view["state"] == ({"digests": [], "filed": [text]} if checkpoint_every == 1 else None)
    done = [e for e in entries if isinstance(e, Done) and e.handler == "file"]
    sus = [e for e in entries if isinstance(e, Suspend)]
    assert [e.events_blob is not None for e in done] == [True, False]  # d1's large event, d3's small one
    assert sus and sus[0].events == [] and sus[0].events_blob is not None
    if checkpoint_every == 1:  # the restore read snapshots whose state is in the blob store
        assert any(s.state_blob is not None and s.state is None for s in snapshots)
    else:  # no snapshot: the restore folded the events, read from the blob store
        assert snapshots == []


def test_event_and_snapshot_references_golden_bytes() -> None:
    from harness import golden_formats as golden

    from actors.protocol.entries import Done, Suspend, decode
    from actors.protocol.snapshot import Snapshot

    ref = "sha256:" + "ef" * 32
    done = Done("m1", "ask", [], 4, 7, {"text": "hi"}, None, 1, 5, 6, None, ref)
    assert done.encode() == DONE_WITH_EVENTS_BLOB and decode(DONE_WITH_EVENTS_BLOB) == done
    message = Message.decode(golden.MESSAGE)
    sus = Suspend(message, 7, 9, None, [], 1, 5, events_blob=ref)
    assert sus.encode() == SUSPEND_WITH_EVENTS_BLOB and decode(SUSPEND_WITH_EVENTS_BLOB) == sus
    snapshot = Snapshot(None, 3, [], ref)
    assert snapshot.encode() == SNAPSHOT_WITH_STATE_BLOB and Snapshot.decode(SNAPSHOT_WITH_STATE_BLOB) == snapshot
    # Entries and snapshots without references: the same bytes as before.
    plain = decode(golden.DONE_OK)
    assert isinstance(plain, Done) and plain.events_blob is None and plain.encode() == golden.DONE_OK
    timer = decode(golden.SUSPEND_TIMER)
    assert isinstance(timer, Suspend) and timer.events_blob is None and timer.encode() == golden.SUSPEND_TIMER
    assert Snapshot.decode(golden.SNAPSHOT).state_blob is None
