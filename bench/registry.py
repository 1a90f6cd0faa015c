"""Every Tether workload of the bench, by name: what it measures and how it runs.

One registry for `python -m bench tether|all` and the report. A workload is registered where it
is defined (`bench.tether_workloads` for W1-W7 and the embedded variants; W8 and W9 below, which
run in environments of their own and can also be run alone: ``python -m bench.sleepers``,
``python -m bench.dlq_scale``; W10 below, on the run's broker, alone: ``python -m
bench.rebalance_stall``). Baselines (raw Kafka, raw EOS, the Restate peer) are not
workloads of Tether and have commands of their own.
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WorkloadFn = Callable[[Any], Awaitable[dict[str, Any] | None]]
"""Runs one workload with the run's options; its entry for the results file, or None if skipped."""


@dataclass(frozen=True)
class Workload:
    """A registered workload."""

    name: str
    description: str
    """What it does, as bench/README.md's table says it."""
    run: WorkloadFn
    shared_broker: bool = True
    """Runs on the broker `bench.tether_workloads.lifespan` starts once for the whole run."""


WORKLOADS: dict[str, Workload] = {}
"""By name, in the order they run."""


def register(name: str, description: str, run: WorkloadFn, *, shared_broker: bool = True) -> None:
    """Add a workload (names are unique)."""
    if name in WORKLOADS:
        raise ValueError(f"workload {name!r} is registered twice")
    WORKLOADS[name] = Workload(name, description, run, shared_broker)


async def _w8(opts: Any) -> dict[str, Any]:
    from bench.sleepers import run

    return await run(max(100, int(10_000 * opts.scale)))


async def _w9(opts: Any) -> dict[str, Any]:
    from bench.dlq_scale import run

    count = max(1_000, int(200_000 * opts.scale))
    with tempfile.TemporaryDirectory(prefix="tether-dlq-scale-") as tmp:
        result = await run(count, None, Path(tmp), scan=count <= 200_000)
    return {"params": {"letters": count}, "median": result, "runs": [result], "correct": result.get("correct", True)}


async def _w10(opts: Any) -> dict[str, Any]:
    from bench.rebalance_stall import run

    return await run(quick=bool(opts.quick))


def load() -> dict[str, Workload]:
    """The registry with every workload module imported (they register on import)."""
    import bench.tether_workloads  # noqa: F401  (registers W1-W7 and the embedded variants)

    if "W8-sleepers" not in WORKLOADS:
        register("W8-sleepers", "worker memory of 10,000 sessions sleeping on durable timers", _w8, shared_broker=False)
        register(
            "W9-dlq-scale",
            "200,000 dead letters: dlq list --since 1h, stats and show vs a full scan (embedded)",
            _w9,
            shared_broker=False,
        )
        register(
            "W10-rebalance",
            "longest stall of a surviving worker's sessions while another is SIGKILLed, then while one joins; "
            "eager vs sticky rebalancing",
            _w10,
        )
    return WORKLOADS


__all__ = ["WORKLOADS", "Workload", "load", "register"]
