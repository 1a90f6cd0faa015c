"""A session whose step returns a large value (a fetched page), for the claim-check tests.

In a worker subprocess, `TETHER_TEST_BLOB_HOLD` names a file: while it exists, each blob write
waits right after the blob is written, before the step's entry commits (a kill -9 lands there),
and `TETHER_TEST_LEDGER` names a file each download appends a line to.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from pydantic import BaseModel

from actors import ObjectContext, VirtualObject
from eventstore.blobs import FileBlobStore

RUNS: list[str] = []
FAIL_ONCE: set[str] = set()


class Fetch(BaseModel):
    mib: int = 20


class Fetched(BaseModel):
    size: int
    digest: str


class Empty(BaseModel):
    pass


def page(mib: int) -> str:
    line = "".join(f"{n:08x}" for n in range(128))  # 1 KiB
    return line * (mib * 1024)


big = VirtualObject("big", state=Empty)


@big.handler()
async def fetch(ctx: ObjectContext[Empty], req: Fetch) -> Fetched:
    async def download() -> str:
        RUNS.append(ctx.key)
        ledger = os.environ.get("TETHER_TEST_LEDGER")
        if ledger:
            with open(ledger, "a") as f:
                f.write(f"download {ctx.key} {os.getpid()}\n")
        await asyncio.sleep(0)
        return page(req.mib)

    text = await ctx.run("fetch", download)
    if ctx.key in FAIL_ONCE:
        FAIL_ONCE.discard(ctx.key)
        raise RuntimeError("fail once after the step: the retry reads the result from the blob")
    return Fetched(size=len(text), digest=hashlib.sha256(text.encode()).hexdigest())


def blob_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")]


def _hold_after_blob_writes(hold: Path) -> None:
    original = FileBlobStore.put

    async def put_then_hold(self: FileBlobStore, data: bytes) -> str:
        ref = await original(self, data)
        marker = hold.with_suffix(".written")
        marker.write_text(ref)
        while hold.exists():
            await asyncio.sleep(0.05)
        return ref

    FileBlobStore.put = put_then_hold  # type: ignore[method-assign]


if os.environ.get("TETHER_TEST_BLOB_HOLD"):
    _hold_after_blob_writes(Path(os.environ["TETHER_TEST_BLOB_HOLD"]))
