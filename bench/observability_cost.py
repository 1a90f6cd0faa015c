"""What metrics and tracing cost: W2 with observability off and on, in rounds of every arm.

Issue 14's target: under 5 % of W2's throughput and CPU per call. Every arm runs W2 exactly as
``python -m bench tether --only W2`` does (a fresh namespace and ``tether serve`` subprocess per
run, the broker shared and warmed up once), once per round; each round runs the arms in another
order (rotated), so a drift of the machine (the broker's JIT, another job) favours none. An
arm's cost is the median over rounds of its ratio to the same round's ``off`` run, so one noisy
run moves it little. W2's handler does nothing, so what observability adds per call is as large
a share as it can be: a handler that calls a model or a tool pays the same microseconds out of
milliseconds or seconds.

- ``off``: no metrics port, no tracer provider in the worker; the load generator's sampler
  drops every span (its provider can be set once per process; a dropped span costs a sampler
  call, so ``off`` is a hair above no tracing at all and the costs are, if anything,
  understated by that much).
- ``metrics``: the worker records every metric and serves ``/metrics`` (nothing scrapes it).
- ``traced``: metrics, and every call traced: the load generator and the worker record every
  span with the OpenTelemetry SDK's batch span processor; the exporter counts spans and drops
  them (an exporter's network cost is the deployment's choice, not Tether's).
- ``sampled``: metrics, and 10 % of calls traced (``ParentBased(TraceIdRatioBased(0.1))`` in the
  load generator, the worker following its parent), as high-volume services usually run.
- ``sampled_lean``: ``sampled`` with ``TETHER_RUNTIME__TRACE_UNSAMPLED=false`` in the workers (an
  invocation under an unsampled parent starts no span).

The costs are small against W2's spread on a shared 2-core machine, and the CPU time a process
charges for the same work grows when another job runs beside it (caches, the hypervisor). So a
run starts only once the machine is quiet (other load under ``QUIET`` for a second, waiting up to
a minute), a run that still saw more other load than ``QUIET`` is run again once, and the
medians are taken over the quiet rounds (every run at most ``QUIET`` other load) when there are
at least three. Besides the CPU of every process (the broker's included) each cost is also given
for Tether's own processes alone (worker and load generator), where all observability code runs:
the broker's CPU follows the transactions and carries none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import psutil

from bench._harness import console, other_share, record, tracing
from bench._tether_harness import METRICS_PORT_ENV, environment
from bench.observability_switch import Arm

TARGET_PCT = 5.0
METRICS_PORT = "19464"
QUIET = 0.05
"""Most share of the machine's CPU that other processes may use during a run that counts."""
MIN_QUIET_ROUNDS = 3


TRACE_UNSAMPLED_ENV = "TETHER_RUNTIME__TRACE_UNSAMPLED"
ARMS = (
    Arm("off", metrics=False, sampling=0.0),
    Arm("metrics", metrics=True, sampling=0.0),
    Arm("traced", metrics=True, sampling=1.0),
    Arm("sampled", metrics=True, sampling=0.1),
    Arm("sampled_lean", metrics=True, sampling=0.1, trace_unsampled=False),
)


@contextlib.contextmanager
def _arm(arm: Arm) -> Iterator[None]:
    """The environment the workers of one arm start with, and the load generator's sampling."""
    traced = arm.sampling > 0
    values = {
        METRICS_PORT_ENV: METRICS_PORT if arm.metrics else None,
        tracing.TRACING_ENV: "1" if traced else None,
        TRACE_UNSAMPLED_ENV: ("true" if arm.trace_unsampled else "false") if traced else None,
    }
    tracing.set_sampling(arm.sampling)
    try:
        with environment(values):
            yield
    finally:
        tracing.set_sampling(0.0)


def _pct(cost: float, base: float) -> float:
    return (cost / base - 1.0) * 100.0


def tether_cpu(run: dict[str, Any]) -> float:
    """CPU ms per call of the worker and the load generator (the broker left out)."""
    procs = run.get("processes") or {}
    return float(sum(p.get("cpu_ms_per_call", 0.0) for name, p in procs.items() if name != "broker"))


def costs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per arm but ``off``: the median over rounds of its CPU and throughput cost in %.

    Over the quiet rounds (every run at most `QUIET` other load) when there are at least
    `MIN_QUIET_ROUNDS` of them, else over every round.
    """
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for run in runs:
        by_round.setdefault(run["round"], {})[run["arm"]] = run
    quiet = [arms for arms in by_round.values() if all(other_share(r) <= QUIET for r in arms.values())]
    used = quiet if len(quiet) >= MIN_QUIET_ROUNDS else list(by_round.values())
    out: dict[str, Any] = {"rounds": len(by_round), "quiet_rounds": len(quiet), "rounds_used": len(used)}
    for arm in ARMS[1:]:
        cpu, own, throughput = [], [], []
        for arms in used:
            if "off" in arms and arm.name in arms:
                off, on = arms["off"], arms[arm.name]
                cpu.append(_pct(on["cpu_ms_per_call"], off["cpu_ms_per_call"]))
                if tether_cpu(off) > 0:
                    own.append(_pct(tether_cpu(on), tether_cpu(off)))
                throughput.append(_pct(off["calls_per_s"], on["calls_per_s"]))
        if cpu:
            out[f"cpu_cost_pct_{arm.name}"] = statistics.median(cpu)
            out[f"throughput_cost_pct_{arm.name}"] = statistics.median(throughput)
            out[f"per_round_cpu_cost_pct_{arm.name}"] = cpu
        if own:
            out[f"tether_cpu_cost_pct_{arm.name}"] = statistics.median(own)
            out[f"per_round_tether_cpu_cost_pct_{arm.name}"] = own
    return out


async def until_quiet(share: float = QUIET, most_s: float = 60.0) -> float:
    """Wait until other processes use at most `share` of the CPU for a second (or `most_s`)."""
    psutil.cpu_percent(None)
    deadline = time.monotonic() + most_s
    while True:
        await asyncio.sleep(1.0)
        busy = psutil.cpu_percent(None) / 100.0
        if busy <= share or time.monotonic() >= deadline:
            return float(busy)


async def observability_cost(opts: Any, rounds: int) -> dict[str, Any]:
    """`rounds` rounds of every arm on one warmed-up broker; the entry for the results file."""
    from bench.tether_workloads import lifespan, request_reply

    tracing.install()
    tracing.set_sampling(0.0)
    single = replace(opts, runs=1)
    runs: list[dict[str, Any]] = []
    out = console()
    async with lifespan(opts):
        for r in range(rounds):
            for arm in ARMS[r % len(ARMS) :] + ARMS[: r % len(ARMS)]:
                figures: dict[str, Any] = {}
                for attempt in (1, 2):  # a run that another job disturbed is run again, once
                    await until_quiet()
                    with _arm(arm):
                        before = tracing.spans_exported()
                        entry = await request_reply(single, "W2")
                        figures = dict(entry["median"], correct=entry["correct"], arm=arm.name, round=r + 1)
                        figures["client_spans"] = tracing.spans_exported() - before
                    figures["attempt"] = attempt
                    if other_share(figures) <= QUIET:
                        break
                    out.print(f"[yellow]  other load {other_share(figures):.0%} during that run[/yellow]")
                runs.append(figures)
                out.print(
                    f"observability {arm.name:8} round {r + 1}/{rounds}: {figures['calls_per_s']:.0f} calls/s, "
                    f"cpu {figures['cpu_ms_per_call']:.3f} ms/call (worker and load generator "
                    f"{tether_cpu(figures):.3f}), other load {other_share(figures):.0%}"
                )
    median = costs(runs)
    for arm in ARMS[1:]:
        out.print(
            f"{arm.name}: cpu per call {median[f'cpu_cost_pct_{arm.name}']:+.1f} %, "
            f"worker and load generator {median.get(f'tether_cpu_cost_pct_{arm.name}', float('nan')):+.1f} %, "
            f"throughput {median[f'throughput_cost_pct_{arm.name}']:+.1f} % (median of {median['rounds_used']} "
            f"rounds, {median['quiet_rounds']} of {rounds} quiet; target < {TARGET_PCT:.0f} %)"
        )
    spans = {arm.name: [r["client_spans"] for r in runs if r["arm"] == arm.name] for arm in ARMS}
    traced_right = all(n == 0 for n in spans["off"] + spans["metrics"]) and all(
        n > 0 for n in spans["traced"] + spans["sampled"] + spans["sampled_lean"]
    )
    return {
        "system": "tether",
        "params": {"workload": "W2", "rounds": rounds, "scale": opts.scale, "arms": [a.name for a in ARMS]},
        "median": median,
        "runs": runs,
        "correct": traced_right and all(r["correct"] for r in runs),
    }


async def run_and_record(opts: Any, rounds: int) -> None:
    """Measure and merge the entry into the results file as ``W2-observability``."""
    entry = await observability_cost(opts, rounds)
    record("tether", {"W2-observability": entry}, path=opts.results_path)


__all__ = ["ARMS", "QUIET", "costs", "observability_cost", "run_and_record", "tether_cpu", "until_quiet"]
