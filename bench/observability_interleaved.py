"""What metrics and tracing cost, switched on and off inside one running W2 (interleaved blocks).

`bench.observability_cost` compares separate runs, each with its own worker process; on this
VM two runs of the same arm differ by more than the cost being measured (one arm's CPU per call
drifted 545 -> 397 us between rounds with no other process running). Here one worker and one
load generator run W2's load (64 calls in flight over 1,000 keys, the ``add`` handler) without
pause, and every few seconds both switch mode (`bench.observability_switch`): metrics, tracing
and its sampling, inside the same processes, on the same broker connections and sessions. The
blocks alternate ``off``, an arm, ``off``, the next arm, ... (the arms rotated each cycle), and
an arm's block is compared with the mean of the ``off`` blocks just before and just after it,
so a drift slower than a block cancels out. The cost of an arm is the median over its blocks.

Each block first settles (the switch, in-flight calls of the previous mode finishing, the
client's spans flushed), then measures CPU time (worker, load generator, broker) and calls for
its length. The arms and their meaning are `bench.observability_cost.ARMS`'s; ``off`` here is
stricter than there: no tracer provider in the load generator either.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import tether_apps as apps
from bench._harness import ProcessSampler, console, other_share, progress_bar, record, tracing
from bench._tether_harness import METRICS_PORT_ENV, environment
from bench.observability_cost import ARMS, METRICS_PORT, QUIET, TARGET_PCT, tether_cpu
from bench.observability_switch import SWITCH_ENV, Arm, apply, ask_counts, ask_worker
from bench.peer_restate.driver import WORKLOADS, check_counters
from bench.tether_workloads import CALL_TIMEOUT, _finals, _usage, lifespan, system, warm_up

BLOCK_S = 4.0
"""Measured seconds per block."""
SETTLE_S = 1.0
"""Seconds after a switch before a block is measured."""


def schedule(cycles: int) -> list[str]:
    """Arm names, block by block: ``off`` first, last and between any two arms; arms rotated per cycle."""
    names = [a.name for a in ARMS if a.name != "off"]
    blocks = ["off"]
    for c in range(cycles):
        for name in names[c % len(names) :] + names[: c % len(names)]:
            blocks += [name, "off"]
    return blocks


def _per_call(block: dict[str, Any]) -> float:
    return float(block["cpu_ms_per_call"])


def interleaved_costs(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm but ``off``: the median over its blocks of its cost against the neighbouring ``off`` blocks.

    A block counts when it and both its neighbours saw at most `QUIET` other load.
    """
    out: dict[str, Any] = {"blocks": len(blocks)}
    per_arm: dict[str, dict[str, list[float]]] = {}
    for i in range(1, len(blocks) - 1):
        before, block, after = blocks[i - 1], blocks[i], blocks[i + 1]
        if block["arm"] == "off" or before["arm"] != "off" or after["arm"] != "off":
            continue
        if max(other_share(b) for b in (before, block, after)) > QUIET:
            continue
        into = per_arm.setdefault(block["arm"], {"cpu": [], "own": [], "throughput": [], "per_txn": []})
        into["cpu"].append(_pct(_per_call(block), (_per_call(before) + _per_call(after)) / 2))
        into["own"].append(_pct(tether_cpu(block), (tether_cpu(before) + tether_cpu(after)) / 2))
        base_rate = (before["calls_per_s"] + after["calls_per_s"]) / 2
        into["throughput"].append(_pct(base_rate, block["calls_per_s"]))
        if all("calls_per_txn" in b for b in (before, block, after)):  # (blocks recorded before it was)
            into["per_txn"].append(_pct(block["calls_per_txn"], (before["calls_per_txn"] + after["calls_per_txn"]) / 2))
    for name, series in per_arm.items():
        out[f"blocks_used_{name}"] = len(series["cpu"])
        out[f"cpu_cost_pct_{name}"] = statistics.median(series["cpu"])
        out[f"tether_cpu_cost_pct_{name}"] = statistics.median(series["own"])
        out[f"throughput_cost_pct_{name}"] = statistics.median(series["throughput"])
        out[f"per_block_tether_cpu_cost_pct_{name}"] = [round(v, 2) for v in series["own"]]
        if series["per_txn"]:
            out[f"calls_per_txn_change_pct_{name}"] = statistics.median(series["per_txn"])
    off = [b["calls_per_txn"] for b in blocks if b["arm"] == "off" and "calls_per_txn" in b]
    if off:
        out["calls_per_txn_off"] = statistics.median(off)
    return out


def _pct(cost: float, base: float) -> float:
    return (cost / base - 1.0) * 100.0


class _Load:
    """W2's load, run until stopped, keys drawn from `keys` sessions.

    Closed loop (`rate` None): `concurrency` callers, each calling again as soon as its call
    returns, so the machine runs flat out. Paced (`rate` calls/s): calls start on a fixed
    schedule (at most `concurrency` x 4 in flight), so every mode does the same work per second.
    """

    TICK_S = 0.005

    def __init__(self, client: Any, prefix: str, keys: int, concurrency: int, rate: float | None = None) -> None:  # noqa: ANN401
        self.client = client
        self.keys = [f"{prefix}-{i}" for i in range(keys)]
        self.concurrency = concurrency
        self.rate = rate
        self.called: list[str] = []
        self.values: list[Any] = []
        self.errors = 0
        self.first_error: str | None = None
        self.late = 0
        """Paced calls that started late because `concurrency` x 4 were in flight."""
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._payload = apps.Add(n=1)

    @property
    def calls(self) -> int:
        return len(self.values)

    async def _one(self, key: str) -> None:
        try:
            value = (await self.client.call(apps.add, key, self._payload, timeout=CALL_TIMEOUT)).value
        except Exception as exc:  # noqa: BLE001 - counted; the check fails the run
            self.errors += 1
            self.first_error = self.first_error or repr(exc)
            return
        self.called.append(key)
        self.values.append(value)

    async def _caller(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self._stop.is_set():
            await self._one(self.keys[rng.randrange(len(self.keys))])

    async def _pacer(self, rate: float) -> None:
        rng = random.Random(0)
        slots = asyncio.Semaphore(self.concurrency * 4)
        calls: set[asyncio.Task[None]] = set()
        started, t0 = 0, time.monotonic()
        while not self._stop.is_set():
            await asyncio.sleep(self.TICK_S)
            due = int((time.monotonic() - t0) * rate) - started
            for _ in range(due):
                if slots.locked():
                    self.late += 1
                await slots.acquire()
                task = asyncio.ensure_future(self._one(self.keys[rng.randrange(len(self.keys))]))
                calls.add(task)
                task.add_done_callback(calls.discard)
                task.add_done_callback(lambda _: slots.release())
                started += 1
        await asyncio.gather(*calls)

    def start(self) -> None:
        if self.rate is None:
            self._tasks = [asyncio.ensure_future(self._caller(i)) for i in range(self.concurrency)]
        else:
            self._tasks = [asyncio.ensure_future(self._pacer(self.rate))]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def _switch(arm: Arm, worker_pid: int, switch_file: Path) -> None:
    """Both processes to `arm`'s mode (the load generator records no metrics in any mode)."""
    await ask_worker(worker_pid, switch_file, arm)
    apply(replace(arm, metrics=False))


async def _block(sut: Any, load: _Load, arm: Arm, block_s: float, switch_file: Path) -> dict[str, Any]:  # noqa: ANN401
    sampler = ProcessSampler(sut.pids, no_children={"load_generator"}, interval_s=0.5)
    spans_before = tracing.spans_exported()
    invocations_before, transactions_before = await ask_counts(sut.pids["worker"], switch_file)
    calls_before, started = load.calls, time.monotonic()
    with sampler:
        await asyncio.sleep(block_s)
    calls, seconds = load.calls - calls_before, time.monotonic() - started
    invocations, transactions = await ask_counts(sut.pids["worker"], switch_file)
    figures: dict[str, Any] = {"arm": arm.name, "calls": calls, "seconds": seconds, "calls_per_s": calls / seconds}
    figures["transactions"] = transactions - transactions_before
    figures["calls_per_txn"] = (invocations - invocations_before) / max(1, figures["transactions"])
    _usage(figures, sampler, max(calls, 1))
    figures["client_spans"] = tracing.spans_exported() - spans_before
    return figures


async def interleaved_cost(  # noqa: ANN401
    opts: Any, cycles: int, block_s: float = BLOCK_S, rate: float | None = None
) -> dict[str, Any]:
    """`cycles` cycles of every arm in one W2 run; the entry for the results file."""
    arms = {a.name: a for a in ARMS}
    plan = schedule(cycles)
    workload = WORKLOADS["W2"]
    out = console()
    blocks: list[dict[str, Any]] = []
    tracing.install()
    with tempfile.TemporaryDirectory(prefix="tether-bench-switch-") as tmp:
        switch_file = Path(tmp) / "mode"
        # What the worker starts with: a metrics port, the bench's tracer provider, the switch.
        with environment({METRICS_PORT_ENV: METRICS_PORT, tracing.TRACING_ENV: "1", SWITCH_ENV: str(switch_file)}):
            async with lifespan(opts), system("W2", "kafka") as sut:
                worker_pid = sut.pids["worker"]
                load = _Load(sut.client, f"W2i-{os.getpid()}", workload.keys, workload.concurrency, rate)
                await warm_up(sut, workload, "W2")  # the worker serves (so it listens) once these return
                await _switch(arms["off"], worker_pid, switch_file)
                load.start()
                with progress_bar("observability interleaved (W2, blocks)", len(plan)) as advance:
                    await asyncio.sleep(SETTLE_S * 5)  # the load's first calls: its sessions restored
                    for name in plan:
                        await _switch(arms[name], worker_pid, switch_file)
                        await asyncio.sleep(SETTLE_S)
                        tracing.spans_exported()  # the previous mode's spans flushed outside the block
                        blocks.append(await _block(sut, load, arms[name], block_s, switch_file))
                        advance(1)
                await load.stop()
                finals = await _finals(sut.client, load.called)
    check = check_counters(load.called, load.values, finals)
    median = interleaved_costs(blocks)
    for arm in ARMS[1:]:
        if f"cpu_cost_pct_{arm.name}" not in median:
            continue
        out.print(
            f"{arm.name}: worker and load generator {median[f'tether_cpu_cost_pct_{arm.name}']:+.1f} % CPU per call, "
            f"all processes {median[f'cpu_cost_pct_{arm.name}']:+.1f} %, throughput "
            f"{median[f'throughput_cost_pct_{arm.name}']:+.1f} %, calls per transaction "
            f"{median.get(f'calls_per_txn_change_pct_{arm.name}', float('nan')):+.1f} % (median of "
            f"{median[f'blocks_used_{arm.name}']} blocks; target < {TARGET_PCT:.0f} %)"
        )
    spans = {name: [b["client_spans"] for b in blocks if b["arm"] == name] for name in arms}
    # A call in flight at a switch may end its span in the next block: at most one per caller.
    quiet_when_off = all(n <= workload.concurrency for n in spans["off"] + spans["metrics"])
    traced_when_on = all(n > 0 for n in spans["traced"] + spans["sampled"] + spans["sampled_lean"])
    return {
        "system": "tether",
        "params": {
            "workload": "W2",
            "rate": rate,
            "cycles": cycles,
            "block_s": block_s,
            "settle_s": SETTLE_S,
            "concurrency": workload.concurrency,
            "keys": workload.keys,
            "arms": [a.name for a in ARMS],
        },
        "median": median,
        "blocks": blocks,
        "calls": load.calls,
        "errors": load.errors,
        "late_calls": load.late,
        "first_error": load.first_error,
        "check": check,
        "correct": check["ok"] and load.errors == 0 and quiet_when_off and traced_when_on,
    }


async def run_and_record(  # noqa: ANN401
    opts: Any, cycles: int, block_s: float = BLOCK_S, rate: float | None = None
) -> None:
    """Measure and merge the entry into the results file as ``W2-observability-interleaved``
    (closed loop) or ``W2-observability-paced`` (`rate` calls/s)."""
    entry = await interleaved_cost(opts, cycles, block_s, rate)
    name = "W2-observability-interleaved" if rate is None else "W2-observability-paced"
    record("tether", {name: entry}, path=opts.results_path)


__all__ = ["BLOCK_S", "interleaved_cost", "interleaved_costs", "run_and_record", "schedule"]
