"""``python -m bench all|tether|peer|raw|report [--quick] [--runs N] [--only W1,W2]``."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from bench._harness import LATEST_JSON, QUICK_JSON, console, record

QUICK_SCALE = 0.1


@dataclass(frozen=True)
class RunOptions:
    """What every workload is told about the run it is part of."""

    runs: int
    """Measured runs per workload (the median is reported)."""
    scale: float
    """Multiplier on call/message counts (1.0 = the sizes in bench/README.md)."""
    quick: bool
    """A smoke run: small sizes, results kept apart in results/quick.json."""
    results_path: Path
    """The JSON file results are merged into."""


Workload = Callable[[RunOptions], Awaitable[dict[str, Any] | None]]
"""Runs one workload; returns its entry for the results file, or None if it was skipped."""


# --------------------------------------------------------------------------------------------
# Tether workloads: each looks up bench.tether_workloads lazily, so the bench works (and skips
# them) before Tether's runtime exists.
#
# Contract for bench/tether_workloads.py: a module-level
#     WORKLOADS: dict[str, Callable[[RunOptions], Awaitable[dict]]]
# whose callables return {"params": {...}, "median": {...}, "runs": [...], "correct": bool}
# (see bench/report.py for the figures the report reads; a recovery workload adds
# "recovery_points": [{"events": n, "seconds": s}, ...]).
# --------------------------------------------------------------------------------------------

TETHER_MODULE = "bench.tether_workloads"

TETHER_DESCRIPTIONS: dict[str, str] = {
    "W1": "2,000 sequential calls on one key",
    "W2": "20,000 calls, 64 in flight, keys seeded from 1,000",
    "W3": "5,000 calls, 64 in flight, one key",
    "W2-step": "W2 with one journaled ctx.run step per call",
    "W2-3step": "W2 with three journaled ctx.run steps per call",
    "W4": "100,000 one-way sends to 10,000 sessions, 1 worker process, first send to last commit",
    "W4-2workers": "W4 with 2 worker processes (one consumer group)",
    "W4-ray": "W4 with 2 workers as Ray actors (tether serve --ray --workers 2)",
    "W5": "restore a partition of 100,000 and 1,000,000 events (10,000 sessions), with and without snapshots",
    "W6": "1,000 three-step sagas, 5% failing at the third step (compensated)",
    "W7": "replay 10,000 dead letters from the DLQ (dlq.DeadLetters.replay)",
    "W1-embedded": "W1 on the embedded (SQLite) backend, worker in-process",
    "W2-embedded": "W2 on the embedded backend",
    "W4-embedded": "W4 on the embedded backend",
}


def _tether(name: str) -> Workload:
    async def run(opts: RunOptions) -> dict[str, Any] | None:
        try:
            module = importlib.import_module(TETHER_MODULE)
        except ModuleNotFoundError as exc:
            if exc.name != TETHER_MODULE:
                raise  # the module exists but something it imports does not: a real error
            console().print(f"[yellow]skip tether {name}: {TETHER_MODULE} does not exist yet[/yellow]")
            return None
        workloads = getattr(module, "WORKLOADS", {})
        fn = workloads.get(name)
        if fn is None:
            console().print(f"[yellow]skip tether {name}: not in {TETHER_MODULE}.WORKLOADS[/yellow]")
            return None
        result: dict[str, Any] = await fn(opts)
        return result

    run.__name__ = f"tether_{name}"
    run.__doc__ = TETHER_DESCRIPTIONS.get(name)
    return run


TETHER_WORKLOADS: dict[str, Workload] = {name: _tether(name) for name in TETHER_DESCRIPTIONS}
"""Tether's workloads by name; add entries here (and in bench.tether_workloads)."""


# --------------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------------


async def _peer(opts: RunOptions, only: list[str] | None) -> None:
    from bench.peer_restate import WORKLOADS, run_restate

    names = [w for w in WORKLOADS if not only or w in only]
    if not names:
        console().print("[yellow]no Restate workload selected[/yellow]")
        return
    results = await run_restate(names, runs=opts.runs, scale=opts.scale)
    meta = results.pop("_peer")
    record("restate", {**results, "_meta": meta}, path=opts.results_path)


async def _raw(opts: RunOptions, max_records: int | None = None) -> None:
    from bench.raw_kafka import run_raw

    results = await run_raw(runs=opts.runs, scale=opts.scale, max_records=max_records)
    meta = results.pop("_broker")
    # A capped run is another workload: keep it beside the default one, not over it.
    name = "pipeline" if max_records is None else f"pipeline-max{max_records}"
    record("raw_kafka", {name: results["pipeline"], "_meta": meta}, path=opts.results_path)


async def _tether_all(opts: RunOptions, only: list[str] | None) -> None:
    done: dict[str, dict[str, Any]] = {}
    selected = [name for name in TETHER_WORKLOADS if not only or name in only]
    unknown = [name for name in only or () if name not in TETHER_WORKLOADS]
    if unknown:
        console().print(f"[yellow]unknown Tether workloads {unknown}; known: {list(TETHER_WORKLOADS)}[/yellow]")
    # The module may offer ``lifespan(opts)``: set-up shared by its workloads (one broker).
    try:
        module = importlib.import_module(TETHER_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != TETHER_MODULE:
            raise
        module = None
    lifespan = getattr(module, "lifespan", None)
    async with lifespan(opts) if lifespan is not None and selected else contextlib.nullcontext():
        for name in selected:
            result = await TETHER_WORKLOADS[name](opts)
            if result is not None:
                done[name] = result
                # Record as we go: a crash in W5 must not lose W1..W4.
                record("tether", {name: result}, path=opts.results_path)
    if not done:
        console().print("[yellow]no Tether workload ran[/yellow]")


async def _eos(opts: RunOptions, variants: list[str] | None, max_records: int) -> None:
    from bench.raw_eos import VARIANTS, run_eos, table

    results = await run_eos(
        runs=opts.runs, scale=opts.scale, variants=tuple(variants or VARIANTS), max_records=max_records
    )
    entries = {f"pipeline-{v}": e for v, e in results["pipeline"].items()}
    entries.update({f"request_reply-{v}": e for v, e in results["request_reply"].items()})
    record("raw_eos", {**entries, "_meta": results["_broker"]}, path=opts.results_path)
    for row in table(results):
        console().print(row, markup=False)


def _report(opts: RunOptions) -> None:
    from bench.report import generate

    md = generate(opts.results_path)
    console().print(f"report: {md}")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _options(quick: bool, runs: int | None, scale: float | None) -> RunOptions:
    return RunOptions(
        runs=runs if runs is not None else (1 if quick else 3),
        scale=scale if scale is not None else (QUICK_SCALE if quick else 1.0),
        quick=quick,
        results_path=QUICK_JSON if quick else LATEST_JSON,
    )


def _only(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


_common = [
    click.option("--quick", is_flag=True, help="Small sizes (x0.1), 1 run, into results/quick.*"),
    click.option(
        "--runs",
        type=click.IntRange(min=1),
        default=None,
        help="Measured runs per workload (default 3, or 1 with --quick).",
    ),
    click.option(
        "--scale",
        type=click.FloatRange(min=0.001),
        default=None,
        help="Multiply call/message counts (default 1.0, or 0.1 with --quick).",
    ),
]


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_common):
        fn = option(fn)
    return fn


def _run(coro: Awaitable[Any]) -> None:
    started = time.monotonic()
    try:
        asyncio.run(coro)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        console().print("[red]interrupted[/red]")
        sys.exit(130)
    console().print(f"[dim]took {time.monotonic() - started:.0f} s[/dim]")


@click.group()
def cli() -> None:
    """Tether's benchmarks and their baselines (see bench/README.md)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@cli.command("all")
@common
@click.option("--only", default=None, help="Comma-separated workload names (W1,W2,...).")
def all_cmd(quick: bool, runs: int | None, scale: float | None, only: str | None) -> None:
    """Raw Kafka ceiling, the Restate peer, Tether's workloads, then the report."""
    opts = _options(quick, runs, scale)
    sel = _only(only)

    async def go() -> None:
        await _raw(opts)
        await _peer(opts, sel)
        await _tether_all(opts, sel)

    _run(go())
    _report(opts)


@cli.command()
@common
@click.option("--only", default=None, help="Comma-separated workload names (W1,W2,...).")
def tether(quick: bool, runs: int | None, scale: float | None, only: str | None) -> None:
    """Tether's workloads only."""
    opts = _options(quick, runs, scale)
    _run(_tether_all(opts, _only(only)))


@cli.command()
@common
@click.option("--only", default=None, help="Comma-separated Restate workloads (W1,W2,W3,W2-step).")
def peer(quick: bool, runs: int | None, scale: float | None, only: str | None) -> None:
    """The Restate peer (installed into bench/.peer/ on first use)."""
    opts = _options(quick, runs, scale)
    _run(_peer(opts, _only(only)))


@cli.command()
@common
@click.option(
    "--max-records",
    type=click.IntRange(min=1),
    default=None,
    help="Cap records per fetch (= per transaction); recorded as pipeline-max<N>.",
)
def raw(quick: bool, runs: int | None, scale: float | None, max_records: int | None) -> None:
    """The raw aiokafka exactly-once pipeline (the ceiling)."""
    opts = _options(quick, runs, scale)
    _run(_raw(opts, max_records))


@cli.command()
@common
@click.option("--only", default=None, help="Comma-separated variants (aiokafka-partition,aiokafka-worker,...).")
@click.option(
    "--max-records",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Cap on records per fetch, so per transaction, in the pipeline.",
)
def eos(quick: bool, runs: int | None, scale: float | None, only: str | None, max_records: int) -> None:
    """Exactly-once ceilings by client and transaction scheme: pipeline and W2 request/reply."""
    opts = _options(quick, runs, scale)
    _run(_eos(opts, _only(only), max_records))


@cli.command()
@click.option("--quick", is_flag=True, help="Report on results/quick.json instead.")
def report(quick: bool) -> None:
    """Write results/latest.md and the PNG charts from results/latest.json."""
    _report(_options(quick, None, None))


@cli.command("list")
def list_cmd() -> None:
    """List the workloads."""
    from bench.peer_restate import WORKLOADS

    for name, desc in TETHER_DESCRIPTIONS.items():
        peer_mark = " (also on Restate)" if name in WORKLOADS else ""
        click.echo(f"{name:12} {desc}{peer_mark}")
    click.echo("raw          raw aiokafka EOS pipeline, 100,000 messages over 10,000 sessions")
    click.echo("eos          raw EOS pipeline and W2 request/reply per Kafka client and transaction scheme")


if __name__ == "__main__":
    cli(prog_name="python -m bench")
