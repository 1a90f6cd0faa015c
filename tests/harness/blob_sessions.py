"""Sessions with large values (a fetched page, a document), for the claim-check tests.

`fetch`'s step returns a large value; `rewrite` takes a large message and replies with a large
value, `forward` passes a large message on with `ctx.send` to `keep`, which stores its digest
in an event, and `file` (`file_then_wait`: then waits) emits a large event.

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
from harness.models import Empty

RUNS: list[str] = []
FAIL_ONCE: set[str] = set()


class Fetch(BaseModel):
    mib: int = 20


class Fetched(BaseModel):
    size: int
    digest: str


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


class Document(BaseModel):
    text: str


class Rewritten(BaseModel):
    text: str
    digest: str


class Kept(BaseModel):
    digest: str


class Filed(BaseModel):
    text: str


class Digests(BaseModel):
    digests: list[str] = []
    filed: list[str] = []


docs = VirtualObject("docs", state=Digests)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@docs.handler()
async def rewrite(ctx: ObjectContext[Digests], doc: Document) -> Rewritten:
    """A large message in, a large reply out (deterministic: a retry replies the same bytes)."""
    ledger = os.environ.get("TETHER_TEST_LEDGER")
    if ledger:
        with open(ledger, "a") as f:
            f.write(f"rewrite {ctx.key} {os.getpid()}\n")
    return Rewritten(text=doc.text.upper(), digest=digest(doc.text))


@docs.handler()
async def rewrite_aloud(ctx: ObjectContext[Digests], doc: Document) -> Rewritten:
    """`rewrite`, streaming a progress note first: its stream's end carries the large reply."""
    await ctx.stream("rewriting")
    return Rewritten(text=doc.text.upper(), digest=digest(doc.text))


@docs.handler()
async def forward(ctx: ObjectContext[Digests], doc: Document) -> None:
    ctx.send(keep, ctx.key + "-copy", doc)


@docs.handler()
async def keep(ctx: ObjectContext[Digests], doc: Document) -> None:
    ctx.emit(Kept(digest=digest(doc.text)))


@docs.handler()
async def file(ctx: ObjectContext[Digests], doc: Document) -> None:
    """A large event: the state (and so its snapshot) grows large too."""
    ctx.emit(Filed(text=doc.text))


@docs.handler()
async def file_then_wait(ctx: ObjectContext[Digests], doc: Document) -> None:
    """A large event that commits with a suspension (a ``sus`` entry), then a long wait."""
    ctx.emit(Filed(text=doc.text))
    await ctx.sleep(3600)


@docs.on_event(Filed)
def _filed(state: Digests, event: Filed) -> None:
    state.filed.append(event.text)


@docs.on_event(Kept)
def _kept(state: Digests, event: Kept) -> None:
    state.digests.append(event.digest)


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
