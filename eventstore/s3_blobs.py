"""`S3BlobStore`: blobs as objects of an S3 bucket (or an S3-compatible server), the ``s3`` extra.

Content-addressed like `FileBlobStore`: the object key is ``<prefix>/<2 hex>/<62 hex>`` of the
SHA-256 of the bytes, so a retried write stores the same object again (S3 replaces it whole,
never half) and every worker and client of a namespace that reaches the bucket reads it.
Credentials, region and endpoint come from boto3's usual configuration (``AWS_*`` variables,
``~/.aws``); ``AWS_ENDPOINT_URL`` points it at an S3-compatible server (MinIO, Ceph, moto).
boto3 is synchronous: each request runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from .blobs import _PREFIX, StoredBlob, blob_ref
from .errors import BlobError

__all__ = ["S3BlobStore"]


class S3BlobStore:
    """Blobs as objects ``s3://<bucket>/<prefix>/<2 hex>/<62 hex>``."""

    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None) -> None:  # noqa: ANN401 - a boto3 client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._boto: Any = client
        """The boto3 S3 client, made on first use (a client or worker that never meets a large
        value never configures boto3)."""

    @property
    def _client(self) -> Any:  # noqa: ANN401 - a boto3 client
        if self._boto is None:
            try:
                self._boto = boto3.client("s3")
            except (BotoCoreError, ClientError) as exc:
                raise BlobError(f"s3://{self.bucket}: boto3 could not make an S3 client: {exc}") from exc
        return self._boto

    @classmethod
    def at(cls, location: str) -> S3BlobStore:
        """The store of ``s3://bucket/prefix``.

        Raises:
            BlobError: the location names no bucket.
        """
        parsed = urlparse(location)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise BlobError(f"not an S3 blob store location (s3://bucket/prefix): {location!r}")
        return cls(parsed.netloc, parsed.path)

    def key(self, ref: str) -> str:
        """The object key of `ref`."""
        digest = ref[len(_PREFIX) :] if ref.startswith(_PREFIX) else ""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise BlobError(f"not a blob reference: {ref[:80]!r}")
        name = f"{digest[:2]}/{digest[2:]}"
        return f"{self.prefix}/{name}" if self.prefix else name

    async def put(self, data: bytes) -> str:
        """Store `data` (one PUT: S3 writes an object whole or not at all); return its reference."""
        ref = blob_ref(data)
        key = self.key(ref)
        try:
            await asyncio.to_thread(self._client.put_object, Bucket=self.bucket, Key=key, Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise BlobError(f"blob {ref}: writing s3://{self.bucket}/{key} failed: {exc}") from exc
        return ref

    async def get(self, ref: str) -> bytes:
        """The bytes of `ref`, checked against it."""
        key = self.key(ref)
        try:
            data: bytes = await asyncio.to_thread(self._read, key)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404"):
                raise BlobError(f"blob {ref} is missing from s3://{self.bucket}/{key}") from None
            raise BlobError(f"blob {ref}: reading s3://{self.bucket}/{key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise BlobError(f"blob {ref}: reading s3://{self.bucket}/{key} failed: {exc}") from exc
        if blob_ref(data) != ref:
            raise BlobError(f"blob {ref} in s3://{self.bucket} does not match its reference (corrupt)")
        return data

    def _read(self, key: str) -> bytes:
        body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    async def blobs(self) -> list[StoredBlob]:
        """Every blob object under the prefix (other keys left out)."""
        try:
            return await asyncio.to_thread(self._list)
        except (BotoCoreError, ClientError) as exc:
            raise BlobError(f"listing s3://{self.bucket}/{self.prefix} failed: {exc}") from exc

    def _list(self) -> list[StoredBlob]:
        out: list[StoredBlob] = []
        start = f"{self.prefix}/" if self.prefix else ""
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
            for item in page.get("Contents", []):
                name = str(item["Key"])[len(start) :]
                digest = name.replace("/", "")
                if len(name) != 65 or name[2] != "/" or any(c not in "0123456789abcdef" for c in digest):
                    continue
                out.append(StoredBlob(_PREFIX + digest, int(item["Size"]), item["LastModified"].timestamp()))
        return out

    async def delete(self, ref: str) -> None:
        """Delete the object of `ref` (S3 answers the same whether it existed or not)."""
        key = self.key(ref)
        try:
            await asyncio.to_thread(self._client.delete_object, Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise BlobError(f"blob {ref}: deleting s3://{self.bucket}/{key} failed: {exc}") from exc
