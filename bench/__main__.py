"""``python -m bench all|tether|peer|raw|report [--quick] [--runs N] [--only W1,W2]``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from bench._harness import LATEST_JSON, QUICK_JSON, RESULTS_ENV, console, record
from bench.registry import Workload

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
    from bench.registry import load
    from bench.tether_workloads import lifespan

    workloads = load()
    unknown = [name for name in only or () if name not in workloads]
    if unknown:
        console().print(f"[yellow]unknown Tether workloads {unknown}; known: {list(workloads)}[/yellow]")
    # W8 and W9 are long and set up their own environment: `all` runs them only when named.
    selected = [w for w in workloads.values() if (w.name in only if only else w.shared_broker)]
    shared = [w for w in selected if w.shared_broker]
    done = 0
    async with lifespan(opts) if shared else contextlib.nullcontext():
        for workload in shared:
            done += await _run_one(workload, opts)
    for workload in selected:
        if not workload.shared_broker:
            done += await _run_one(workload, opts)
    if not done:
        console().print("[yellow]no Tether workload ran[/yellow]")


async def _run_one(workload: Workload, opts: RunOptions) -> int:
    console().print(f"[bold]{workload.name}[/bold]: {workload.description}")
    result = await workload.run(opts)
    if result is None:
        return 0
    record("tether", {workload.name: result}, path=opts.results_path)  # as we go: a crash loses nothing run
    return 1


async def _eos(opts: RunOptions, variants: list[str] | None, max_records: int) -> None:
    from bench.raw_eos import VARIANTS, run_eos, table

    results = await run_eos(
        runs=opts.runs, scale=opts.scale, variants=tuple(variants or VARIANTS), max_records=max_records
    )
    entries = {f"pipeline-{v}": e for v, e in results["pipeline"].items()}
    entries.update({f"request_reply-{v}": e for v, e in results["request_reply"].items()})
    if results["request_reply"]:  # W2's ceiling: the fastest client and scheme of this run
        entries["request_reply-best"] = max(
            results["request_reply"].values(), key=lambda e: e["median"].get("calls_per_s") or 0
        )
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
    override = os.environ.get(RESULTS_ENV)
    return RunOptions(
        runs=runs if runs is not None else (1 if quick else 3),
        scale=scale if scale is not None else (QUICK_SCALE if quick else 1.0),
        quick=quick,
        results_path=Path(override) if override else (QUICK_JSON if quick else LATEST_JSON),
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
    """Raw Kafka ceilings, the Restate peer, Tether's workloads, then the report."""
    from bench.raw_eos import DEFAULT_MAX_RECORDS

    opts = _options(quick, runs, scale)
    sel = _only(only)

    async def go() -> None:
        await _raw(opts)
        await _eos(opts, None, DEFAULT_MAX_RECORDS)  # W2's ceiling: raw request/reply per client
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
@common
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True, help="Rounds of every arm.")
@click.option("--interleaved", is_flag=True, help="Switch the arms inside one running W2 instead.")
@click.option("--cycles", type=click.IntRange(min=1), default=10, show_default=True, help="Interleaved: arm cycles.")
@click.option("--block", type=click.FloatRange(min=0.5), default=4.0, show_default=True, help="Interleaved: block s.")
@click.option("--rate", type=click.FloatRange(min=1), help="Interleaved: calls/s (default: a closed loop of 64).")
def overhead(
    quick: bool,
    runs: int | None,
    scale: float | None,
    rounds: int,
    interleaved: bool,
    cycles: int,
    block: float,
    rate: float | None,
) -> None:
    """What metrics and tracing cost: W2 off, with metrics, traced, sampled (W2-observability).

    --interleaved: W2-observability-interleaved, or with --rate W2-observability-paced.
    """
    opts = _options(quick, runs, scale)
    if interleaved:
        from bench import observability_interleaved

        _run(observability_interleaved.run_and_record(opts, cycles, block, rate))
    else:
        from bench import observability_cost

        _run(observability_cost.run_and_record(opts, rounds))
    _report(opts)


@cli.command("profile")
@click.option("--scheme", type=click.Choice(["per_partition", "per_worker"]), default="per_worker", show_default=True)
@click.option("--seconds", type=click.FloatRange(min=1), default=20.0, show_default=True, help="How long to sample.")
@click.option(
    "--delay", type=click.FloatRange(min=0), default=75.0, show_default=True, help="Wait after the worker starts."
)
@click.option("--scale", type=click.FloatRange(min=0.01), default=1.0, show_default=True, help="The workload's size.")
@click.option("--workload", type=click.Choice(["W2", "W4"]), default="W2", show_default=True)
def profile_cmd(scheme: str, seconds: float, delay: float, scale: float, workload: str) -> None:
    """Sample a W2 (or W4) worker with py-spy: where its CPU goes, by package (bench/results/profile-*.txt)."""
    from bench.profile_worker import profile, render

    path = profile(scheme, seconds, scale, delay, workload)
    for line in render(path, seconds):
        click.echo(line)


@cli.command()
@click.option("--quick", is_flag=True, help="Report on results/quick.json instead.")
def report(quick: bool) -> None:
    """Write results/latest.md and the PNG charts from results/latest.json."""
    _report(_options(quick, None, None))


@cli.command("list")
def list_cmd() -> None:
    """List the workloads."""
    from bench.peer_restate import WORKLOADS
    from bench.registry import load

    for workload in load().values():
        peer_mark = " (also on Restate)" if workload.name in WORKLOADS else ""
        alone = "" if workload.shared_broker else " (run when named: --only)"
        click.echo(f"{workload.name:12} {workload.description}{peer_mark}{alone}")
    click.echo("raw          raw aiokafka EOS pipeline, 100,000 messages over 10,000 sessions")
    click.echo("profile      py-spy samples of a W2 worker, self time by package")
    click.echo("overhead     W2 off, with metrics, traced and 10 % sampled, in rounds (W2-observability)")
    click.echo("             --interleaved: switched block by block in one run (W2-observability-interleaved)")
    click.echo("eos          raw EOS pipeline and W2 request/reply per Kafka client and transaction scheme")


if __name__ == "__main__":
    cli(prog_name="python -m bench")
