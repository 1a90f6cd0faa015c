"""Blob deletion (`tether blobs gc`): a blob is swept only when no record of the namespace names
it and it was last written longer ago than the age bound; a put of stored content renews it."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from click.testing import CliRunner

from actors.cli.main import build
from actors.protocol import Message, Reply
from eventstore import EmbeddedLog, OutRecord, Topics
from eventstore.blob_sweep import live_references, sweep_blobs
from eventstore.blobs import FileBlobStore

DAY = 86_400.0


def age(store: FileBlobStore, ref: str, seconds: float) -> None:
    path = store._path(ref)
    then = time.time() - seconds
    os.utime(path, (then, then))


async def stored(tmp_path: Path, namespace: str) -> tuple[EmbeddedLog, Topics, FileBlobStore, dict[str, str]]:
    log = EmbeddedLog(tmp_path / "data" / "log")  # where the CLI's settings open it
    await log.start()
    topics = Topics(namespace)
    await log.create_topics(topics.specs(2))
    store = FileBlobStore(tmp_path / "blobs")
    refs = {name: await store.put(name.encode() * 1000) for name in ("message", "reply", "dead", "orphan", "young")}
    for name in ("message", "reply", "dead", "orphan"):
        age(store, refs[name], 2 * DAY)
    message = Message(id="m1", o="docs", k="d1", h="rewrite", p=None, ts=1, pb=refs["message"])
    await log.append(
        [
            OutRecord(topics.inbox, 1, b"docs/d1", message.encode()),
            OutRecord(topics.replies, 0, b"m1", Reply("m1", "docs/d1", None, None, refs["reply"]).encode()),
            OutRecord(topics.dlq, 0, b"docs/d2", b"\xc1 not msgpack, but it names " + refs["dead"].encode()),
        ]
    )
    return log, topics, store, refs


async def test_only_old_blobs_no_record_names_are_swept(tmp_path: Path, namespace: str) -> None:
    log, topics, store, refs = await stored(tmp_path, namespace)
    try:
        assert await live_references(log, topics) == {refs["message"], refs["reply"], refs["dead"]}
        dry = await sweep_blobs(log, topics, store, older_than=DAY, dry_run=True)
        assert (dry.stored, dry.live, dry.young, dry.swept) == (5, 3, 1, [refs["orphan"]])
        assert len(await store.blobs()) == 5  # a dry run deletes nothing
        # A put of the orphan's content (a retried write about to commit a record) renews it.
        await store.put(b"orphan" * 1000)
        renewed = await sweep_blobs(log, topics, store, older_than=DAY)
        assert renewed.swept == [] and renewed.young == 2
        age(store, refs["orphan"], 2 * DAY)
        report = await sweep_blobs(log, topics, store, older_than=DAY)
        assert report.swept == [refs["orphan"]] and report.swept_bytes == 6000
        assert {b.ref for b in await store.blobs()} == {refs[n] for n in ("message", "reply", "dead", "young")}
        assert await store.get(refs["message"]) == b"message" * 1000
    finally:
        await log.close()


def test_tether_blobs_gc(tmp_path: Path, namespace: str) -> None:
    async def setup() -> tuple[FileBlobStore, dict[str, str]]:
        log, _, store, refs = await stored(tmp_path, namespace)
        await log.close()
        return store, refs

    store, refs = asyncio.run(setup())
    env = {
        "TETHER_NAMESPACE": namespace,
        "TETHER_DATA_DIR": str(tmp_path / "data"),
        "TETHER_BACKEND": "embedded",
        "TETHER_RUNTIME__BLOB_DIR": str(tmp_path / "blobs"),
    }
    result = CliRunner().invoke(build(), ["blobs", "gc", "--older-than", "3600", "--json"], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["swept"] == 1 and report["refs"] == [refs["orphan"]] and report["live"] == 3
    assert refs["orphan"] not in {b.ref for b in asyncio.run(store.blobs())}
    elsewhere = CliRunner().invoke(build(), ["blobs", "gc", "-n", "other"], env=env)
    assert elsewhere.exit_code == 2 and "Nothing was deleted" in elsewhere.output
    assert len(asyncio.run(store.blobs())) == 4
    unset = CliRunner().invoke(build(), ["blobs", "gc"], env={**env, "TETHER_RUNTIME__BLOB_DIR": ""})
    assert unset.exit_code == 2 and "no blob store" in unset.output
