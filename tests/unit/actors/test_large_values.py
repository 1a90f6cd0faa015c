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
