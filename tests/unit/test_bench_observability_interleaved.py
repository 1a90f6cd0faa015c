"""`python -m bench overhead --interleaved`: modes switched in running processes, blocks paired with neighbours."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from harness.models import Add
from harness.ray_counter import add, counter
from opentelemetry import trace
from opentelemetry.util._once import Once

from actors import Client, Settings, Worker
from actors.observability import METRICS
from actors.observability import tracing as tether_tracing
from bench.observability_cost import ARMS
from bench.observability_interleaved import _Load, interleaved_costs, schedule
from bench.observability_switch import Arm, apply, ask_counts, ask_worker, listen


def _block(arm: str, cpu: float, *, calls_per_s: float = 1000.0, other: float = 0.0) -> dict[str, Any]:
    return {
        "arm": arm,
        "calls_per_s": calls_per_s,
        "cpu_ms_per_call": cpu,
        "processes": {"worker": {"cpu_ms_per_call": cpu / 2}, "load_generator": {"cpu_ms_per_call": cpu / 4}},
        "machine_load": {"other_cpu_s": other * 10.0, "capacity_cpu_s": 10.0},
    }


def test_the_schedule_puts_off_around_every_arm_and_rotates_the_arms() -> None:
    blocks = schedule(3)
    arms = [a.name for a in ARMS if a.name != "off"]
    assert blocks[0] == blocks[-1] == "off"
    assert blocks[::2] == ["off"] * (3 * len(arms) + 1)
    cycles = [blocks[1 + 2 * len(arms) * c : 1 + 2 * len(arms) * (c + 1) : 2] for c in range(3)]
    assert all(sorted(c) == sorted(arms) for c in cycles), "each arm once per cycle"
    assert len({c[0] for c in cycles}) == 3, "each cycle starts with another arm"


def test_a_block_is_compared_with_the_mean_of_the_off_blocks_around_it_so_a_drift_cancels() -> None:
    # The machine drifts: every block costs 10 % more than the one before; metrics adds 5 % on top.
    blocks, cpu = [], 1.0
    for arm in schedule(2):
        blocks.append(_block(arm, cpu * (1.05 if arm == "metrics" else 1.0)))
        cpu *= 1.1
    out = interleaved_costs(blocks)
    off_before, off_after = 1.0, 1.1 * 1.1
    expected = (1.1 * 1.05 / ((off_before + off_after) / 2) - 1) * 100  # the first metrics block
    assert out["per_block_tether_cpu_cost_pct_metrics"][0] == round(expected, 2)
    assert out["blocks_used_metrics"] == 2
    # Against the off block before it alone the drift would read as +15.5 %; against the mean of
    # both neighbours the true +5 % is left (4.5 %: a geometric drift against an arithmetic mean).
    assert 4.0 < out["cpu_cost_pct_metrics"] < 5.0
    assert out["cpu_cost_pct_metrics"] == pytest.approx(out["tether_cpu_cost_pct_metrics"])


def test_a_block_another_job_disturbed_does_not_count_nor_do_its_neighbours() -> None:
    blocks = [_block(arm, 1.2 if arm == "traced" else 1.0) for arm in schedule(2)]
    first_traced = [b["arm"] for b in blocks].index("traced")
    blocks[first_traced + 1]["machine_load"]["other_cpu_s"] = 3.0  # the off block after it
    blocks[first_traced + 1]["cpu_ms_per_call"] = 5.0
    out = interleaved_costs(blocks)
    assert out["blocks_used_traced"] == 1
    assert round(out["cpu_cost_pct_traced"], 6) == 20.0
    assert round(out["throughput_cost_pct_traced"], 6) == 0.0


@pytest.fixture
def restored() -> Iterator[None]:
    """This process's tracer provider, metrics and ``trace_unsampled`` as they were, after the test."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGUSR2)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        trace._TRACER_PROVIDER = None
        trace._TRACER_PROVIDER_SET_ONCE = Once()
        METRICS.enable(False)
        tether_tracing.trace_unsampled("auto")


def test_a_mode_switches_metrics_tracing_and_unsampled_spans_in_this_process(restored: None) -> None:
    apply(Arm("lean", metrics=True, sampling=0.1, trace_unsampled=False))
    assert METRICS.enabled and tether_tracing.enabled()
    unsampled = tether_tracing.parent_of("00-" + "1" * 32 + "-" + "2" * 16 + "-00")
    assert unsampled is not None and tether_tracing.unsampled_parent(unsampled)
    apply(Arm("off", metrics=False, sampling=0.0))
    assert not METRICS.enabled and not tether_tracing.enabled(), "off is no tracer provider at all"
    apply(Arm("traced", metrics=False, sampling=1.0))
    assert tether_tracing.enabled(), "and back on, though the API sets a provider once"
    with tether_tracing.tracer().start_as_current_span("probe") as span:
        assert span.is_recording()


async def test_a_listening_process_switches_on_sigusr1_and_acknowledges(restored: None, tmp_path: Path) -> None:
    listen(tmp_path / "mode")
    await ask_worker(os.getpid(), tmp_path / "mode", Arm("metrics", metrics=True, sampling=0.0))
    assert METRICS.enabled and not tether_tracing.enabled()
    await ask_worker(os.getpid(), tmp_path / "mode", Arm("sampled", metrics=False, sampling=0.1))
    assert not METRICS.enabled and tether_tracing.enabled()


async def test_a_listening_worker_reports_invocations_and_transactions_on_sigusr2(
    restored: None, tmp_path: Path, namespace: str
) -> None:
    settings = Settings(namespace=namespace, data_dir=tmp_path / "data", partitions=2, backend="embedded")
    async with Worker([counter], settings), Client.connect(settings) as client:
        listen(tmp_path / "mode")
        await ask_worker(os.getpid(), tmp_path / "mode", Arm("off", metrics=False, sampling=0.0))  # finds the worker
        before = await ask_counts(os.getpid(), tmp_path / "mode")
        for i in range(5):
            await client.call(add, f"k{i}", Add(n=1), timeout=30)
        after = await ask_counts(os.getpid(), tmp_path / "mode")
    assert (after[0] - before[0], after[1] - before[1]) == (5, 5), "one by one: a transaction each"


def test_calls_per_transaction_are_compared_like_the_cost() -> None:
    blocks = [_block(arm, 1.0) | {"calls_per_txn": 2.0 if arm == "traced" else 4.0} for arm in schedule(1)]
    out = interleaved_costs(blocks)
    assert out["calls_per_txn_off"] == 4.0
    assert out["calls_per_txn_change_pct_traced"] == -50.0
    assert out["calls_per_txn_change_pct_metrics"] == 0.0
    assert "calls_per_txn_off" not in interleaved_costs([_block(arm, 1.0) for arm in schedule(1)])


class _SlowClient:
    """Answers every call after `seconds`, counting how many are in flight at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.in_flight = self.most_in_flight = self.started = 0

    async def call(self, handler: Any, key: str, payload: Any, *, timeout: float) -> Any:  # noqa: ANN401
        self.started += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.in_flight -= 1
        return SimpleNamespace(value=1)


async def test_paced_load_never_runs_ahead_of_its_rate_and_bounds_what_is_in_flight() -> None:
    client = _SlowClient(seconds=0.2)
    load = _Load(client, "k", keys=10, concurrency=2, rate=200.0)
    started = time.monotonic()
    load.start()
    await asyncio.sleep(0.5)
    await load.stop()
    elapsed = time.monotonic() - started
    assert client.started <= 200.0 * elapsed + 1, "never ahead of the schedule"
    assert client.most_in_flight == 8, "at most concurrency x 4 in flight"
    assert load.late > 0, "a call that waited for a free slot is counted as late"
    assert load.calls == client.started and load.errors == 0, "every started call finished before stop returned"
