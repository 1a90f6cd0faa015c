"""Every kind Tether writes to its topics encodes to the golden bytes of the release before
the typed protocol, and those bytes (and the older forms) decode."""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import golden_formats as golden  # noqa: E402

from actors import messages, waits  # noqa: E402
from actors.deadletters import Failure, dead_letter  # noqa: E402
from actors.errors import TerminalError  # noqa: E402
from actors.messages import Message  # noqa: E402
from actors.offsets import OffsetTracker  # noqa: E402
from actors.restore import checkpoint_records  # noqa: E402
from actors.sessions import Session  # noqa: E402
from actors.settings import RuntimeSettings  # noqa: E402
from actors.waits import Suspension  # noqa: E402
from eventstore import Record, Topics, pack, unpack  # noqa: E402

T0 = 1_714_564_800_000
M1 = Message(id="m1", o="agent", k="k1", h="ask", p={"q": 1}, rp=3, ts=T0)
M2 = Message(id="m2", o="agent", k="k1", h="ask", p={"q": 2}, ts=T0 + 1)
M3 = Message(id="m3", o="agent", k="k1", h="ask", p={"q": 3}, ts=T0 + 2, nb=T0 + 100_000)
SEED = {"k": "step", "i": "m0", "n": 0, "name": "llm", "r": "x", "a": 1}
SEEDED = Message(id="m4", o="agent", k="k1", h="ask", p=None, ts=5, sj=[SEED])
AWK = waits.awakeable_id("agent", "k1", "m1", 1)
PARK = waits.awakeable_id("agent", "k1", "park-m1", 0)
ERR = {"type": "TerminalError", "message": "no", "attempts": 2}
ENV = {"t": "Answered", "v": 1, "d": {"text": "hi"}}


class _State:
    def model_dump(self, mode: str | None = None) -> dict[str, Any]:
        return {"answers": ["a"]}


def encoders() -> dict[str, Any]:
    parked = M1.model_copy(update={"id": "park-m1"})
    return {
        "MESSAGE": lambda: M1.encode(),
        "MESSAGE_DELAYED": lambda: M3.encode(),
        "MESSAGE_SEEDED": lambda: SEEDED.encode(),
        "DONE_OK": lambda: messages.done_entry(
            "m1",
            "ask",
            [ENV],
            reply={"text": "hi"},
            attempts=2,
            started_ms=T0,
            ended_ms=T0 + 250,
            version=4,
            inbox_offset=7,
        ),
        "DONE_ERR": lambda: messages.done_entry(
            "m1", "ask", [], error=ERR, attempts=2, ended_ms=T0 + 250, version=5, inbox_offset=7
        ),
        "STEP_OK": lambda: messages.step_entry(
            "m1", 0, "llm:plan", result={"text": "hi"}, attempts=2, started_ms=T0, ended_ms=T0 + 100
        ),
        "STEP_ERR": lambda: messages.step_entry(
            "m1", 1, "tool:web", error=ERR, attempts=3, started_ms=T0, ended_ms=T0 + 100
        ),
        "SUSPEND_TIMER": lambda: waits.suspend_entry(M1, 7, T0 + 100_000, None, [ENV], 1, 5),
        "SUSPEND_AWAKEABLE": lambda: waits.suspend_entry(M1, 7, None, AWK, [], 1, 6),
        "SUSPEND_PARKED": lambda: waits.suspend_entry(parked, 7, None, PARK, [], 0, 6, parked=True),
        "QUEUED": lambda: waits.queued_entry(M2, 8),
        "DELAYED": lambda: waits.delayed_entry(M3, 9, T0 + 100_000),
        "COMPLETION_OK": lambda: waits.completion_entry("m1", AWK, {"ok": {"approved": True}}),
        "COMPLETION_ERR": lambda: waits.completion_entry("m1", AWK, {"err": {"type": "Rejected", "message": "no"}}),
        "REPLY_OK": lambda: messages.reply_value("m1", "agent/k1", result={"text": "hi"}),
        "REPLY_ERR": lambda: messages.reply_value("m1", "agent/k1", error=ERR),
        "SNAPSHOT": snapshot,
        "CHECKPOINT": checkpoint,
        "DEAD_LETTER_HEADERS": dead_letter_headers,
    }


def snapshot() -> bytes:
    s = Session(key=b"agent/k1", object_name="agent", state=_State(), version=4)  # type: ignore[arg-type]
    s.remember("m1", {"ok": {"text": "hi"}}, T0 + 250, 10**12)
    s.remember("m0", {"err": ERR}, T0 + 300, 10**12)
    return pack(s.snapshot_value())


def checkpoint() -> bytes:
    blocked = Session(key=b"agent/k1", object_name="agent", version=6)
    blocked.blocked_by = M1.invocation_id
    blocked.queue = deque([(-1, M2, Record("t.inbox", 0, 8, b"agent/k1", M2.encode()))])

    class FakeLog:
        async def end_offset(self, topic: str, partition: int) -> int:
            return 42

    offsets = OffsetTracker(5, {9})
    offsets.add(5)
    offsets.add(6)
    offsets.finish(6)
    step = unpack(golden.STEP_OK)
    p = SimpleNamespace(
        log=FakeLog(),
        topics=Topics("ns"),
        partition=0,
        settings=RuntimeSettings(),
        sessions={blocked.key: blocked},
        objects={},
        journals={M1.invocation_id: {0: step}},
        legacy_journals={"m0": {0: step}},
        offsets=offsets,
        suspended={M1.invocation_id: Suspension(M1, 7, None, AWK, 1)},
        delayed={M3.invocation_id: (M3, 9)},
        completions={AWK: {"ok": {"approved": True}}},
        checkpoint_start=0,
    )
    (record,) = asyncio.run(checkpoint_records(p))  # type: ignore[arg-type]
    assert record.key == b"__checkpoint__" and record.value is not None
    return record.value


def dead_letter_headers() -> tuple[tuple[str, bytes], ...]:
    err = TerminalError("no")
    err.__cause__ = ValueError("inner")
    src = Record("ns.inbox", 1, 12, b"agent/k1", M1.encode(), (("trace", b"abc"),), T0)
    failure = Failure(err, "terminal", 2, T0, T0 + 250, "agent", "k1", "ask", "m1", None)
    return dead_letter(src, failure, dlq_topic="ns.dlq", group="ns-workers").headers


@pytest.mark.parametrize("name", sorted(encoders()))
def test_encoding_is_the_golden_bytes(name: str) -> None:
    assert encoders()[name]() == getattr(golden, name)
