"""What metrics and tracing cost: W2 with observability off and on, in alternating pairs.

Issue 14's target: under 5 % of W2's throughput and CPU per call. Both arms run W2 exactly as
``python -m bench tether --only W2`` does (a fresh namespace and ``tether serve`` subprocess per
run, the broker shared and warmed up once), one run each, in pairs ordered off/on then on/off so
that a drift of the machine (the broker's JIT, another job) does not favour either arm. The
reported cost is the median over pairs of each pair's ratio, so a noisy pair moves it little.

- **off**: no metrics port, no tracer provider in the worker; the load generator's sampler
  drops every span (its tracer provider can be set once per process; a dropped span costs a
  sampler call, ~1 us, so "off" is a hair above no tracing at all: the cost is, if anything,
  understated by that much).
- **on**: the worker records every metric and serves ``/metrics`` (nothing scrapes it) and
  records every span with the OpenTelemetry SDK's batch span processor, as does the load
  generator; the exporter counts spans and drops them (an exporter's network cost is the
  deployment's choice, not Tether's). The worker prints how many spans it exported.
"""

from __future__ import annotations

import contextlib
import os
import statistics
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from bench._harness import console, record, tracing
from bench._tether_harness import METRICS_PORT_ENV

ARMS = ("off", "on")
TARGET_PCT = 5.0
METRICS_PORT = "19464"


@contextlib.contextmanager
def _arm(arm: str) -> Iterator[None]:
    """The environment the workers of one arm start with, and the load generator's sampler."""
    saved = {k: os.environ.get(k) for k in (METRICS_PORT_ENV, tracing.TRACING_ENV)}
    if arm == "on":
        os.environ[METRICS_PORT_ENV] = METRICS_PORT
        os.environ[tracing.TRACING_ENV] = "1"
    else:
        os.environ.pop(METRICS_PORT_ENV, None)
        os.environ.pop(tracing.TRACING_ENV, None)
    tracing.set_recording(arm == "on")
    try:
        yield
    finally:
        tracing.set_recording(False)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _pct(on: float, off: float) -> float:
    return (on / off - 1.0) * 100.0


async def observability_cost(opts: Any, pairs: int) -> dict[str, Any]:
    """`pairs` off/on pairs of W2 on one warmed-up broker; the entry for the results file."""
    from bench.tether_workloads import lifespan, request_reply

    tracing.install()
    tracing.set_recording(False)
    single = replace(opts, runs=1)
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    out = console()
    async with lifespan(opts):
        for i in range(pairs):
            for arm in ARMS if i % 2 == 0 else tuple(reversed(ARMS)):
                with _arm(arm):
                    before = tracing.spans_exported()
                    entry = await request_reply(single, "W2")
                    figures = dict(entry["median"], correct=entry["correct"])
                    figures["client_spans"] = tracing.spans_exported() - before
                runs[arm].append(figures)
                out.print(
                    f"observability {arm:3} pair {i + 1}/{pairs}: {figures['calls_per_s']:.0f} calls/s, "
                    f"cpu {figures['cpu_ms_per_call']:.3f} ms/call, {figures['client_spans']} client spans"
                )
    throughput = [_pct(off["calls_per_s"], on["calls_per_s"]) for off, on in zip(runs["off"], runs["on"], strict=True)]
    cpu = [_pct(on["cpu_ms_per_call"], off["cpu_ms_per_call"]) for off, on in zip(runs["off"], runs["on"], strict=True)]
    median = {
        "throughput_cost_pct": statistics.median(throughput),
        "cpu_cost_pct": statistics.median(cpu),
        "per_pair_throughput_cost_pct": throughput,
        "per_pair_cpu_cost_pct": cpu,
        "calls_per_s_off": statistics.median(r["calls_per_s"] for r in runs["off"]),
        "calls_per_s_on": statistics.median(r["calls_per_s"] for r in runs["on"]),
        "cpu_ms_per_call_off": statistics.median(r["cpu_ms_per_call"] for r in runs["off"]),
        "cpu_ms_per_call_on": statistics.median(r["cpu_ms_per_call"] for r in runs["on"]),
    }
    traced = all(r["client_spans"] > 0 for r in runs["on"]) and not any(r["client_spans"] for r in runs["off"])
    out.print(
        f"observability cost (median of {pairs} pairs): throughput {median['throughput_cost_pct']:+.1f} %, "
        f"cpu per call {median['cpu_cost_pct']:+.1f} % (target < {TARGET_PCT:.0f} %)"
    )
    return {
        "system": "tether",
        "params": {"workload": "W2", "pairs": pairs, "scale": opts.scale, "arms": list(ARMS)},
        "median": median,
        "runs": [dict(r, arm=arm, pair=i + 1) for arm in ARMS for i, r in enumerate(runs[arm])],
        "correct": traced and all(r["correct"] for arm in ARMS for r in runs[arm]),
    }


async def run_and_record(opts: Any, pairs: int) -> None:
    """Measure and merge the entry into the results file as ``W2-observability``."""
    entry = await observability_cost(opts, pairs)
    record("tether", {"W2-observability": entry}, path=opts.results_path)


__all__ = ["observability_cost", "run_and_record"]
