"""Drive W1/W2/W3/W2-step against the Restate peer over its HTTP ingress, and check the counters."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from bench._harness import (
    ProcessSampler,
    Result,
    console,
    drive,
    median_run,
    progress_bar,
    workload_result,
)
from bench.peer_restate.install import RESTATE_VERSION, SDK_VERSION, ensure_installed
from bench.peer_restate.server import CounterService, Ports, RestateServer, server_version

SEED = 20260601
"""Seed for drawing W2's keys, the same in every run and for Tether."""


@dataclass(frozen=True)
class Workload:
    """One request-reply workload against a Counter virtual object."""

    name: str
    handler: str
    """``add`` or ``add_with_step``."""
    calls: int
    """Measured calls per run."""
    concurrency: int
    """Calls in flight (1 = sequential)."""
    keys: int
    """Distinct object keys the calls are spread over (seeded draw)."""
    description: str

    def scaled(self, scale: float) -> Workload:
        if scale == 1.0:
            return self
        calls = max(self.concurrency * 2, int(round(self.calls * scale)), 20)
        # The key count stays: fewer keys would mean more contention per key, another workload.
        return Workload(self.name, self.handler, calls, self.concurrency, self.keys, self.description)

    def warm_up(self) -> tuple[Workload, list[str]]:
        """The unmeasured calls before the runs: at most `WARMUP_CALLS`, on at most 100 keys of their
        own; the workload and each call's key."""
        warm = Workload(
            self.name, self.handler, min(WARMUP_CALLS, self.calls), self.concurrency, min(self.keys, 100), "warm-up"
        )
        return warm, key_sequence(warm, f"warm-{uuid.uuid4().hex[:8]}")


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("W1", "add", 2_000, 1, 1, "sequential calls on one key"),
        Workload("W2", "add", 20_000, 64, 1_000, "64 in flight over 1,000 keys"),
        Workload("W3", "add", 5_000, 64, 1, "64 in flight on one key"),
        Workload("W2-step", "add_with_step", 20_000, 64, 1_000, "W2 with one journaled step"),
    )
}

WARMUP_CALLS = 300
"""Unmeasured calls before the runs of each workload (JIT-free, but warms caches and pools)."""


def key_sequence(workload: Workload, prefix: str, seed: int = SEED) -> list[str]:
    """The object key of each call: a seeded draw from ``workload.keys`` keys named ``prefix-i``."""
    if workload.keys == 1:
        return [f"{prefix}-0"] * workload.calls
    rng = random.Random(seed)
    return [f"{prefix}-{rng.randrange(workload.keys)}" for _ in range(workload.calls)]


def check_counters(keys: Sequence[str], values: Sequence[Any], finals: dict[str, int]) -> dict[str, Any]:
    """PEERS.md's check: per key, final == number of adds and the returned values are 1..count.

    Args:
        keys: The key of each call.
        values: What each add returned (None for a failed call).
        finals: The final counter per key, read after the run.

    Returns:
        ``{"ok": bool, "keys": n, "problems": [...first few...]}``.
    """
    returned: dict[str, list[int]] = defaultdict(list)
    for key, value in zip(keys, values, strict=True):
        returned[key].append(value)
    problems: list[str] = []
    for key, vals in returned.items():
        count = len(vals)
        if any(v is None for v in vals):
            problems.append(f"{key}: {sum(v is None for v in vals)} of {count} adds failed")
            continue
        if finals.get(key) != count:
            problems.append(f"{key}: final counter {finals.get(key)} != {count} adds")
        if sorted(vals) != list(range(1, count + 1)):
            dupes = count - len(set(vals))
            problems.append(f"{key}: returned values are not 1..{count} ({dupes} duplicates)")
    return {"ok": not problems, "keys": len(returned), "problems": problems[:10]}


class IngressClient:
    """Calls Counter handlers through Restate's HTTP ingress with one aiohttp session."""

    def __init__(self, ingress_url: str, concurrency: int) -> None:
        self.base = ingress_url
        self.concurrency = concurrency
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> IngressClient:
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=self.concurrency)
        self._http = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._http is not None
        await self._http.close()

    async def call(self, key: str, handler: str, body: bytes = b"1") -> Any:
        assert self._http is not None
        # A handler without input (``get``) must get no body and no content-type at all.
        headers = {"content-type": "application/json"} if body else None
        async with self._http.post(
            f"{self.base}/Counter/{key}/{handler}",
            data=body or None,
            headers=headers,
            # aiohttp would add application/octet-stream to a bodiless POST otherwise.
            skip_auto_headers=() if body else ("Content-Type",),
        ) as resp:
            text = await resp.text()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status} from {handler}({key}): {text[:200]}")
            return json.loads(text)

    async def finals(self, keys: Iterable[str], concurrency: int = 32) -> dict[str, int]:
        """Read each key's counter with the shared ``get`` handler."""
        sem = asyncio.Semaphore(concurrency)
        out: dict[str, int] = {}

        async def one(key: str) -> None:
            async with sem:
                out[key] = int(await self.call(key, "get", b""))

        await asyncio.gather(*(one(k) for k in set(keys)))
        return out


async def _one_run(
    client: IngressClient,
    workload: Workload,
    prefix: str,
    pids: dict[str, int],
    label: str,
    timeout_s: float,
) -> dict[str, Any]:
    keys = key_sequence(workload, prefix)

    async def call(i: int) -> Any:
        return await client.call(keys[i], workload.handler)

    sampler = ProcessSampler(pids, no_children={"load_generator"})
    with progress_bar(label, workload.calls) as advance, sampler:
        result: Result = await asyncio.wait_for(drive(call, workload.calls, workload.concurrency, advance), timeout_s)
    figures = result.to_dict()
    usage = sampler.summary(calls=result.ok)
    figures["machine_load"] = usage.pop("machine", {})
    figures["processes"] = usage
    figures["cpu_ms_per_call"] = sum(p.get("cpu_ms_per_call", 0.0) for p in usage.values())
    check = check_counters(keys, result.values, await client.finals(keys))
    figures["correct"] = check["ok"] and result.errors == 0
    figures["check"] = check
    return figures


async def _run_workload(
    server: RestateServer,
    service: CounterService,
    workload: Workload,
    runs: int,
) -> dict[str, Any]:
    out = console()
    await server.start()
    try:
        await server.register(service.url)
        await server.wait_ready()
        pids = {"restate_server": server.pid, "service": service.pid, "load_generator": os.getpid()}
        timeout_s = max(120.0, workload.calls / 20.0)
        async with IngressClient(server.ingress_url, workload.concurrency) as client:
            warm, wkeys = workload.warm_up()
            await drive(lambda i: client.call(wkeys[i], warm.handler), warm.calls, warm.concurrency)
            results = []
            for r in range(runs):
                prefix = f"{workload.name}-r{r}-{uuid.uuid4().hex[:8]}"
                figures = await _one_run(
                    client,
                    workload,
                    prefix,
                    pids,
                    f"restate {workload.name} run {r + 1}/{runs}",
                    timeout_s,
                )
                results.append(figures)
                mark = "[green]ok[/green]" if figures["correct"] else "[red]WRONG[/red]"
                other = figures["machine_load"].get("other_cpu_s", 0.0)
                out.print(
                    f"restate {workload.name} run {r + 1}/{runs}: "
                    f"{figures['calls_per_s']:.0f} calls/s, p50 {figures['p50_ms']:.1f} ms, "
                    f"p99 {figures['p99_ms']:.1f} ms, "
                    f"cpu {figures['cpu_ms_per_call']:.2f} ms/call, "
                    f"other load {other:.1f} cpu-s, check {mark}"
                )
                if not figures["correct"]:
                    out.print(f"[red]  {figures['check']['problems'][:3]} first error: {figures['first_error']}[/red]")
    finally:
        server.stop()
    params = asdict(workload) | {"runs": runs, "warmup_calls": WARMUP_CALLS, "seed": SEED}
    return workload_result("restate", params, results, median_run(results))


async def run_restate(workloads: Iterable[str] = tuple(WORKLOADS), runs: int = 3, scale: float = 1.0) -> dict[str, Any]:
    """Measure the Restate peer as PEERS.md describes, installing it first where missing.

    Each workload gets a fresh server (base-dir wiped), a registration, an unmeasured warm-up,
    then ``runs`` measured runs on fresh keys; the median run (by calls/s) is reported and
    every run is checked for correctness. Every process started here is stopped by PID before
    returning, also on error.

    Args:
        workloads: Names from ``WORKLOADS`` (W1, W2, W3, W2-step).
        runs: Measured runs per workload.
        scale: Multiplies call counts (not key counts) for a quick run.

    Returns:
        Workload name -> {"params", "median", "runs", "correct"}, plus ``"_peer"`` with versions
        and ports.
    """
    names = list(workloads)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown Restate workloads {unknown}; known: {list(WORKLOADS)}")
    binaries = ensure_installed()
    ports = Ports.choose()
    server = RestateServer(binaries, ports)
    service = CounterService(ports.service)
    results: dict[str, Any] = {
        "_peer": {
            "restate_server": server_version(binaries),
            "npm_version": RESTATE_VERSION,
            "restate_sdk": SDK_VERSION,
            "ports": asdict(ports),
            "scale": scale,
        }
    }
    started = time.monotonic()
    await service.start()
    try:
        for name in names:
            results[name] = await _run_workload(server, service, WORKLOADS[name].scaled(scale), runs)
    finally:
        server.stop()
        service.stop()
    results["_peer"]["elapsed_s"] = time.monotonic() - started
    return results
