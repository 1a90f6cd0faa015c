"""A survivor's partitions keep answering while another worker dies or joins (issue 13, section 3).

Two `tether serve` workers share 4 partitions. Sessions on the partitions of the worker that
stays ("the survivor") are called in a loop, one call at a time per session, while the other
worker is killed with SIGKILL (and, separately, while a third worker joins). Every call must
be answered with the next total (nothing lost, nothing applied twice), and the survivor must
never restore its own partitions again: with the sticky assignor they stay where they are, and
a processor that gets its partition back in the next generation resumes instead of being
restored. Restores are counted from the workers' logs ("partition N restored: ..."), not timed.
The longest gap between two answers of a survivor's session is printed (the bench's W10
measures it).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from pathlib import Path

import pytest
from harness import isolation_sessions as iso
from harness.session_harness import WorkerProcess, assert_eventually, keys_on_partition, settings_for, worker_env

from actors import Client, Settings  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

PARTITIONS = 4
CALL_TIMEOUT = 60.0
_RESTORED = re.compile(r"partition (\d+) restored: ")


def _restores(worker: WorkerProcess) -> Counter[int]:
    """How often `worker` restored each partition (from its log)."""
    return Counter(int(m.group(1)) for m in _RESTORED.finditer(worker.output()))


def _kept(worker: WorkerProcess) -> int:
    return worker.output().count(" kept across the rebalance ")


class _Probes:
    """Calls each key in a loop, one call at a time; records answers, gaps and errors."""

    def __init__(self, client: Client, keys: list[str]) -> None:
        self.client = client
        self.keys = keys
        self.totals: dict[str, list[int]] = {k: [] for k in keys}
        self.answered: dict[str, list[float]] = {k: [] for k in keys}
        self.errors: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._probe(k)) for k in self.keys]

    async def _probe(self, key: str) -> None:
        while not self._stop.is_set():
            try:
                receipt = await self.client.call(iso.add, key, iso.Add(by=1), timeout=CALL_TIMEOUT)
            except Exception as exc:  # every probe must be answered: record, the test fails
                self.errors.append(f"{key}: {exc!r}")
                return
            self.totals[key].append(receipt.total)
            self.answered[key].append(time.monotonic())
            await asyncio.sleep(0.02)

    def count(self) -> int:
        return min(len(v) for v in self.totals.values())

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(asyncio.gather(*self._tasks), CALL_TIMEOUT + 10)

    def check(self) -> None:
        assert not self.errors, self.errors
        for key, totals in self.totals.items():
            # One call at a time per session: each answer is the previous total plus one.
            assert totals == list(range(1, len(totals) + 1)), (key, totals)

    def longest_gap(self, since: float) -> float:
        gaps = [b - a for times in self.answered.values() for a, b in zip(times, times[1:], strict=False) if b > since]
        return max(gaps, default=0.0)


async def _answered_more(probes: _Probes, more: int) -> None:
    target = probes.count() + more

    def grew() -> None:
        assert not probes.errors, probes.errors
        assert probes.count() >= target, f"{probes.count()} answers per session, waiting for {target}"

    await assert_eventually(grew, timeout=90)


def _owns(worker: WorkerProcess, count: int) -> set[int]:
    assert worker.alive(), worker.output()[-3000:]
    restored = set(_restores(worker))
    assert len(restored) >= count, f"{worker.name} restored {sorted(restored)}"
    return restored


def _took_over(worker: WorkerProcess, partitions: set[int]) -> None:
    """`worker`, which restored every partition when it started alone, restored `partitions` again."""
    assert worker.alive(), worker.output()[-3000:]
    restores = _restores(worker)
    assert all(restores[p] >= 2 for p in partitions), f"{worker.name} restored {dict(restores)}"


async def _two_workers(a: WorkerProcess, b: WorkerProcess) -> tuple[set[int], set[int]]:
    """Start a, then b; return each one's partitions once the group settled."""
    a.start()
    await assert_eventually(lambda: _owns(a, PARTITIONS), timeout=90)
    b.start()
    b_parts = await assert_eventually(lambda: _owns(b, PARTITIONS // 2), timeout=90)

    def a_kept_the_rest() -> None:
        assert _kept(a) >= PARTITIONS - len(b_parts), a.output()[-3000:]

    await assert_eventually(a_kept_the_rest, timeout=60)
    return set(range(PARTITIONS)) - b_parts, b_parts


def _workers(
    request: pytest.FixtureRequest, namespace: str, tmp_path: Path, transactions: str, names: str
) -> tuple[Settings, list[WorkerProcess]]:
    """The test's settings and a worker of the isolation sessions per letter of `names`, none started."""
    settings = settings_for(request, "kafka", tmp_path / "data", namespace, partitions=PARTITIONS)
    env = worker_env(
        settings,
        TETHER_KAFKA__TRANSACTIONS=transactions,
        TETHER_KAFKA__SESSION_TIMEOUT_MS="6000",
        TETHER_KAFKA__HEARTBEAT_INTERVAL_MS="1000",
    )
    return settings, [WorkerProcess("harness.isolation_sessions:SERVED", env, tmp_path, name=n) for n in names]


def _keys(partitions: set[int]) -> list[str]:
    return [
        k for p in sorted(partitions) for k in keys_on_partition(f"live{p}-", 2, PARTITIONS, partition=p, obj="acct")
    ]


@pytest.mark.parametrize("transactions", ["per_partition", "per_worker"])
async def test_the_survivor_keeps_answering_while_the_other_worker_is_killed(
    request: pytest.FixtureRequest, namespace: str, tmp_path: Path, transactions: str
) -> None:
    settings, (a, b) = _workers(request, namespace, tmp_path, transactions, "ab")
    try:
        survivor, doomed = await _two_workers(a, b)
        before = _restores(a)
        assert all(before[p] == 1 for p in survivor), before
        async with Client.connect(settings) as client:
            for key in _keys(doomed):
                assert (await client.call(iso.add, key, iso.Add(by=1), timeout=CALL_TIMEOUT)).total == 1
            probes = _Probes(client, _keys(survivor))
            probes.start()
            await _answered_more(probes, 5)
            b.kill()
            killed = time.monotonic()
            kept_before = _kept(a)
            await assert_eventually(lambda: _took_over(a, doomed), timeout=90)
            await _answered_more(probes, 5)
            await probes.stop()
            probes.check()
            # The dead worker's sessions are served again too, each total where it was.
            for key in _keys(doomed):
                assert (await client.call(iso.add, key, iso.Add(by=1), timeout=CALL_TIMEOUT)).total == 2
        after = _restores(a)
        assert {p: after[p] for p in survivor} == {p: 1 for p in survivor}, after  # never restored again
        assert {p: after[p] for p in doomed} == {p: 2 for p in doomed}, after  # at the start, after the kill
        assert _kept(a) >= kept_before + len(survivor)
        print(
            f"{transactions}: longest gap between two answers of a survivor's session after the kill: "
            f"{probes.longest_gap(killed):.2f} s ({probes.count()} answers per session)"
        )
    except AssertionError:
        print(a.logs(), b.logs())
        raise
    finally:
        a.cleanup()
        b.cleanup()


@pytest.mark.parametrize("transactions", ["per_partition", "per_worker"])
async def test_the_workers_keep_answering_while_a_third_joins(
    request: pytest.FixtureRequest, namespace: str, tmp_path: Path, transactions: str
) -> None:
    settings, (a, b, c) = _workers(request, namespace, tmp_path, transactions, "abc")
    try:
        a_parts, b_parts = await _two_workers(a, b)
        async with Client.connect(settings) as client:
            probes = _Probes(client, _keys(set(range(PARTITIONS))))
            probes.start()
            await _answered_more(probes, 5)
            c.start()
            joined = time.monotonic()
            c_parts = await assert_eventually(lambda: _owns(c, 1), timeout=90)
            await _answered_more(probes, 5)
            await probes.stop()
            probes.check()
        # Balance needed one partition for the newcomer; nothing else moved or was restored.
        assert len(c_parts) == 1, c_parts
        restores_a, restores_b = _restores(a), _restores(b)
        assert {p: restores_a[p] for p in a_parts - c_parts} == {p: 1 for p in a_parts - c_parts}, restores_a
        assert {p: restores_b[p] for p in b_parts - c_parts} == {p: 1 for p in b_parts - c_parts}, restores_b
        print(
            f"{transactions}: longest gap between two answers of any session after the join: "
            f"{probes.longest_gap(joined):.2f} s ({probes.count()} answers per session)"
        )
    except AssertionError:
        print(a.logs(), b.logs(), c.logs())
        raise
    finally:
        a.cleanup()
        b.cleanup()
        c.cleanup()
