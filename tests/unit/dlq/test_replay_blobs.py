"""Replaying dead letters whose payload is in the blob store (``pb``), on the embedded log.

A transform gets the payload read from the store the settings name; what it returns is sent by
reference again when it is over the threshold (in the message when it is not); without a
transform the replay sends the same reference; a missing blob fails that one item, typed, and
sends nothing for it. Dead letters are written by hand (no worker), as a worker writes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors import RuntimeSettings, Settings
from actors.messages import Message, session_key
from actors.runtime.deadletters import Failure, dead_letter
from dlq import DeadLetter, DeadLetters
from eventstore import OutRecord, Record, Topics, open_log, pack, partition_for, unpack
from eventstore.blobs import FileBlobStore
from eventstore.errors import BlobError

NS = "replayblobs"
TOPICS = Topics(NS)
THRESHOLD = 1_000
BIG = {"text": "a page " * 1_000, "fixed": False}
"""A payload over the threshold (its encoding is about 7 kB)."""


def settings_of(tmp_path: Path, *, blobs: bool = True) -> Settings:
    runtime = RuntimeSettings(blob_threshold_bytes=THRESHOLD, blob_dir=tmp_path / "blobs") if blobs else None
    return Settings(
        namespace=NS, data_dir=tmp_path / "data", partitions=2, backend="embedded", runtime=runtime or RuntimeSettings()
    )


def letter_record(key: str, n: int, *, payload: Any = None, blob: str | None = None) -> OutRecord:  # noqa: ANN401
    """A dead letter (partition 0 of the dead-letter topic) of a message to ``docs/{key}``."""
    message = Message(id=f"m-{key}", o="docs", k=key, h="file", p=payload, ts=1, pb=blob)
    record_key = session_key(message.object, message.key)
    source = Record(TOPICS.inbox, partition_for(record_key, 2), n, record_key, message.encode(), (), 1)
    failure = Failure(RuntimeError("the page was too long"), "terminal", 1, 1, 1, "docs", key, "file", message.id)
    letter = dead_letter(source, failure, dlq_topic=TOPICS.dlq, group=TOPICS.group())
    return OutRecord(letter.topic, 0, letter.key, letter.value, letter.headers)


async def write(settings: Settings, *records: OutRecord) -> None:
    log = open_log(settings)
    await log.start()
    try:
        await log.create_topics(TOPICS.specs(settings.partitions))
        await log.append(list(records))
    finally:
        await log.close()


async def replays(settings: Settings) -> dict[str, Message]:
    """The replay messages in the inbox, by session key."""
    found: dict[str, Message] = {}
    log = open_log(settings)
    await log.start()
    try:
        for p in range(await log.partition_count(TOPICS.inbox)):
            async for record in log.read(TOPICS.inbox, p):
                message = Message.decode(record.value)
                found[message.key] = message
    finally:
        await log.close()
    return found


def fix(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "fixed": True}


async def test_a_transform_gets_the_payload_from_the_store_and_sends_its_result_by_reference(
    tmp_path: Path,
) -> None:
    settings = settings_of(tmp_path)
    store = FileBlobStore(tmp_path / "blobs")
    ref = await store.put(pack(BIG))
    await write(settings, letter_record("big", 0, blob=ref), letter_record("small", 1, blob=ref))
    seen: list[Any] = []

    def repair(payload: dict[str, Any], letter: DeadLetter) -> dict[str, Any]:
        seen.append(payload)
        if letter.object_key == "small":
            return {"text": "short now", "fixed": True}
        return fix(payload)

    async with DeadLetters(settings) as dead:
        (letter, _) = await dead.all()
        assert letter.payload is None and letter.payload_shown == {"blob": ref}
        assert await dead.payload(letter) == BIG
        dry = await dead.replay(transform=repair, dry_run=True)
        assert [i.outcome for i in dry.items] == ["would-replay", "would-replay"]
        assert dry.items[0].payload == fix(BIG)
        assert len(list((tmp_path / "blobs").rglob("*"))) == 2  # a dry run writes no blob (one dir, one file)
        report = await dead.replay(transform=repair)
        assert report.ok and report.counts["replayed"] == 2
    assert seen == [BIG, BIG, BIG, BIG]  # the dry run's and the replay's calls: the value, never None
    sent = await replays(settings)
    big, small = sent["big"], sent["small"]
    # Over the threshold: by reference again, to the transformed value's blob.
    assert big.payload is None and big.payload_blob not in (None, ref)
    assert big.payload_blob is not None and unpack(await store.get(big.payload_blob)) == fix(BIG)
    # Under it: in the message.
    assert small.payload_blob is None and small.payload == {"text": "short now", "fixed": True}


async def test_without_a_transform_the_same_reference_is_sent(tmp_path: Path) -> None:
    settings = settings_of(tmp_path)
    ref = await FileBlobStore(tmp_path / "blobs").put(pack(BIG))
    await write(settings, letter_record("big", 0, blob=ref))
    async with DeadLetters(settings) as dead:
        dry = await dead.replay(dry_run=True)
        assert dry.items[0].payload == {"blob": ref}
        assert (await dead.replay()).ok
    message = (await replays(settings))["big"]
    assert message.payload is None and message.payload_blob == ref


async def test_a_missing_blob_fails_its_item_alone_and_sends_nothing_for_it(tmp_path: Path) -> None:
    settings = settings_of(tmp_path)
    store = FileBlobStore(tmp_path / "blobs")
    ref = await store.put(pack(BIG))
    gone = await store.put(pack({**BIG, "text": "another page " * 1_000}))
    await store.delete(gone)
    await write(
        settings,
        letter_record("lost", 0, blob=gone),
        letter_record("kept", 1, blob=ref),
        letter_record("inline", 2, payload={"text": "small", "fixed": False}),
    )
    calls: list[Any] = []

    def repair(payload: dict[str, Any]) -> dict[str, Any]:
        calls.append(payload)
        return fix(payload)

    async with DeadLetters(settings) as dead:
        lost = (await dead.all())[0]
        with pytest.raises(BlobError, match="missing"):
            await dead.payload(lost)
        report = await dead.replay(transform=repair)
        outcomes = {i.object_key: i for i in report.items}
        assert outcomes["lost"].outcome == "failed"
        reason = outcomes["lost"].reason or ""
        assert "BlobError" in reason and gone in reason and "missing" in reason
        assert outcomes["kept"].outcome == outcomes["inline"].outcome == "replayed"
        assert None not in calls and len(calls) == 2  # the transform never saw the lost one as None
        assert {x.object_key: x.status for x in await dead.all()}["lost"] == "pending"
    sent = await replays(settings)
    assert sorted(sent) == ["inline", "kept"]
    assert sent["inline"].payload == {"text": "small", "fixed": True}


async def test_a_payload_in_the_store_without_a_store_configured_fails_typed(tmp_path: Path) -> None:
    blobs = settings_of(tmp_path)
    ref = await FileBlobStore(tmp_path / "blobs").put(pack(BIG))
    await write(blobs, letter_record("big", 0, blob=ref))
    async with DeadLetters(settings_of(tmp_path, blobs=False)) as dead:
        report = await dead.replay(transform=fix)
    (item,) = report.items
    assert item.outcome == "failed" and "no blob store is configured" in (item.reason or "")
    assert await replays(blobs) == {}
