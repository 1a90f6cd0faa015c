"""The parts of a partition processor, each on its own: offsets, timers, retry policies, restore."""

from __future__ import annotations

import asyncio
from pathlib import Path

from actors import RetryableError, RetryPolicy, TerminalError
from actors.protocol import (
    CHECKPOINT_KEY,
    Checkpoint,
    Completion,
    Delayed,
    Done,
    Message,
    Queued,
    Snapshot,
    Step,
    Suspend,
    entries,
)
from actors.protocol.awakeables import awakeable_id
from actors.runtime.offsets import NO_OFFSET, OffsetTracker
from actors.runtime.restore import restore
from actors.runtime.waits import Timers, WaitTable, now_ms
from eventstore import EmbeddedLog, OutRecord, Topics


def test_offset_watermark_is_the_lowest_unfinished() -> None:
    t = OffsetTracker(10)
    assert t.watermark() == 10
    for o in (10, 11, 12):
        assert t.add(o)
    t.finish(11)
    assert t.watermark() == 10 and len(t) == 3
    t.finish(10)
    assert t.watermark() == 12 and len(t) == 1
    t.finish(12)
    assert t.watermark() == 13 == t.next


def test_offsets_finished_before_a_crash_are_skipped_and_kept_for_checkpoints() -> None:
    t = OffsetTracker(5, {3, 6, 8})
    assert t.finished_before == {6, 8}
    assert t.add(5) and not t.add(6)
    assert t.done_above_watermark() == [6, 8]
    t.finish(5)
    assert t.watermark() == 7


async def test_timers_fire_in_due_order_once_and_not_when_cancelled() -> None:
    fired: list[str] = []
    timers = Timers()
    now = now_ms()
    timers.schedule("b", now + 40)
    timers.schedule("a", now + 10)
    timers.schedule("c", now + 20)
    timers.cancel("c")
    timers.schedule("d", now + 5)
    timers.schedule("d", now + 60)  # replaces the earlier schedule
    assert timers.next_due("d") == now + 60 and len(timers) == 3
    timers.start(fired.append)
    try:
        for _ in range(100):
            if len(fired) == 3:
                break
            await asyncio.sleep(0.01)
    finally:
        await timers.stop()
    assert fired == ["a", "b", "d"] and len(timers) == 0


def test_wait_table_first_completion_wins_and_forget_drops_everything() -> None:
    waits = WaitTable()
    m = Message(id="m1", o="o", k="k", h="h", p=None, ts=1)
    awk = awakeable_id("o", "k", "m1", 1)
    assert waits.complete(Completion("m1", awk, 1)) and not waits.complete(Completion("m1", awk, 2))
    assert waits.completion(awk) == Completion("m1", awk, 1)
    waits.suspend(m.invocation_id, Suspend(m, 0, now_ms() + 10_000, awk))
    assert waits.timers.next_due(m.invocation_id) == 0  # already resolved: due at once
    waits.delay("x", Delayed(m, 1, 99))
    waits.forget(m.invocation_id)
    assert m.invocation_id not in waits.suspended and waits.timers.next_due(m.invocation_id) is None
    assert waits.take_delayed("x") == Delayed(m, 1, 99) and waits.take_delayed("x") is None


class Flaky(Exception):
    pass


def test_retry_policy_backs_off_exponentially_up_to_its_cap() -> None:
    policy = RetryPolicy(max_attempts=5, initial_interval=0.1, multiplier=2.0, max_interval=0.3, jitter=0.0)
    assert [policy.next_delay(a, Flaky()) for a in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.3, 0.3, None]


def test_retry_policy_jitter_stays_within_its_fraction() -> None:
    policy = RetryPolicy(initial_interval=1.0, max_interval=1.0, jitter=0.2)
    delays = {policy.next_delay(1, Flaky()) for _ in range(50)}
    assert all(d is not None and 0.8 <= d <= 1.2 for d in delays)


def test_retry_policy_stops_for_terminal_declared_and_too_long_retry_after() -> None:
    policy = RetryPolicy(max_attempts=5, max_interval=1.0, jitter=0.0, non_retryable=("Flaky",))
    assert not policy.retries(TerminalError("no")) and policy.next_delay(1, TerminalError("no")) is None
    assert not policy.retries(Flaky()) and policy.retries(ValueError())
    assert policy.next_delay(1, RetryableError("429", retry_after=5.0)) is None
    assert policy.next_delay(1, RetryableError("429", retry_after=0.5)) == 0.5


async def test_restore_rebuilds_a_partition_without_a_processor(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "log")
    await log.start()
    topics = Topics("r")
    await log.create_topics(topics.specs(1))
    key = b"agent/k1"
    m1 = Message(id="m1", o="agent", k="k1", h="ask", p=None, ts=1)
    m2 = Message(id="m2", o="agent", k="k1", h="ask", p=None, ts=2)
    m3 = Message(id="m3", o="agent", k="k2", h="ask", p=None, ts=3, nb=now_ms() + 60_000)
    awk = awakeable_id("agent", "k1", "m1", 1)
    snapshot = Snapshot({"answers": []}, 1)
    await log.append(
        [
            OutRecord(topics.snapshots, 0, key, snapshot.encode(), snapshot.headers()),
            OutRecord(topics.snapshots, 0, CHECKPOINT_KEY, Checkpoint(0, done_offsets=[4]).encode()),
            OutRecord(topics.events, 0, key, Done("m0", "ask", [], 1, 0, "covered").encode()),
            OutRecord(topics.events, 0, key, Step("m1", 0, "llm", "draft").encode()),
            OutRecord(topics.events, 0, key, Suspend(m1, 1, None, awk, [], 0, 2).encode()),
            OutRecord(topics.events, 0, key, Queued(m2, 2).encode()),
            OutRecord(topics.events, 0, b"agent/k2", Delayed(m3, 3, m3.not_before_ms or 0).encode()),
            OutRecord(topics.events, 0, key, Completion("m1", awk, "yes").encode()),
        ]
    )
    restored = await restore(log, topics, 0, topics.group())
    await log.close()
    session = restored.sessions[key]
    assert session.version == 2 and [type(entries.decode(e)) for e in session.tail] == [
        Suspend
    ]  # m0 is covered by the snapshot
    assert session.blocked_by == m1.invocation_id
    assert [(o, m.id) for o, m, _ in session.queue] == [(NO_OFFSET, "m2")]
    assert restored.journals == {m1.invocation_id: {0: Step("m1", 0, "llm", "draft")}}
    assert restored.waits.completion(awk) == Completion("m1", awk, "yes")
    assert restored.waits.timers.next_due(m1.invocation_id) == 0  # resolved after it suspended
    assert restored.waits.delayed[m3.invocation_id].message == m3
    assert restored.resume == 0 and restored.offsets.done_above_watermark() == [0, 1, 2, 3, 4]
    assert restored.records == 8 and restored.checkpoint_start == 0
