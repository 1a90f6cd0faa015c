"""Large payloads by reference: a 5 MiB document in, a 5 MiB annotated copy out.

Run it with `python examples/large_payloads.py` (embedded log, blobs in a temporary directory).
Values over `blob_threshold_bytes` (messages, replies, step results) go to the blob store and
their records carry a `sha256:` reference; every reader gets the value back.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from pydantic import BaseModel

from actors import Client, ObjectContext, RuntimeSettings, Settings, VirtualObject, Worker


class Document(BaseModel):
    text: str


class Annotated(BaseModel):
    text: str
    words: int


class Library(BaseModel):
    pass


library = VirtualObject("library", state=Library)


@library.handler()
async def annotate(ctx: ObjectContext[Library], doc: Document) -> Annotated:
    fetched = await ctx.run("fetch:appendix", lambda: doc.text[: len(doc.text) // 2])  # a large step result
    return Annotated(text=doc.text + fetched, words=len(doc.text.split()))


async def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="tether-large-"))
    settings = Settings(
        data_dir=root / "data",
        partitions=2,
        runtime=RuntimeSettings(
            blob_threshold_bytes=256_000,  # TETHER_RUNTIME__BLOB_THRESHOLD_BYTES
            blob_store=str(root / "blobs"),  # TETHER_RUNTIME__BLOB_STORE: a directory or s3://bucket/prefix
        ),
    )
    document = Document(text="durable agents pass large documents around " * 120_000)  # 5 MiB
    async with Worker([library], settings), Client.connect(settings) as client:
        reply = await client.call(annotate, "shelf-1", document, timeout=120)
    blobs = sorted(p for p in (root / "blobs").rglob("*") if p.is_file())
    print(f"sent {len(document.text):,} chars, got back {len(reply.text):,} chars and {reply.words:,} words")
    print(f"{len(blobs)} blobs: {', '.join(f'{p.stat().st_size:,} bytes' for p in blobs)}")


if __name__ == "__main__":
    asyncio.run(main())
