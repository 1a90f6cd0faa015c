"""The blob store of a location: a directory, or ``s3://bucket/prefix`` (the ``s3`` extra)."""

from __future__ import annotations

from pathlib import Path

from .blobs import BlobError, FileBlobStore, SweepableBlobStore

__all__ = ["open_blob_store"]


def open_blob_store(location: str) -> SweepableBlobStore:
    """The blob store at `location`: ``s3://bucket/prefix`` (S3 or compatible), else a directory.

    Raises:
        BlobError: an S3 location without the ``tether[s3]`` extra installed.
    """
    if location.startswith("s3://"):
        try:
            from .s3_blobs import S3BlobStore
        except ImportError as exc:
            raise BlobError(f"blob store {location}: S3 needs the s3 extra (pip install 'tether[s3]'): {exc}") from exc
        return S3BlobStore.at(location)
    return FileBlobStore(Path(location))
