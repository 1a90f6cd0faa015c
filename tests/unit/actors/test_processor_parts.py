"""The parts a partition processor composes, on their own: the group commit, the checkpoint
cadence, and the intake's dead-lettering of records it cannot read (no broker, no processor)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, cast

import pytest
from harness import isolation_sessions as iso

from actors.errors import PartitionLost
from actors.messages import session_key
from actors.protocol.entries import Done
from actors.runtime import checkpointing
from actors.runtime.checkpointing import Checkpoints
from actors.runtime.commits import GroupCommit
from actors.runtime.failures import Failures
from actors.runtime.intake import Intake
from actors.runtime.outputs import PartitionOutputs
from actors.runtime.partition import Partition
from actors.runtime.partition_state import PartitionState
from actors.runtime.restore import RestoredPartition
from actors.runtime.sessions import Session
from actors.runtime.streaming import StreamTracker
from actors.settings import RuntimeSettings
from eventstore import OutRecord, Record, Topics
from eventstore.records import TopicPartition

TOPICS = Topics("parts")
INBOX = TopicPartition(TOPICS.inbox, 0)


class _Writer:
    """A transactional writer that records its commits; `gate` holds a commit, `error` fails it."""

    def __init__(self) -> None:
        self.commits: list[tuple[list[OutRecord], dict[TopicPartition, int]]] = []
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self.error: BaseException | None = None

    async def commit(self, records: Sequence[OutRecord], **options: Any) -> None:  # noqa: ANN401
        self.entered.set()
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        offsets: Mapping[TopicPartition, int] = options.get("offsets") or {}
        self.commits.append((list(records), dict(offsets)))


def _state() -> PartitionState:
    r = RestoredPartition()
    return PartitionState(r.sessions, r.journals, r.legacy_journals, r.waits, r.offsets)


def _commits(
    writer: _Writer, settings: RuntimeSettings, state: PartitionState, failures: list[BaseException]
) -> GroupCommit:
    checkpoints = Checkpoints(cast(Any, None), TOPICS, 0, {}, settings, state, 0)
    return GroupCommit(
        cast(Any, writer),
        INBOX,
        "group",
        settings,
        state.offsets,
        checkpoints,
        committed=0,
        on_commit=lambda: None,
        on_failure=failures.append,
        offsets_in_every_commit=False,
    )


def _event(n: int) -> OutRecord:
    return OutRecord(TOPICS.events, 0, b"s/k", bytes([n]))


async def _until(condition: Any, timeout: float = 5.0) -> None:  # noqa: ANN401
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_one_transaction_in_flight_takes_everything_that_finished_meanwhile() -> None:
    settings = RuntimeSettings(offset_commit_interval=0.05)
    state, writer = _state(), _Writer()
    commits = _commits(writer, settings, state, [])
    for offset in (0, 1, 2):
        assert state.offsets.add(offset)
    writer.gate.clear()
    commits.start()
    try:
        commits.finish(0, [_event(0)], events_records=1)
        await asyncio.wait_for(writer.entered.wait(), 5)  # the first transaction is in flight
        commits.finish(1, [_event(1)], events_records=1)
        commits.finish(2, [_event(2)], events_records=1)
        assert commits.pending_records == 2 and commits.committing
        writer.gate.set()
        await _until(lambda: any(offsets.get(INBOX) == 3 for _, offsets in writer.commits))
        first, second = writer.commits[0][0], writer.commits[1][0]
        assert (first, second) == ([_event(0)], [_event(1), _event(2)])
        assert writer.commits[0][1] == {INBOX: 1}  # the first commit takes the offset at once
        assert commits.committed == 3 and not commits.committing
    finally:
        await commits.stop()


@pytest.mark.parametrize("interval", [0.0, 0.3])
async def test_the_commit_interval_holds_the_next_transaction_so_it_carries_more(interval: float) -> None:
    settings = RuntimeSettings(offset_commit_interval=5.0, commit_interval=interval)
    state, writer = _state(), _Writer()
    commits = _commits(writer, settings, state, [])
    for offset in range(4):
        assert state.offsets.add(offset)
    commits.start()
    try:
        commits.finish(0, [_event(0)], events_records=1)
        await _until(lambda: len(writer.commits) == 1)
        # Three finish one after the other, each after the last transaction ended.
        for n in (1, 2, 3):
            commits.finish(n, [_event(n)], events_records=1)
            await asyncio.sleep(0.05)
        await _until(lambda: not commits.committing)
        batches = [records for records, _ in writer.commits[1:]]
        if interval:  # all three wait for the interval and share one transaction
            assert batches == [[_event(1), _event(2), _event(3)]]
        else:  # each goes at once
            assert batches == [[_event(1)], [_event(2)], [_event(3)]]
        await asyncio.wait_for(commits.flush(), 5)  # a flush commits the offsets all the same
        assert commits.committed == 4
    finally:
        await commits.stop()


async def test_a_failed_commit_loses_the_partition_once_and_fails_the_waiting_step() -> None:
    failures: list[BaseException] = []
    state, writer = _state(), _Writer()
    commits = _commits(writer, RuntimeSettings(), state, failures)
    writer.error = RuntimeError("broker gone")
    commits.start()
    try:
        with pytest.raises(PartitionLost, match="partition 0"):
            await asyncio.wait_for(commits.journal(_event(7)), 5)
        assert failures == [writer.error] and commits.failed is writer.error
        commits.fail(RuntimeError("later"))  # only the first failure counts
        assert failures == [writer.error] and commits.failed is writer.error
    finally:
        await commits.stop()


def test_checkpoints_ask_the_cadence_and_count_what_committed() -> None:
    settings = RuntimeSettings(checkpoint_every=3)
    checkpoints = Checkpoints(cast(Any, None), TOPICS, 0, {}, settings, _state(), 0)
    two = [_event(0), _event(1)]
    assert not checkpoints.due(two, 2, 0) and checkpoints.due([*two, _event(2)], 3, 0)
    checkpoints.committed(two, 2, 0, checkpointed=False)
    assert checkpoints.due([_event(3)], 1, 0) and not checkpoints.due([], 0, 0)
    checkpoints.committed([_event(3)], 1, 0, checkpointed=True)
    assert not checkpoints.due(two, 2, 0)


class _EndOffsets:
    async def end_offset(self, topic: str, partition: int) -> int:
        return 0


async def test_the_first_checkpoint_after_a_restore_folds_tails_without_blocking_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # After a restore, every session holds its entries still encoded (folded on first use);
    # the checkpoint must fold them all, and used to do it in one synchronous stretch.
    monkeypatch.setattr(checkpointing, "FOLD_SLICE_SECONDS", 0.001)
    state = _state()
    envelope = iso.acct.codec.encode_envelope(iso.Added(by=1, tag="t"))
    for k in range(400):
        session = Session(session_key("acct", f"k{k}"), "acct")
        for v in range(1, 21):
            session.add_tail(
                Done(f"m{k}-{v}", "add", [envelope], version=v, inbox_offset=-1, ended_ms=1).encode(), v, v
            )
        state.sessions[session.key] = session
    checkpoints = Checkpoints(cast(Any, _EndOffsets()), TOPICS, 0, {"acct": iso.acct}, RuntimeSettings(), state, 0)
    ticks = 0
    busy = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        await busy.wait()
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    busy.set()
    try:
        records = await checkpoints.records()
        during = ticks
    finally:
        task.cancel()
    assert during > 1, "the checkpoint folded every session without letting the loop run"
    snapshots = [r for r in records if r.topic == TOPICS.snapshots and r.key.startswith(b"acct/")]
    assert len(snapshots) == 400
    assert all(s.tail == [] and isinstance(s.state, iso.Total) and s.state.n == 20 for s in state.sessions.values())


@pytest.mark.parametrize(
    ("value", "category"),
    [(b"\xc1 not msgpack", "poison"), (b"x" * 2048, "oversize")],
)
async def test_intake_dead_letters_a_record_it_cannot_read_and_commits_its_offset(value: bytes, category: str) -> None:
    settings = RuntimeSettings(max_message_bytes=1024, offset_commit_interval=30)
    state, writer = _state(), _Writer()
    commits = _commits(writer, settings, state, [])
    outputs = PartitionOutputs(TOPICS, 0, 1, settings, "group")
    streams = StreamTracker(cast(Any, None), TOPICS, 0, settings.max_message_bytes)
    partition = Partition({}, settings, state, outputs, commits, streams, None)
    crashed: list[BaseException] = []
    intake = Intake(partition, cast(Any, None), Failures(partition), on_task_failure=crashed.append)
    commits.start()
    try:
        intake.submit(Record(TOPICS.inbox, 0, 0, b"s/k", value))
        await _until(lambda: bool(writer.commits))
        ((records, offsets),) = writer.commits
        (dead,) = records
        assert dead.topic == TOPICS.dlq and dead.value == value
        assert (dict(dead.headers)["tether.category"], offsets) == (category.encode(), {INBOX: 1})
        assert intake.running == 0 and crashed == [] and commits.failed is None
    finally:
        await commits.stop()
