"""Every reader of the events topic handles every kind of entry the runtime writes.

The kinds are derived from the protocol itself (every entry model of `actors.protocol.entries`),
so a new kind that the readers were not taught fails here. One entry of each kind, plus one of a
kind from the future, is fed through every reader: `tether sessions history|show` and
`tether saga list|show`, as functions and as commands.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness.cli import invoke_ok

from actors import Settings
from actors.inspection.views import session_history, session_view
from actors.protocol import CHECKPOINT_KEY, SNAPSHOT_VERSION_HEADER, Checkpoint, Message, awakeables, entries
from actors.protocol.entries import Completion, Delayed, Done, Queued, Step, Suspend
from eventstore import EmbeddedLog, OutRecord, Topics, pack, partition_for, unpack
from sagas.events import SagaState
from sagas.inspect import find_saga, read_sagas

NS = "kinds"
PARTITIONS = 2
WAKE_MS = int(time.time() * 1000) + 3_600_000


def message(obj: str, key: str, mid: str, handler: str = "ask") -> Message:
    return Message(id=mid, o=obj, k=key, h=handler, p={"q": 1}, ts=1)


def samples(obj: str, key: str) -> dict[str, Callable[[], bytes]]:
    """One call of every writer, by name, for session `obj/key` (in a plausible log order)."""
    first, queued, delayed = message(obj, key, "m1"), message(obj, key, "m2"), message(obj, key, "m3")
    awk = awakeables.awakeable_id(obj, key, "m1", 1)
    return {
        "Step": lambda: Step("m1", 0, "llm", {"text": "hi"}, None, 2).encode(),
        "Suspend": lambda: Suspend(first, 0, WAKE_MS, awk, [], 0, 1).encode(),
        "Queued": lambda: Queued(queued, 1).encode(),
        "Delayed": lambda: Delayed(delayed, 2, WAKE_MS).encode(),
        "Completion": lambda: Completion("m1", awk, "yes").encode(),
        "Done": lambda: Done("m1", "ask", [], 2, 0, {"ok": 1}).encode(),
    }


def writers() -> list[str]:
    return sorted(t.__name__ for t in entries.Entry.__args__)


def test_every_kind_has_a_sample_here() -> None:
    assert writers() == sorted(samples("o", "k")), (
        "a new kind of events-topic entry: teach every reader (actors/inspection/views.py, sagas/inspect.py) "
        "to read it, then add a sample of it above"
    )


def kinds() -> set[str]:
    return {unpack(write())["k"] for write in samples("o", "k").values()}


def test_the_kinds_are_the_known_ones() -> None:
    assert kinds() == set(entries.KINDS)


FUTURE = pack({"k": "zz-from-the-future", "i": "m9", "o": 9, "whatever": True})


async def write_log(data_dir: Path) -> None:
    """A namespace whose session ``agent/k1`` and saga ``booking/s1`` hold one entry of each kind."""
    log = EmbeddedLog(data_dir / "log")
    await log.start()
    topics = Topics(NS)
    await log.create_topics(topics.specs(PARTITIONS))
    out: list[OutRecord] = []
    saga_state = SagaState(saga_id="s1", saga="booking", status="running", input={"to": "Lisbon"})
    for obj, key, state in (("agent", "k1", {"answers": ["a"]}), ("saga.booking", "s1", saga_state.model_dump())):
        record_key = f"{obj}/{key}".encode()
        p = partition_for(record_key, PARTITIONS)
        out.append(
            OutRecord(
                topics.snapshots,
                p,
                record_key,
                pack({"s": state, "sv": 1, "rc": []}),
                ((SNAPSHOT_VERSION_HEADER, b"1"),),
            )
        )
        out.append(OutRecord(topics.snapshots, p, CHECKPOINT_KEY, Checkpoint(0).encode()))
        out += [OutRecord(topics.events, p, record_key, write()) for write in samples(obj, key).values()]
        out.append(OutRecord(topics.events, p, record_key, FUTURE))
    await log.append(out)
    await log.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    asyncio.run(write_log(tmp_path))
    return Settings(namespace=NS, data_dir=tmp_path, partitions=PARTITIONS, backend="embedded")


def test_session_history_reads_every_kind(settings: Settings) -> None:
    history = asyncio.run(session_history(settings, "agent", "k1"))
    assert [e["kind"] for e in history] == ["step", "sus", "q", "dly", "awk", "done", "zz-from-the-future"]
    by_kind = {e["kind"]: e for e in history}
    assert by_kind["step"]["attempts"] == 2 and by_kind["done"]["attempts"] == 1
    assert by_kind["sus"].get("attempts") is None, "in a sus entry 'a' is the awakeable, not attempts"
    assert by_kind["sus"]["awakeable"] == awakeables.awakeable_id("agent", "k1", "m1", 1)
    assert by_kind["awk"]["result"] == "yes"
    assert by_kind["zz-from-the-future"]["skipped"] is True


def test_session_view_reads_every_kind(settings: Settings) -> None:
    view = asyncio.run(session_view(settings, "agent", "k1"))
    assert view["state"] == {"answers": ["a"]}
    assert view["skipped_kinds"] == ["zz-from-the-future"]


def test_saga_readers_read_every_kind(settings: Settings) -> None:
    records = asyncio.run(read_sagas(settings))
    assert [(r.saga, r.saga_id, r.state.status) for r in records] == [("booking", "s1", "running")]
    record = asyncio.run(find_saga(settings, "s1"))
    assert record.skipped_kinds == ["zz-from-the-future"]


@pytest.mark.usefixtures("keep_logging")
@pytest.mark.parametrize(
    "args",
    [
        ("sessions", "history", "agent", "k1"),
        ("sessions", "show", "agent", "k1"),
        ("saga", "list"),
        ("saga", "show", "s1"),
    ],
)
@pytest.mark.parametrize("as_json", [False, True])
def test_the_commands_read_every_kind(settings: Settings, args: tuple[str, ...], as_json: bool) -> None:
    output = invoke_ok(settings, *args, *(["--json"] if as_json else []), namespace=NS)
    assert "Traceback" not in output
    if as_json:
        document = json.loads(output)  # one document per command, listings included
        assert document["items"] if args[1] in ("history", "list") else document
    if args[1] != "list" and not as_json:
        assert "zz-from-the-future" in output, "an entry of an unknown kind is shown as skipped"


def test_the_history_table_shows_no_awakeable_as_attempts(settings: Settings) -> None:
    output = invoke_ok(settings, "sessions", "history", "agent", "k1", namespace=NS)
    sus = next(line for line in output.splitlines() if " sus " in line)
    assert "awk:" not in sus.split("│")[5], sus
