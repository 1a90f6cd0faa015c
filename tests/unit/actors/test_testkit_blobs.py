"""The test kit and the replayer read back values kept in the blob store (claim check).

With a blob threshold, a call's large payload (``pb``), step result (``rb``), events (``evb``,
in a ``done`` and in a ``sus`` entry) and reply go to the store and the records carry
references. A test still asserts on the values: `CallResult.steps` and `events` hold them,
`kit.restart()` checks their round trips, and `Replayer(..., runtime=...)` (and `tether
replay-check` with the ``TETHER_RUNTIME__`` blob settings) replays a history that holds
references. Without the store named, a replay of such a history fails with `BlobError` (exit 2)
instead of comparing references.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from harness.models import Note
from pydantic import BaseModel, Field

from actors import ObjectContext, RuntimeSettings, VirtualObject
from actors.cli.main import build
from actors.protocol.entries import Done, Step, Suspend
from actors.testing import Replayer, SessionHistory, SessionTestKit
from eventstore.errors import BlobError

THRESHOLD = 1_000
TEXT = "a line of a long page\n" * 300  # 6.6 kB: over the threshold, in a message, a step, an event


class Noted(BaseModel):
    text: str


class Notes(BaseModel):
    notes: list[str] = Field(default_factory=list)


notes = VirtualObject("notes", state=Notes)


@notes.handler()
async def read(ctx: ObjectContext[Notes], doc: Note) -> Note:
    page = await ctx.run("fetch", lambda: doc.text * 2, result_type=str)
    ctx.emit(Noted(text=page))
    return Note(text=page.upper())


@notes.handler()
async def read_later(ctx: ObjectContext[Notes], doc: Note) -> Note:
    ctx.emit(Noted(text=doc.text))  # commits with the suspension (its sus entry)
    await ctx.sleep(60)
    page = await ctx.run("fetch", lambda: doc.text + "!", result_type=str)
    return Note(text=page)


@notes.on_event(Noted)
def _noted(state: Notes, event: Noted) -> None:
    state.notes.append(event.text)


def runtime_of(tmp_path: Path) -> RuntimeSettings:
    return RuntimeSettings(blob_threshold_bytes=THRESHOLD, blob_dir=tmp_path / "blobs")


async def test_calls_show_step_results_and_events_kept_in_the_blob_store(tmp_path: Path) -> None:
    async with SessionTestKit(notes, runtime=runtime_of(tmp_path)) as kit:
        result = await kit.call(read, "n1", Note(text=TEXT))
        assert result.reply == Note(text=(TEXT * 2).upper())
        assert result.step("fetch").result == TEXT * 2
        assert result.events == [Noted(text=TEXT * 2)]
        assert kit.state(notes, "n1") == Notes(notes=[TEXT * 2])

        pending = await kit.start(read_later, "n2", Note(text=TEXT))
        await kit.advance(seconds=60)
        later = await pending.result()
        assert later.reply == Note(text=TEXT + "!")
        assert later.events == [Noted(text=TEXT)]  # from the sus entry's blob
        assert later.step("fetch").result == TEXT + "!"

        # They were by reference in the log: the kit read them back.
        one = SessionHistory.from_json(await kit.history(notes, "n1"))
        two = SessionHistory.from_json(await kit.history(notes, "n2"))
        assert all(r.message().payload_blob for r in one.records + two.records if r.topic == "inbox")
        found = [r.entry() for r in one.records + two.records if r.topic == "events"]
        assert [e.name for e in found if isinstance(e, Step) and e.blob] == ["fetch", "fetch"]
        assert len([e for e in found if isinstance(e, Done) and e.reply_blob]) == 2
        assert [type(e) for e in found if getattr(e, "events_blob", None)] == [Done, Suspend]

        # The round-trip checks fold the events read back (not an empty list) and pass.
        await kit.restart()
        assert kit.state(notes, "n1") == Notes(notes=[TEXT * 2])


async def test_the_replayer_reads_a_historys_references_from_the_store(tmp_path: Path) -> None:
    runtime = runtime_of(tmp_path)
    async with SessionTestKit(notes, runtime=runtime) as kit:
        await kit.call(read, "n1", Note(text=TEXT))
        pending = await kit.start(read_later, "n2", Note(text=TEXT))
        await kit.advance(seconds=60)
        await pending.result()
        histories = [await kit.history(notes, key) for key in ("n1", "n2")]
        for history in histories:
            report = await Replayer(notes, runtime=runtime).replay(history)
            assert report.ok, report.render()
            assert report.invocations >= 1
            with pytest.raises(BlobError, match="no blob store is configured"):
                await Replayer(notes).replay(history)


def test_replay_check_reads_references_from_the_store_the_settings_name(tmp_path: Path) -> None:
    async def record() -> dict[str, object]:
        async with SessionTestKit(notes, runtime=runtime_of(tmp_path)) as kit:
            await kit.call(read, "n1", Note(text=TEXT))
            return await kit.history(notes, "n1")

    path = tmp_path / "n1.json"
    path.write_text(json.dumps(asyncio.run(record())))
    args = ["replay-check", f"{__name__}:notes", str(path)]
    blobs = {
        "TETHER_RUNTIME__BLOB_THRESHOLD_BYTES": str(THRESHOLD),
        "TETHER_RUNTIME__BLOB_DIR": str(tmp_path / "blobs"),
    }
    ok = CliRunner().invoke(build(), args, env=blobs)
    assert ok.exit_code == 0, ok.output
    assert "no mismatch" in ok.output
    unset = {name: None for name in blobs}  # the history's values cannot be read: exit 2, not a mismatch
    unreadable = CliRunner().invoke(build(), args, env=unset)
    assert unreadable.exit_code == 2 and "no blob store is configured" in unreadable.output
