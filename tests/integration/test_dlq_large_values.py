"""Replaying a dead letter whose payload is in the blob store, with a transform, end to end.

A worker dead-letters a 2 MiB message that the client sent by reference (``pb``). The replay's
transform gets the payload read from the blob store (not None), fixes it, and the replay sends
the fixed payload by reference again (the record stays small); the session folds what the
handler got from the fixed payload. On the embedded log and on the real Kafka broker.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from harness.session_harness import WAIT, assert_eventually, open_runtime, settings_for
from pydantic import BaseModel, Field

from actors import ObjectContext, RuntimeSettings, TerminalError, VirtualObject
from actors.protocol import Message
from dlq import DeadLetter, DeadLetters
from eventstore import Topics

MIB = 1024 * 1024
BACKENDS = ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)]


class Page(BaseModel):
    text: str
    fixed: bool = False


class Filed(BaseModel):
    digest: str


class Pages(BaseModel):
    filed: list[str] = Field(default_factory=list)


pages = VirtualObject("pages", state=Pages)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pages.handler()
async def file(ctx: ObjectContext[Pages], page: Page) -> None:
    if not page.fixed:
        raise TerminalError(f"page of {len(page.text)} characters is not fixed")
    ctx.emit(Filed(digest=digest(page.text)))


@pages.on_event(Filed)
def _filed(state: Pages, event: Filed) -> None:
    state.filed.append(event.digest)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_transform_fixes_a_payload_kept_in_the_blob_store(
    request: pytest.FixtureRequest, backend: str, namespace: str, tmp_path: Path
) -> None:
    runtime = RuntimeSettings(blob_threshold_bytes=100_000, blob_dir=tmp_path / "blobs")
    settings = settings_for(request, backend, tmp_path / "data", namespace, partitions=2, runtime=runtime)
    text = "a fetched page line\n" * (2 * MIB // 20)  # 2 MiB
    topics = Topics(settings.namespace)
    async with open_runtime([pages], settings) as rt:
        await rt.client.send(file, "p1", Page(text=text))
        async with DeadLetters(settings) as dead:

            async def dead_lettered() -> None:
                assert len(await dead.all()) == 1

            await assert_eventually(dead_lettered, timeout=WAIT)
            (letter,) = await dead.all()
            assert letter.message is not None and letter.message.payload_blob is not None
            assert letter.payload is None  # the record holds the reference only
            seen: list[Any] = []

            def repair(payload: dict[str, Any], dead_letter: DeadLetter) -> dict[str, Any]:
                seen.append(payload)
                return {**payload, "text": payload["text"].upper(), "fixed": True}

            report = await dead.replay(transform=repair)
            assert report.ok and report.counts["replayed"] == 1, report.to_json()
            assert seen == [{"text": text, "fixed": False}]

        async def filed() -> None:
            state = await rt.client.state("pages", "p1", timeout=WAIT)
            assert state["state"]["filed"] == [digest(text.upper())]

        await assert_eventually(filed, timeout=WAIT * 2)
        replays = [r for r in await rt.records(topics.inbox) if b"dlq-replay:" in (r.value or b"")]
    (record,) = replays
    assert record.value is not None and len(record.value) < 1_000  # the fixed payload went by reference
    replayed = Message.decode(record.value)
    assert replayed.payload is None and replayed.payload_blob not in (None, letter.message.payload_blob)
