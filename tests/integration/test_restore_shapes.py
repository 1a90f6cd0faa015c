"""Invocations with many events each get checkpoints, and a restart restores from them.

One session of a few invocations with 1,000 events each never got a checkpoint when the
cadence counted records alone (1,000 invocations x 1,000 events: 1,000 records, under
`checkpoint_every`), so every restore read all of its events (544 MiB peak RSS). Here the
cadence counts events too: a restart reads the events records after the last checkpoint, not
all of them (records read, counted by the restore; no time is measured).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.models import Added
from harness.session_harness import assert_eventually, settings_for
from pydantic import BaseModel

from actors import Client, ObjectContext, RuntimeSettings, VirtualObject, Worker

pytestmark = pytest.mark.kafka

CALLS = 12
EVENTS = 1_000


class Tally(BaseModel):
    count: int = 0


class Burst(BaseModel):
    events: int


wide = VirtualObject("wide", state=Tally)


@wide.handler()
async def burst(ctx: ObjectContext[Tally], req: Burst) -> None:
    for _ in range(req.events):
        ctx.emit(Added(n=1))


@wide.on_event(Added)
def _added(state: Tally, event: Added) -> None:
    state.count += event.n


async def _run_then_restart(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str, runtime: RuntimeSettings
) -> tuple[int, int]:
    """`CALLS` wide invocations, then a new worker: its checkpoint start and events records read."""
    settings = settings_for(request, "kafka", tmp_path, namespace, partitions=1, runtime=runtime)
    async with Worker([wide], settings), Client.connect(settings) as client:
        for _ in range(CALLS):
            await client.call(burst, "k", Burst(events=EVENTS), timeout=60)
    worker = Worker([wide], settings)
    await worker.start()
    try:

        def assigned() -> None:
            assert len(worker.processors) == 1

        await assert_eventually(assigned)
        processor = worker.processors[0]
        async with Client.connect(settings) as client:
            state = await client.state("wide", "k", timeout=60)
        assert state["state"]["count"] == CALLS * EVENTS and state["version"] == CALLS
        return processor.checkpoint_start, processor.stats["restored_events_records"]
    finally:
        await worker.stop()


async def test_a_wide_session_restores_from_a_checkpoint(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> None:
    by_events = RuntimeSettings(checkpoint_every_events=5 * EVENTS)  # a checkpoint every 5 invocations
    start, read = await _run_then_restart(request, tmp_path / "a", f"{namespace}-a", by_events)
    assert start > 0 and read <= 5, (start, read)


async def test_records_alone_never_checkpoint_a_wide_session(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> None:
    records_only = RuntimeSettings(checkpoint_every_events=10**9, checkpoint_every_bytes=10**12)
    start, read = await _run_then_restart(request, tmp_path / "b", f"{namespace}-b", records_only)
    assert start == 0 and read == CALLS, (start, read)
