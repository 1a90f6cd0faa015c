"""W6 (sagas) and W7 (dead-letter replay): Tether's own workloads on top of the runtime.

Both watch the events topic with a read_committed tail (``tail_done``), so "done" means
committed, and take the end time from the committing records' timestamps.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

from bench import tether_apps as apps
from bench._harness import (
    LatencyRecorder,
    ProcessSampler,
    check_mark,
    console,
    drive,
    median_run,
    other_share,
    progress_bar,
    workload_result,
)
from bench._tether_harness import PARTITIONS, reader, tail_done
from bench.peer_restate.driver import SEED
from bench.tether_workloads import System, _send_all, _usage, _wait_processed, system
from eventstore import Record

SAGAS = 1_000
FAILURE_RATE = 0.05
START_CONCURRENCY = 64
DEAD_LETTERS = 10_000
DEAD_END_KEYS = 1_000

SETTLED = {"tether.saga.SagaCompleted": "completed", "tether.saga.SagaCompensated": "compensated"}
COMPENSATED_STEP = "tether.saga.CompensationSucceeded"


# --------------------------------------------------------------------------------------------
# W6: sagas
# --------------------------------------------------------------------------------------------


def _saga_api() -> str | None:
    """Why W6 cannot run, or None when the sagas package and the bench saga are there."""
    try:
        import sagas

        for name in ("Saga", "SagaClient"):
            if not hasattr(sagas, name):
                return f"sagas has no {name}"
    except ImportError as exc:
        return f"cannot import sagas ({exc})"
    if apps.trip_saga is None or apps.saga_coordinator is None:
        return "bench.tether_apps could not define its saga"
    return None


async def _run_sagas(sut: System, count: int, label: str | None, seed: int) -> dict[str, Any]:
    """Start `count` sagas (5% failing), follow them until each settled; figures and check."""
    from sagas import SagaClient

    rng = random.Random(seed)
    failing = set(rng.sample(range(count), max(1, round(count * FAILURE_RATE))))
    prefix = f"trip-{uuid.uuid4().hex[:8]}"
    ids = [f"{prefix}-{i}" for i in range(count)]
    keys = {f"{apps.saga_coordinator.name}/{saga_id}".encode(): i for i, saga_id in enumerate(ids)}
    starts: dict[int, float] = {}
    outcome: dict[int, str] = {}
    compensations: dict[int, int] = {}
    settled_ms: dict[int, int] = {}
    sagas = SagaClient(sut.client)

    async def start(i: int) -> Any:
        starts[i] = time.time()
        return await sagas.start(apps.trip_saga, ids[i], apps.TripInput(trip=i, fail=i in failing))

    def on_entry(record: Record, entry: dict[str, Any]) -> None:
        i = keys.get(record.key or b"")
        if i is None:
            return
        for envelope in entry.get("ev", ()):
            kind = envelope.get("t")
            if kind == COMPENSATED_STEP:
                compensations[i] = compensations.get(i, 0) + 1
            elif kind in SETTLED:
                outcome[i] = SETTLED[kind]
                settled_ms[i] = record.timestamp_ms
                advance(1)

    t0 = time.time()
    started = await drive(start, count, START_CONCURRENCY, keep_values=False)
    async with reader(sut.settings) as log:
        with progress_bar(label or "", count, enabled=label is not None) as advance:
            await tail_done(
                log,
                sut.client.topics.events,
                PARTITIONS,
                on_entry,
                lambda: len(outcome) >= count,
                max(300.0, count / 2),
                sut.workers,
            )
    last = max(settled_ms.values()) / 1000
    latency = LatencyRecorder([max(0.0, settled_ms[i] / 1000 - starts[i]) for i in settled_ms])
    problems = []
    for i in range(count):
        want, want_comp = ("compensated", 2) if i in failing else ("completed", 0)
        if outcome.get(i) != want or compensations.get(i, 0) != want_comp:
            problems.append(f"{ids[i]}: {outcome.get(i)} with {compensations.get(i, 0)} compensations, expected {want}")
    return {
        "sagas": count,
        "failing": len(failing),
        "start_errors": started.errors,
        "first_error": started.first_error,
        "duration_s": last - t0,
        "sagas_per_s": count / (last - t0),
        "compensated": sum(1 for o in outcome.values() if o == "compensated"),
        "compensations_run": sum(compensations.values()),
        **{f"saga_{k}": v for k, v in latency.summary().items()},
        "check": {"ok": not problems and started.errors == 0, "problems": problems[:10]},
    }


async def sagas_workload(opts: Any) -> dict[str, Any] | None:
    """W6: 1,000 three-step sagas, 5% failing at the last step; sagas/s and compensations."""
    why = _saga_api()
    out = console()
    if why is not None:
        out.print(f"[yellow]skip tether W6: {why}[/yellow]")
        return None
    count = max(50, int(SAGAS * opts.scale))
    results = []
    async with system(
        "W6", "kafka", target="bench.tether_apps:saga_coordinator", objects=[apps.saga_coordinator]
    ) as sut:
        await _run_sagas(sut, 20, "tether W6 warm-up (worker start)", SEED + 1)
        for r in range(opts.runs):
            label = f"tether W6 run {r + 1}/{opts.runs}"
            sampler = ProcessSampler(sut.pids, no_children={"load_generator"})
            with sampler:
                figures = await _run_sagas(sut, count, label, SEED)
            _usage(figures, sampler, count)
            figures["cpu_ms_per_saga"] = figures["cpu_ms_per_call"]
            figures["correct"] = figures["check"]["ok"]
            results.append(figures)
            mark = check_mark(figures)
            out.print(
                f"{label}: {figures['sagas_per_s']:,.0f} sagas/s, saga p50 {figures.get('saga_p50_ms', 0):.0f} ms, "
                f"{figures['compensated']} compensated ({figures['compensations_run']} compensations), "
                f"cpu {figures['cpu_ms_per_saga']:.2f} ms/saga, other load {other_share(figures):.0%}, check {mark}"
            )
        params = sut.params
    extra = {
        "sagas": count,
        "steps": 3,
        "failure_rate": FAILURE_RATE,
        "start_concurrency": START_CONCURRENCY,
        "runs": opts.runs,
    }
    return workload_result("tether", params | extra, results, median_run(results, key="sagas_per_s"))


# --------------------------------------------------------------------------------------------
# W7: dead-letter replay
# --------------------------------------------------------------------------------------------


async def _dlq_run(sut: System, count: int, label: str) -> dict[str, Any]:
    from dlq import DeadLetters

    prefix = f"dead-{uuid.uuid4().hex[:8]}"
    # Dead letters: the handler fails for good on first delivery (not measured).
    before = await _inbox_end(sut)
    await _send_all(
        sut.client, lambda i: f"{prefix}-{i % DEAD_END_KEYS}", count, f"{label}: dead letters", apps.process
    )
    await _wait_processed(sut, before + count, f"{label}: dead-lettering", max(300.0, count / 20))
    replayed: set[str] = set()
    applied = 0
    last_ms = 0

    def on_entry(record: Record, entry: dict[str, Any]) -> None:
        nonlocal applied, last_ms
        if not (record.key or b"").startswith(f"{apps.dead_end.name}/{prefix}-".encode()):
            return
        message_id = str(entry["i"])
        if message_id.startswith(apps.REPLAY_PREFIX) and "err" not in entry:
            applied += 1
            replayed.add(message_id)
            last_ms = max(last_ms, record.timestamp_ms)

    sampler = ProcessSampler(sut.pids, no_children={"load_generator"})
    async with DeadLetters(sut.settings) as dead:
        letters = [letter for letter in await dead.all() if (letter.object_key or "").startswith(prefix)]
        with sampler:
            with progress_bar(f"{label}: replay", len(letters)) as advance:
                t0 = time.time()
                report = await dead.replay(
                    [letter.id for letter in letters], transform=apps.fix, progress=lambda item, total: advance(1)
                )
                t_replayed = time.time()
            async with reader(sut.settings) as log:
                try:
                    await tail_done(
                        log,
                        sut.client.topics.events,
                        PARTITIONS,
                        on_entry,
                        lambda: len(replayed) >= len(letters),
                        max(300.0, count / 20),
                        sut.workers,
                    )
                except TimeoutError as exc:  # say how far it got, and of what
                    missing = sorted({letter.replay_message_id for letter in letters} - replayed)
                    raise TimeoutError(
                        f"{exc}: {len(replayed)} of {len(letters)} replays took effect "
                        f"(replay report {report.counts}; missing e.g. {missing[:3]})"
                    ) from exc
        # Idempotence: a second replay of the same dead letters sends nothing.
        again = await dead.replay([letter.id for letter in letters])
        if len(letters) != count:
            # Which it is: visibility lag (they show up a moment later) or lost writes (never).
            await asyncio.sleep(2.0)
            later = [letter for letter in await dead.all() if (letter.object_key or "").startswith(prefix)]
    problems = []
    if len(letters) != count:
        problems.append(
            f"{len(letters)} dead letters found, {count} expected ({len(later)} listed 2 s later: "
            f"{'visibility lag' if len(later) == count else 'missing'})"
        )
    if report.counts.get("replayed", 0) != count:
        problems.append(f"first replay: {report.counts}")
    if again.counts.get("skipped", 0) != count:
        problems.append(f"second replay did not skip everything: {again.counts}")
    if applied != count or len(replayed) != count:
        problems.append(f"{applied} replays took effect ({len(replayed)} distinct), {count} expected")
    replay_s = t_replayed - t0
    end_to_end = last_ms / 1000 - t0
    figures: dict[str, Any] = {
        "dead_letters": count,
        "replay_s": replay_s,
        "replayed_per_s": count / replay_s,
        "processed_s": end_to_end,
        "processed_per_s": count / end_to_end,
        "check": {"ok": not problems, "problems": problems, "first": report.counts, "second": again.counts},
    }
    _usage(figures, sampler, count)
    figures["correct"] = not problems
    return figures


async def _inbox_end(sut: System) -> int:
    from bench._tether_harness import inbox_progress

    return (await inbox_progress(sut.client._log, sut.client.topics, PARTITIONS)).end  # noqa: SLF001


async def dlq_workload(opts: Any) -> dict[str, Any]:
    """W7: replay 10,000 dead letters with ``dlq.DeadLetters.replay``; rate, and until applied."""
    count = max(500, int(DEAD_LETTERS * opts.scale))
    out = console()
    results = []
    async with system("W7", "kafka", target="bench.tether_apps:dead_end", objects=[apps.dead_end]) as sut:
        for r in range(opts.runs):
            label = f"tether W7 run {r + 1}/{opts.runs}"
            figures = await _dlq_run(sut, count, label)
            results.append(figures)
            mark = check_mark(figures)
            out.print(
                f"{label}: replay {figures['replayed_per_s']:,.0f} dead letters/s ({figures['replay_s']:.1f} s), "
                f"applied {figures['processed_per_s']:,.0f}/s, cpu {figures['cpu_ms_per_call']:.2f} ms/letter, "
                f"other load {other_share(figures):.0%}, check {mark}"
            )
        params = sut.params
    extra = {"dead_letters": count, "sessions": DEAD_END_KEYS, "runs": opts.runs}
    return workload_result("tether", params | extra, results, median_run(results, key="replayed_per_s"))
