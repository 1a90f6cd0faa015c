"""Blob stores for values too large for a record (claim check): the record carries a reference.

A reference is ``sha256:<hex>`` of the bytes: content-addressed, so a retried write (a step run
again after a crash between its blob write and its record's commit) stores nothing new, and a
reader can check what it got. `FileBlobStore` keeps one file per blob under a directory every
worker of the namespace can reach (a local disk for one machine, a shared file system
otherwise). A blob no committed record references (a crash right after its write) is never
read; `eventstore.blob_sweep` (``tether blobs gc``) deletes such blobs once they are old enough.
`eventstore.blob_stores.open_blob_store` picks the store of a location: a directory, or
``s3://bucket/prefix`` (`eventstore.s3_blobs`, the ``tether[s3]`` extra).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from .errors import BlobError

__all__ = ["BlobError", "BlobStore", "FileBlobStore", "StoredBlob", "SweepableBlobStore", "blob_ref"]

_PREFIX = "sha256:"


def blob_ref(data: bytes) -> str:
    """The content address of `data`."""
    return _PREFIX + hashlib.sha256(data).hexdigest()


class BlobStore(Protocol):
    """Where large values go; records carry `blob_ref` references to them."""

    async def put(self, data: bytes) -> str:
        """Store `data` (durably, once per content) and return its reference."""
        ...

    async def get(self, ref: str) -> bytes:
        """The bytes of `ref`; raises `BlobError` if missing or corrupt."""
        ...


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """One blob as its store lists it."""

    ref: str
    size: int
    written_s: float
    """When it was last written (epoch seconds): a put of content already stored renews it."""


@runtime_checkable
class SweepableBlobStore(BlobStore, Protocol):
    """A blob store that can list and delete its blobs (`eventstore.blob_sweep`)."""

    async def blobs(self) -> list[StoredBlob]:
        """Every blob stored."""
        ...

    async def delete(self, ref: str) -> None:
        """Delete the blob `ref` (nothing if it is not there)."""
        ...


class FileBlobStore:
    """Blobs as files ``<root>/<2 hex>/<62 hex>``, written to a temporary file and renamed."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, ref: str) -> Path:
        digest = ref[len(_PREFIX) :] if ref.startswith(_PREFIX) else ""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise BlobError(f"not a blob reference: {ref[:80]!r}")
        return self.root / digest[:2] / digest[2:]

    async def put(self, data: bytes) -> str:
        """Store `data` unless a blob with its content exists; return its reference."""
        ref = blob_ref(data)
        await asyncio.to_thread(self._write, self._path(ref), data)
        return ref

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        if path.exists():
            try:
                os.utime(path)  # written again: renewed, so a sweep does not take it from the new record
                return
            except FileNotFoundError:
                pass  # swept meanwhile: write it again
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def get(self, ref: str) -> bytes:
        """The bytes of `ref`, checked against it."""
        path = self._path(ref)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise BlobError(f"blob {ref} is missing from {self.root}") from None
        if blob_ref(data) != ref:
            raise BlobError(f"blob {ref} in {self.root} does not match its reference (corrupt)")
        return data

    async def blobs(self) -> list[StoredBlob]:
        """Every blob file under the root (temporary files of writes in progress left out)."""
        return await asyncio.to_thread(self._list)

    def _list(self) -> list[StoredBlob]:
        out: list[StoredBlob] = []
        if not self.root.is_dir():
            return out
        for folder in self.root.iterdir():
            if len(folder.name) != 2 or not folder.is_dir():
                continue
            for path in folder.iterdir():
                if path.name.startswith(".tmp-") or len(path.name) != 62:
                    continue
                try:
                    info = path.stat()
                except FileNotFoundError:
                    continue
                out.append(StoredBlob(_PREFIX + folder.name + path.name, info.st_size, info.st_mtime))
        return out

    async def delete(self, ref: str) -> None:
        """Delete the file of `ref`, if it exists."""
        await asyncio.to_thread(self._path(ref).unlink, True)
