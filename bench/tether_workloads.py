"""Tether's workloads: W1-W3 and W2-step as the Restate peer runs them, W2-3step, W4-W7.

Request-reply workloads (W1, W2, W3, W2-step, W2-3step) mirror ``bench/peer_restate/driver.py``
exactly: the same key draw (``key_sequence``), warm-up, closed-loop driver, process sampling and
correctness check (``check_counters``), against the same Counter (``bench.tether_apps``). The
worker is a ``tether serve`` subprocess, as Restate's server and service are processes of their
own; ``TETHER_BENCH_WORKER=inprocess`` runs it inside the load generator instead (to compare).
Each workload gets a fresh namespace and worker; each run fresh keys.

W4 (fire-and-forget), W5 (recovery, ``bench.tether_recovery``), W6 (sagas) and W7 (dead-letter
replay, both in ``bench.tether_ops``) are Tether's own. ``-embedded`` variants run the embedded
(SQLite) backend, with the worker in the load generator's process as that backend requires.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from actors import Client, Settings, Worker
from bench import tether_apps as apps
from bench._harness import (
    ProcessSampler,
    Result,
    check_mark,
    console,
    drive,
    load_results,
    median_run,
    other_share,
    progress_bar,
    record,
    workload_result,
)
from bench._tether_harness import (
    PARTITIONS,
    WorkerProcess,
    broker_pids,
    delete_namespace,
    embedded_settings,
    inbox_progress,
    invocations_per_transaction,
    kafka_settings,
    last_record_ms,
    new_namespace,
    read_done,
    running_workers,
    use_broker,
    wait_for_group,
)
from bench._tether_harness import (
    lifespan as broker_lifespan,
)
from bench.peer_restate.driver import SEED, Workload, check_counters, key_sequence
from bench.peer_restate.driver import WORKLOADS as PEER_WORKLOADS
from bench.registry import register

COUNTER_TARGET = "bench.tether_apps:counter"
CALL_TIMEOUT = 120.0
"""Per call: generous, a loaded 2-core machine may stall; a timeout counts as a failed call."""
WORKER_MODE_ENV = "TETHER_BENCH_WORKER"
"""``subprocess`` (default, reported) or ``inprocess``: where the Kafka worker runs."""

REQUEST_REPLY: dict[str, Workload] = {
    **PEER_WORKLOADS,
    "W2-3step": Workload("W2-3step", "add_3step", 20_000, 64, 1_000, "W2 with three journaled steps"),
}
HANDLERS: dict[str, Any] = {"add": apps.add, "add_with_step": apps.add_with_step, "add_3step": apps.add_3step}


def _worker_mode() -> str:
    mode = os.environ.get(WORKER_MODE_ENV, "subprocess")
    if mode not in ("subprocess", "inprocess"):
        raise ValueError(f"{WORKER_MODE_ENV} must be subprocess or inprocess, not {mode!r}")
    return mode


# --------------------------------------------------------------------------------------------
# Systems under test: a client plus a worker, on Kafka (subprocess or in-process) or embedded
# --------------------------------------------------------------------------------------------


@dataclass
class System:
    client: Client
    settings: Settings
    pids: dict[str, int]
    """What the sampler watches: worker(s), the load generator (this process), the broker."""
    params: dict[str, Any]
    workers: list[WorkerProcess]


@contextlib.asynccontextmanager
async def system(
    name: str,
    backend: str,
    *,
    target: str = COUNTER_TARGET,
    objects: list[Any] | None = None,
    workers: int = 1,
    ray: bool = False,
    mode: str | None = None,
) -> AsyncIterator[System]:
    """A fresh namespace with its worker(s) running and a started client; all torn down after."""
    mode = mode or ("inprocess" if backend == "embedded" else _worker_mode())
    objects = objects or [apps.counter]
    namespace = new_namespace(name)
    me = {"load_generator": os.getpid()}
    if backend == "embedded":
        data_dir = Path(tempfile.mkdtemp(prefix="tether-bench-embedded-"))
        settings = embedded_settings(data_dir, namespace)
        try:
            async with Worker(objects, settings), Client.connect(settings) as client:
                yield System(client, settings, me, {"backend": "embedded", "worker": "in-process"}, [])
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
        return
    async with use_broker() as broker:
        bootstrap = broker["bootstrap"]
        settings = kafka_settings(bootstrap, namespace)
        params = {
            "backend": "kafka",
            "worker": ("ray" if ray else mode),
            "workers": workers,
            "partitions": PARTITIONS,
            "kafka": broker.get("kafka"),
            "broker": broker.get("source"),
        }
        try:
            async with Client.connect(settings) as client:  # creates the namespace's topics
                if mode == "inprocess":
                    async with Worker(objects, settings):
                        yield System(client, settings, {**me, **broker_pids(broker)}, params, [])
                    return
                if ray:
                    procs = [WorkerProcess(target, settings, name=f"{namespace}-ray", ray_workers=workers)]
                else:
                    procs = [WorkerProcess(target, settings, name=f"{namespace}-{i}") for i in range(workers)]
                async with running_workers(procs):
                    pids = {
                        **{f"worker{i}" if workers > 1 and not ray else "worker": p.pid for i, p in enumerate(procs)}
                    }
                    yield System(client, settings, {**pids, **me, **broker_pids(broker)}, params, procs)
        finally:
            await delete_namespace(bootstrap, namespace)


# --------------------------------------------------------------------------------------------
# One broker for every workload of the invocation, warmed up first
# --------------------------------------------------------------------------------------------

BROKER_WARMUP_S = 45.0
"""How long the broker is warmed up (x0.4 in a quick run): on this machine its JIT needs about
40-60 s of load before a sequential call costs it a steady ~3 ms of CPU instead of ~20 ms."""


@contextlib.asynccontextmanager
async def lifespan(opts: Any) -> AsyncIterator[None]:
    """The broker shared by Tether's workloads, its JVM warmed up before anything is measured.

    A broker that just started runs interpreted and compiles its hot paths for a minute or so;
    W1 on a cold broker costs it several times the CPU per call. The raw pipeline warms its
    broker with a run of its own; Restate's server is native code.
    """
    async with broker_lifespan(opts):
        await warm_up_broker(BROKER_WARMUP_S * (0.4 if opts.quick else 1.0))
        yield


async def warm_up_broker(seconds: float) -> None:
    """Calls (sequential and 64 in flight) and sends in turn for `seconds`; nothing measured."""
    started = time.monotonic()
    total = 0
    async with system("broker-warm-up", "kafka") as sut:
        with progress_bar("warming up the broker's JVM (not measured)", int(seconds)) as advance:
            shown = 0
            while time.monotonic() - started < seconds:
                for concurrency, calls in ((64, 2_000), (1, 150)):
                    await drive(
                        lambda i: sut.client.call(apps.add, f"warm-{i % 500}", apps.Add(n=1), timeout=CALL_TIMEOUT),
                        calls,
                        concurrency,
                        keep_values=False,
                    )
                    total += calls
                await drive(
                    lambda i: sut.client.send(apps.add, f"warm-send-{i % 2_000}", apps.Add(n=1)),
                    2_000,
                    SEND_CONCURRENCY,
                    keep_values=False,
                )
                total += 2_000
                now = int(min(seconds, time.monotonic() - started))
                advance(now - shown)
                shown = now
        await _wait_processed(sut, total, "warming up the broker: processing", 300)
    console().print(f"[dim]broker warmed up for {time.monotonic() - started:.0f} s (not measured)[/dim]")


# --------------------------------------------------------------------------------------------
# Request-reply: W1, W2, W3, W2-step, W2-3step (the peer's method, line for line)
# --------------------------------------------------------------------------------------------


async def _finals(client: Client, keys: list[str], concurrency: int = 32) -> dict[str, int]:
    """Each key's counter, read with the shared ``get`` handler."""
    sem = asyncio.Semaphore(concurrency)
    out: dict[str, int] = {}

    async def one(key: str) -> None:
        async with sem:
            out[key] = (await client.call(apps.get, key, apps.Empty(), timeout=CALL_TIMEOUT)).value

    await asyncio.gather(*(one(k) for k in set(keys)))
    return out


def _usage(figures: dict[str, Any], sampler: ProcessSampler, done: int) -> None:
    usage = sampler.summary(calls=done)
    figures["machine_load"] = usage.pop("machine", {})
    figures["processes"] = usage
    figures["cpu_ms_per_call"] = sum(p.get("cpu_ms_per_call", 0.0) for p in usage.values())


async def _rr_run(sut: System, workload: Workload, prefix: str, label: str, timeout_s: float) -> dict[str, Any]:
    keys = key_sequence(workload, prefix)
    handler = HANDLERS[workload.handler]
    payload = apps.Add(n=1)
    client = sut.client

    async def call(i: int) -> Any:
        return (await client.call(handler, keys[i], payload, timeout=CALL_TIMEOUT)).value

    sampler = ProcessSampler(sut.pids, no_children={"load_generator"})
    with progress_bar(label, workload.calls) as advance, sampler:
        result: Result = await asyncio.wait_for(drive(call, workload.calls, workload.concurrency, advance), timeout_s)
    figures = result.to_dict()
    _usage(figures, sampler, result.ok)
    check = check_counters(keys, result.values, await _finals(client, keys))
    figures["correct"] = check["ok"] and result.errors == 0
    figures["check"] = check
    return figures


async def warm_up(sut: System, workload: Workload, name: str) -> Workload:
    """`workload`'s unmeasured warm-up calls (they return once the worker serves); returns them."""
    warm, wkeys = workload.warm_up()
    handler = HANDLERS[warm.handler]
    with progress_bar(f"tether {name} warm-up (worker start)", warm.calls) as advance:
        await drive(
            lambda i: sut.client.call(handler, wkeys[i], apps.Add(n=1), timeout=CALL_TIMEOUT),
            warm.calls,
            warm.concurrency,
            advance,
            keep_values=False,
        )
    return warm


async def request_reply(opts: Any, name: str, backend: str = "kafka") -> dict[str, Any]:
    """One request-reply workload: fresh namespace and worker, warm-up, `opts.runs` runs."""
    base = name.removesuffix("-embedded")
    workload = REQUEST_REPLY[base].scaled(opts.scale)
    out = console()
    timeout_s = max(180.0, workload.calls / 10.0)
    results = []
    async with system(name, backend) as sut:
        warm = await warm_up(sut, workload, name)
        for r in range(opts.runs):
            prefix = f"{workload.name}-r{r}-{uuid.uuid4().hex[:8]}"
            figures = await _rr_run(sut, workload, prefix, f"tether {name} run {r + 1}/{opts.runs}", timeout_s)
            results.append(figures)
            mark = "[green]ok[/green]" if figures["correct"] else "[red]WRONG[/red]"
            out.print(
                f"tether {name} run {r + 1}/{opts.runs}: "
                f"{figures['calls_per_s']:.0f} calls/s, p50 {figures['p50_ms']:.1f} ms, "
                f"p99 {figures['p99_ms']:.1f} ms, cpu {figures['cpu_ms_per_call']:.2f} ms/call, "
                f"other load {other_share(figures):.0%}, check {mark}"
            )
            if not figures["correct"]:
                out.print(f"[red]  {figures['check']['problems'][:3]} first error: {figures['first_error']}[/red]")
        params = asdict(workload) | sut.params | {"runs": opts.runs, "warmup_calls": warm.calls, "seed": SEED}
    grouped = invocations_per_transaction(sut.workers)  # the workers stopped: their counts are logged
    if grouped is not None:
        params["invocations_per_transaction"] = round(grouped, 2)  # warm-up and every run together
        out.print(f"[dim]tether {name}: {grouped:.1f} invocations per transaction[/dim]")
    return workload_result("tether", params, results, median_run(results))


# --------------------------------------------------------------------------------------------
# W4: fire-and-forget sends, end to end, against the raw pipeline of the same invocation
# --------------------------------------------------------------------------------------------

W4_MESSAGES = 100_000
W4_SESSIONS = 10_000
SEND_CONCURRENCY = 512
"""Sends in flight from the load generator (each `send` returns once its message is durable)."""


def _recorded_epoch(entry: dict[str, Any]) -> float:
    stamp = entry.get("recorded_at")
    if not isinstance(stamp, str):
        return 0.0
    return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))


async def raw_reference(opts: Any, messages: int) -> dict[str, Any]:
    """The raw pipeline's median from this invocation; measured now (and recorded) if missing."""
    results = load_results(opts.results_path)
    entry = results.get("sections", {}).get("raw_kafka", {}).get("pipeline")
    started = psutil.Process().create_time()
    if (
        isinstance(entry, dict)
        and _recorded_epoch(entry) >= started - 1
        and entry.get("params", {}).get("messages") == messages
    ):
        return dict(entry["median"])
    console().print("[cyan]W4 needs the raw pipeline of this invocation: measuring it first[/cyan]")
    from bench.raw_kafka import run_raw

    async with use_broker() as broker:
        raw = await run_raw(runs=opts.runs, scale=opts.scale, broker=broker)
    meta = raw.pop("_broker")
    record("raw_kafka", {"pipeline": raw["pipeline"], "_meta": meta}, path=opts.results_path)
    return dict(raw["pipeline"]["median"])


async def _wait_processed(sut: System, total: int, label: str, timeout_s: float) -> float:
    """Poll committed inbox offsets until they reach the end offsets; return when (epoch s)."""
    log = sut.client._log  # noqa: SLF001 - the client's own log: one connection fewer
    deadline = time.monotonic() + timeout_s
    with progress_bar(label, total) as advance:
        shown = 0
        while True:
            progress = await inbox_progress(log, sut.client.topics, PARTITIONS)
            if progress.committed > shown:
                advance(min(total, progress.committed) - shown)
                shown = min(total, progress.committed)
            if progress.done:
                return time.time()
            for w in sut.workers:
                w.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: {progress.committed} of {progress.end} committed after {timeout_s:.0f} s")
            await asyncio.sleep(0.25)


async def _send_all(
    client: Client, keys: Callable[[int], str], total: int, label: str | None, handler: Any = apps.add
) -> Result:
    payload = apps.Add(n=1)

    async def send(i: int) -> str:
        return await client.send(handler, keys(i), payload)

    with progress_bar(label or "", total, enabled=label is not None) as advance:
        return await drive(send, total, SEND_CONCURRENCY, advance, keep_values=False)


async def _w4_run(opts: Any, name: str, backend: str, workers: int, ray: bool, r: int) -> dict[str, Any]:
    messages = max(1_000, int(W4_MESSAGES * opts.scale))
    sessions = W4_SESSIONS
    async with system(f"{name}-r{r}", backend, workers=workers, ray=ray) as sut:
        if sut.workers:
            group = sut.settings.namespace + "-workers"
            members = workers
            await wait_for_group(str(sut.settings.kafka.bootstrap_servers), group, members, sut.workers, 300)
        # Warm-up (5%, as the raw pipeline's): worker code paths and connections, not measured.
        warm = max(500, messages // 20)
        wprefix = f"warm-{uuid.uuid4().hex[:6]}"
        await _send_all(sut.client, lambda i: f"{wprefix}-{i % 500}", warm, None)
        await _wait_processed(sut, warm, f"tether {name} warm-up (worker start)", 300)
        prefix = f"{name}-r{r}-{uuid.uuid4().hex[:6]}"
        sampler = ProcessSampler(sut.pids, no_children={"load_generator"})
        label = f"tether {name} run {r + 1}/{opts.runs}"
        with sampler:
            t0 = time.time()
            sent = await _send_all(sut.client, lambda i: f"{prefix}-s{i % sessions}", messages, f"{label}: send")
            t_sent = time.time()
            t_committed = await _wait_processed(sut, messages + warm, f"{label}: process", max(300.0, messages / 200))
        async with _log_reader(sut) as log:
            last_ms = await last_record_ms(log, sut.client.topics.events, PARTITIONS)
            check_started = time.perf_counter()
            done = await read_done(log, sut.client.topics.events, PARTITIONS)
        check = _check_w4(done, prefix, messages, sessions, warm)
        check["read_s"] = time.perf_counter() - check_started
        params = dict(sut.params)
    grouped = invocations_per_transaction(sut.workers)
    if grouped is not None:
        params["invocations_per_transaction"] = round(grouped, 2)
    end_to_end = last_ms / 1000 - t0
    figures: dict[str, Any] = {
        "messages": messages,
        "sessions": sessions,
        "send_concurrency": SEND_CONCURRENCY,
        "send_errors": sent.errors,
        "first_error": sent.first_error,
        "send_s": t_sent - t0,
        "send_msgs_per_s": messages / (t_sent - t0),
        "end_to_end_s": end_to_end,
        "end_to_end_msgs_per_s": messages / end_to_end,
        "until_offsets_committed_s": t_committed - t0,
        "params": params,
    }
    _usage(figures, sampler, messages)
    figures["cpu_ms_per_msg"] = figures["cpu_ms_per_call"]
    figures["check"] = check
    figures["correct"] = check["ok"] and sent.errors == 0
    return figures


@contextlib.asynccontextmanager
async def _log_reader(sut: System) -> AsyncIterator[Any]:
    if sut.params.get("backend") == "embedded":
        yield sut.client._log  # noqa: SLF001 - one process may open the SQLite file once here
        return
    from bench._tether_harness import reader

    async with reader(sut.settings) as log:
        yield log


def _check_w4(done: Any, prefix: str, messages: int, sessions: int, warm: int) -> dict[str, Any]:
    """Every send took effect exactly once: per session, done entries == sends == version."""
    expected: dict[bytes, int] = {}
    for i in range(messages):
        key = f"Counter/{prefix}-s{i % sessions}".encode()
        expected[key] = expected.get(key, 0) + 1
    problems = []
    for key, n in expected.items():
        got, version = done.count.get(key, 0), done.max_version.get(key, 0)
        if got != n or version != n:
            problems.append(f"{key.decode()}: {got} done entries, version {version}, {n} sends")
    if done.ids != done.distinct_ids:
        problems.append(f"{done.ids - done.distinct_ids} message ids took effect twice")
    if done.errors:
        problems.append(f"{done.errors} invocations failed")
    if done.ids != messages + warm:
        problems.append(f"{done.ids} done entries in all, expected {messages + warm}")
    return {"ok": not problems, "sessions": len(expected), "done_entries": done.ids, "problems": problems[:10]}


async def fire_and_forget(
    opts: Any, name: str, *, backend: str = "kafka", workers: int = 1, ray: bool = False
) -> dict[str, Any]:
    """W4: 100,000 sends to 10,000 sessions, from the first send to the last commit."""
    messages = max(1_000, int(W4_MESSAGES * opts.scale))
    raw = await raw_reference(opts, messages) if backend == "kafka" else None
    out = console()
    results = []
    for r in range(opts.runs):
        try:
            figures = await _w4_run(opts, name, backend, workers, ray, r)
        except Exception as exc:
            if ray:
                out.print(f"[red]tether {name}: the Ray workers failed ({exc!r}); skipping this variant[/red]")
                return {"system": "tether", "skipped": repr(exc), "params": {"workers": workers, "ray": True}}
            raise
        results.append(figures)
        mark = check_mark(figures)
        out.print(
            f"tether {name} run {r + 1}/{opts.runs}: send {figures['send_msgs_per_s']:,.0f} msg/s, "
            f"end-to-end {figures['end_to_end_msgs_per_s']:,.0f} msg/s "
            f"({figures['end_to_end_s']:.1f} s; offsets committed at {figures['until_offsets_committed_s']:.1f} s), "
            f"cpu {figures['cpu_ms_per_msg']:.2f} ms/msg, other load {other_share(figures):.0%}, check {mark}"
        )
    med = dict(median_run(results, key="end_to_end_msgs_per_s"))
    params = med.pop("params", {})
    if raw is not None:
        med["raw_end_to_end_msgs_per_s"] = raw.get("end_to_end_msgs_per_s")
        med["raw_ratio"] = med["end_to_end_msgs_per_s"] / raw["end_to_end_msgs_per_s"]
    for run in results:
        run.pop("params", None)
    extra = {"messages": messages, "sessions": W4_SESSIONS, "runs": opts.runs, "warmup": "5%"}
    return workload_result("tether", params | extra, results, med)


# --------------------------------------------------------------------------------------------
# The registry read by bench/__main__.py
# --------------------------------------------------------------------------------------------


def _rr(name: str, backend: str = "kafka") -> Callable[[Any], Awaitable[dict[str, Any]]]:
    async def run(opts: Any) -> dict[str, Any]:
        return await request_reply(opts, name, backend)

    return run


def _w4(name: str, **kw: Any) -> Callable[[Any], Awaitable[dict[str, Any]]]:
    async def run(opts: Any) -> dict[str, Any]:
        return await fire_and_forget(opts, name, **kw)

    return run


async def _w5(opts: Any) -> dict[str, Any]:
    from bench.tether_recovery import recovery

    return await recovery(opts)


async def _w6(opts: Any) -> dict[str, Any] | None:
    from bench.tether_ops import sagas_workload

    return await sagas_workload(opts)


async def _w7(opts: Any) -> dict[str, Any]:
    from bench.tether_ops import dlq_workload

    return await dlq_workload(opts)


DESCRIPTIONS: dict[str, str] = {
    "W1": "2,000 sequential calls on one key",
    "W2": "20,000 calls, 64 in flight, keys seeded from 1,000",
    "W3": "5,000 calls, 64 in flight, one key",
    "W2-step": "W2 with one journaled ctx.run step per call",
    "W2-3step": "W2 with three journaled ctx.run steps per call",
    "W4": "100,000 one-way sends to 10,000 sessions, 1 worker process, first send to last commit",
    "W4-2workers": "W4 with 2 worker processes (one consumer group)",
    "W4-ray": "W4 with 2 workers as Ray actors (tether serve --ray --workers 2)",
    "W5": (
        "restore a partition of 100,000 and 1,000,000 events (10,000 sessions, or one wide session), "
        "with and without snapshots"
    ),
    "W6": "1,000 three-step sagas, 5% failing at the third step (compensated)",
    "W7": "replay 10,000 dead letters from the DLQ (dlq.DeadLetters.replay)",
    "W1-embedded": "W1 on the embedded (SQLite) backend, worker in-process",
    "W2-embedded": "W2 on the embedded backend",
    "W4-embedded": "W4 on the embedded backend",
}
"""What each workload does (bench/README.md has the sizes and why)."""

for _name, _run in {
    "W1": _rr("W1"),
    "W2": _rr("W2"),
    "W3": _rr("W3"),
    "W2-step": _rr("W2-step"),
    "W2-3step": _rr("W2-3step"),
    "W4": _w4("W4"),
    "W4-2workers": _w4("W4-2workers", workers=2),
    "W4-ray": _w4("W4-ray", workers=2, ray=True),
    "W5": _w5,
    "W6": _w6,
    "W7": _w7,
    "W1-embedded": _rr("W1-embedded", "embedded"),
    "W2-embedded": _rr("W2-embedded", "embedded"),
    "W4-embedded": _w4("W4-embedded", backend="embedded"),
}.items():
    register(_name, DESCRIPTIONS[_name], _run)

__all__ = ["DESCRIPTIONS", "lifespan"]
