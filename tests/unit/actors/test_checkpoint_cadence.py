"""Checkpoints come by records, events and bytes; a restore holds a bounded amount of events."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import BaseModel

from actors import ObjectContext, RuntimeSettings, VirtualObject
from actors.protocol import Done, Snapshot
from actors.runtime.cadence import CheckpointCadence
from actors.runtime.restore import restore
from actors.testing import SessionTestKit
from eventstore import EmbeddedLog, OutRecord, Topics


class Tally(BaseModel):
    count: int = 0
    notes: int = 0


class Burst(BaseModel):
    events: int = 1
    note: str = ""


class Counted(BaseModel):
    n: int


class Noted(BaseModel):
    text: str


wide = VirtualObject("wide", state=Tally)


@wide.on_event(Counted)
def _counted(state: Tally, event: Counted) -> None:
    state.count += event.n


@wide.on_event(Noted)
def _noted(state: Tally, event: Noted) -> None:
    state.notes += 1


@wide.handler()
async def burst(ctx: ObjectContext[Tally], req: Burst) -> None:
    for _ in range(req.events):
        ctx.emit(Counted(n=1))
    if req.note:
        ctx.emit(Noted(text=req.note))


def _record(topic: str, size: int) -> OutRecord:
    return OutRecord(topic, 0, b"wide/k", b"x" * (size - 6))


def test_cadence_is_due_by_records_events_or_bytes() -> None:
    settings = RuntimeSettings(checkpoint_every=10, checkpoint_every_events=100, checkpoint_every_bytes=10_000)
    cadence = CheckpointCadence(settings, "events")
    small = [_record("events", 100), _record("replies", 50_000)]  # replies do not count
    assert cadence.bytes_of(small) == 100
    assert not cadence.due(small, 1, 1)
    cadence.committed(small, 1, 1, checkpointed=False)
    assert (cadence.records, cadence.events, cadence.bytes) == (1, 1, 100)
    assert cadence.due(small, 9, 0)  # records: 1 + 9
    assert cadence.due(small, 1, 99)  # events: 1 + 99
    assert not cadence.due(small, 1, 98)
    assert cadence.due([_record("events", 9_900)], 1, 0)  # bytes: 100 + 9,900
    assert not cadence.due([_record("events", 9_899)], 1, 0)
    cadence.committed(small, 1, 1, checkpointed=True)
    assert (cadence.records, cadence.events, cadence.bytes) == (0, 0, 0)


async def _wide_calls(runtime: RuntimeSettings, calls: int, req: Burst) -> tuple[int, int]:
    """The checkpoint start after `calls` calls, and the events records a restart read."""
    async with SessionTestKit(wide, runtime=runtime) as kit:
        for _ in range(calls):
            await kit.call(burst, "k", req)
        processor = kit.worker.processors[0]
        await kit.restart()
        restored = kit.worker.processors[0]
        assert kit.state(wide, "k") == Tally(count=calls * req.events, notes=calls if req.note else 0)
        return processor.checkpoint_start, restored.stats["restored_events_records"]


async def test_invocations_with_many_events_get_checkpoints() -> None:
    records_only = RuntimeSettings(checkpoint_every=10_000, checkpoint_every_events=10**9)
    start, read = await _wide_calls(records_only, 6, Burst(events=100))
    assert start == 0 and read == 6  # 600 events in 6 records: no checkpoint, a restore reads all
    by_events = RuntimeSettings(checkpoint_every=10_000, checkpoint_every_events=250)
    start, read = await _wide_calls(by_events, 6, Burst(events=100))
    assert start > 0 and read < 6


async def test_large_records_get_checkpoints_by_bytes() -> None:
    by_bytes = RuntimeSettings(checkpoint_every=10_000, checkpoint_every_events=10**9, checkpoint_every_bytes=20_000)
    start, read = await _wide_calls(by_bytes, 6, Burst(events=1, note="n" * 8_000))
    assert start > 0 and read < 6
    without = RuntimeSettings(checkpoint_every=10_000, checkpoint_every_events=10**9, checkpoint_every_bytes=10**9)
    start, read = await _wide_calls(without, 6, Burst(events=1, note="n" * 8_000))
    assert start == 0 and read == 6


async def test_restore_folds_sessions_to_stay_within_its_buffer(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "log")
    await log.start()
    topics = Topics("r")
    await log.create_topics(topics.specs(1))
    envelope = wide.codec.encode_envelope(Counted(n=1))
    records = []
    for v in range(1, 201):  # one wide session: 200 invocations x 50 events, no checkpoint
        done = Done(f"m{v}", "burst", [envelope] * 50, v, v - 1, None)
        records.append(OutRecord(topics.events, 0, b"wide/big", done.encode()))
    snapshot = Snapshot({"count": 7, "notes": 0}, 3)
    narrow = [OutRecord(topics.snapshots, 0, b"wide/small", snapshot.encode(), snapshot.headers())]
    narrow.append(OutRecord(topics.events, 0, b"wide/small", Done("s4", "burst", [envelope], 4, 200, None).encode()))
    await log.append(narrow + records)
    held = sum(len(r.value or b"") for r in records)
    limit = 2**16
    assert held > 3 * limit
    try:
        unbounded = await restore(log, topics, 0, topics.group())
        assert unbounded.folded == 0 and unbounded.sessions[b"wide/big"].tail_bytes == held
        settings = RuntimeSettings(restore_buffer_bytes=limit)
        bounded = await restore(log, topics, 0, topics.group(), objects={wide.name: wide}, settings=settings)
    finally:
        await log.close()
    big = bounded.sessions[b"wide/big"]
    assert bounded.folded >= 3 and big.state is not None and big.tail_bytes <= limit // 16
    assert bounded.events_records == 201 and bounded.events == 200 * 50 + 1
    assert big.load(wide, settings.retention_ms) == Tally(count=200 * 50) and big.version == 200
    assert big.recorded("m1", big.recent["m1"][0], settings.retention_ms) == {"ok": None}
    small = bounded.sessions[b"wide/small"]
    assert small.state is None and small.load(wide, settings.retention_ms) == Tally(count=8)
    for session in (big, small):  # the early fold and the later one give what one fold gives
        assert session.state == unbounded.sessions[session.key].load(wide, settings.retention_ms)


async def test_restore_keeps_what_it_cannot_fold_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = EmbeddedLog(tmp_path / "log")
    await log.start()
    topics = Topics("u")
    await log.create_topics(topics.specs(1))
    envelope = wide.codec.encode_envelope(Counted(n=1))
    records = [
        OutRecord(
            topics.events,
            0,
            f"gone/k{v % 7}".encode(),
            Done(f"m{v}", "h", [envelope] * 50, v // 7 + 1, v, None).encode(),
        )
        for v in range(200)
    ]
    await log.append(records)
    settings = RuntimeSettings(restore_buffer_bytes=2**16)
    try:
        with caplog.at_level(logging.WARNING, logger="actors.runtime.processor"):
            restored = await restore(log, topics, 0, topics.group(), objects={wide.name: wide}, settings=settings)
    finally:
        await log.close()
    assert restored.folded == 0 and all(s.state is None for s in restored.sessions.values())
    assert sum(s.tail_bytes for s in restored.sessions.values()) == sum(len(r.value or b"") for r in records)
    warnings = [r.getMessage() for r in caplog.records if "restore_buffer_bytes" in r.getMessage()]
    assert len(warnings) == 1 and "not served here (gone)" in warnings[0]
