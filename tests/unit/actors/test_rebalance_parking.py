"""Processors kept across a rebalance: paused on revoke, resumed only in the next generation.

The embedded log has no group, so these tests play the group's part: they stand in for the
membership a Kafka consumer reports (`Worker._tenure`) and call the worker's rebalance
listener themselves. The same path on a real broker, with workers killed and joining, is
tests/chaos/test_survivor_availability.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from harness.probe_sessions import PROBE, Item, append, gated_step, probe
from harness.session_harness import WAIT, Runtime, assert_eventually, make_settings, open_runtime

from actors.hosting.parking import LogMark, Tenure, may_check, may_resume
from actors.hosting.worker import Worker
from actors.runtime.processor import PartitionProcessor


@asynccontextmanager
async def _group_played(
    tmp_path: Path, namespace: str, tenure: list[Tenure], *, partitions: int
) -> AsyncIterator[tuple[Runtime, Worker]]:
    """A runtime of the probe sessions whose worker reports `tenure[0]` as its membership."""
    PROBE.reset()
    settings = make_settings("embedded", tmp_path, namespace, partitions=partitions)
    async with open_runtime([probe], settings) as rt:
        assert rt.worker is not None
        rt.worker._tenure = lambda: tenure[0]  # type: ignore[method-assign]
        yield rt, rt.worker


def test_only_the_same_member_in_the_very_next_generation_may_resume() -> None:
    parked = Tenure(7, "m-1")
    assert may_resume(parked, Tenure(8, "m-1"))
    assert not may_resume(parked, Tenure(9, "m-1"))  # a generation in between: someone may have owned it
    assert not may_resume(parked, Tenure(7, "m-1"))
    assert not may_resume(parked, Tenure(8, "m-2"))  # left (or was expelled) and came back
    assert not may_resume(Tenure(-1, ""), Tenure(0, ""))
    assert may_check(parked, Tenure(9, "m-1")) and not may_check(parked, Tenure(9, "m-2"))
    assert not may_check(parked, Tenure(7, "m-1"))


async def test_a_later_generation_resumes_only_if_the_log_did_not_change(
    tmp_path: Path, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenure = [Tenure(4, "m")]
    async with _group_played(tmp_path, namespace, tenure, partitions=1) as (rt, worker):
        assert (await rt.client.call(append, "k", Item(value="a"), timeout=WAIT)).values == ["a"]
        (first,) = (await rt.processors()).values()
        await worker.on_revoked({0})
        tenure[0] = Tenure(6, "m")  # generation 5 passed: the log tells whether anyone wrote
        await worker.on_assigned({0})
        assert worker.processors[0] is first and worker.kept == 1
        assert (await rt.client.call(append, "k", Item(value="b"), timeout=WAIT)).values == ["a", "b"]
        await worker.on_revoked({0})
        marked = worker._parked[0].mark
        changed = LogMark(marked.events_end + 1, marked.committed)

        async def written(p: int) -> LogMark:
            return changed

        monkeypatch.setattr(worker, "_mark", written)  # as if another owner wrote in generation 7
        tenure[0] = Tenure(8, "m")
        await worker.on_assigned({0})
        monkeypatch.undo()
        (second,) = (await rt.processors()).values()
        assert second is not first and worker.kept == 1
        assert (await rt.client.call(append, "k", Item(value="c"), timeout=WAIT)).values == ["a", "b", "c"]


def _backlog(processor: PartitionProcessor, n: int) -> None:
    assert processor.backlog == n, processor.backlog


def _started(gate: str) -> None:
    assert PROBE.started == [gate], PROBE.started


def _executed(step: str, times: int) -> None:
    assert PROBE.executions[step] == times, PROBE.executions


async def _turns(n: int = 50) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_paused_processor_commits_nothing_and_runs_nothing_until_it_resumes(
    tmp_path: Path, namespace: str
) -> None:
    PROBE.reset()
    settings = make_settings("embedded", tmp_path, namespace, partitions=1)
    async with open_runtime([probe], settings) as rt:
        assert (await rt.client.call(append, "k", Item(value="a"), timeout=WAIT)).values == ["a"]
        (processor,) = (await rt.processors()).values()
        running = asyncio.create_task(rt.client.call(gated_step, "k", Item(value="s", gate="g"), timeout=WAIT))
        await assert_eventually(lambda: _started("g"))
        assert await processor.pause()
        assert processor.paused
        committed = processor.stats["transactions"]
        PROBE.open("g")  # the step in flight runs; its journal entry waits for the resume
        await assert_eventually(lambda: _executed("s", 1))
        queued = asyncio.create_task(rt.client.call(append, "k", Item(value="b"), timeout=WAIT))
        await assert_eventually(lambda: _backlog(processor, 2))
        await _turns()
        assert processor.stats["transactions"] == committed
        assert not running.done() and not queued.done()
        processor.resume()
        assert (await running).values == ["a", "s:1"]
        assert (await queued).values == ["a", "s:1", "b"]
        assert PROBE.executions["s"] == 1


async def test_a_partition_back_in_the_next_generation_resumes_without_a_restore(
    tmp_path: Path, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    tenure = [Tenure(4, "m")]
    async with _group_played(tmp_path, namespace, tenure, partitions=2) as (rt, worker):
        keys = ["k0", "k1", "k2", "k3"]
        for key in keys:
            assert (await rt.client.call(append, key, Item(value="a"), timeout=WAIT)).values == ["a"]
        before = dict(await rt.processors())
        await worker.on_revoked({0, 1})
        assert worker.processors == {}
        tenure[0] = Tenure(5, "m")
        await worker.on_assigned({0, 1})
        assert worker.processors == before  # the very same processors
        assert worker.kept == 2 and not worker._restoring
        for key in keys:
            assert (await rt.client.call(append, key, Item(value="b"), timeout=WAIT)).values == ["a", "b"]


async def test_a_parked_processor_is_dropped_uncommitted_when_the_member_changed(
    tmp_path: Path, namespace: str
) -> None:
    tenure = [Tenure(4, "m")]
    async with _group_played(tmp_path, namespace, tenure, partitions=1) as (rt, worker):
        assert (await rt.client.call(append, "k", Item(value="a"), timeout=WAIT)).values == ["a"]
        (old,) = (await rt.processors()).values()
        running = asyncio.create_task(rt.client.call(gated_step, "k", Item(value="s", gate="g"), timeout=WAIT))
        await assert_eventually(lambda: _started("g"))
        await worker.on_revoked({0})
        PROBE.open("g")
        await assert_eventually(lambda: _executed("s", 1))  # ran, never journaled
        tenure[0] = Tenure(6, "m2")  # a new member id: it left (or was expelled) meanwhile
        await worker.on_assigned({0})
        (new,) = (await rt.processors()).values()
        assert new is not old and worker.kept == 0
        # The new processor restored the partition from the log: the step's result was never
        # committed, so it runs again; the first "a" is there, applied once.
        assert (await running).values == ["a", "s:2"]
        assert PROBE.executions["s"] == 2


async def test_a_partition_not_given_back_is_dropped_and_the_stopping_worker_releases_parked_ones(
    tmp_path: Path, namespace: str
) -> None:
    tenure = [Tenure(1, "m")]
    async with _group_played(tmp_path, namespace, tenure, partitions=2) as (rt, worker):
        await rt.processors()
        await worker.on_revoked({0, 1})
        tenure[0] = Tenure(2, "m")
        await worker.on_assigned({1})
        assert set(worker.processors) == {1} and worker.kept == 1 and not worker._parked
        await worker.on_revoked({1})
        assert set(worker._parked) == {1}
    assert not worker._parked and not worker.processors
