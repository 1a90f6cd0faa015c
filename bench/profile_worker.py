"""Where a W2 (or W4) worker's CPU goes: py-spy samples of the ``tether serve`` process, by package.

``python -m bench profile [--workload W2|W4] [--scheme per_partition|per_worker] [--seconds 20]
[--scale 0.5]`` runs ``python -m bench tether --only W2 --runs 1`` (or W4) in a subprocess (its own broker, warmed
up), waits for its worker, samples it with py-spy (``--nonblocking``: the worker is not
paused) during the measured run and prints self time by package and the functions that cost
most. The raw samples go to ``bench/results/profile-<scheme>.txt`` (py-spy's collapsed
format: ``frame;frame;frame count``), so two schemes can be compared later.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench._harness import REPO_ROOT, RESULTS_DIR, RESULTS_ENV, console

WORKER_MARK = "bench.tether_apps:counter"
CATEGORIES = (
    ("aiokafka", ("aiokafka/",)),
    ("kafka protocol (kafka-python)", ("kafka/",)),
    ("msgpack", ("msgpack",)),
    ("pydantic", ("pydantic",)),
    ("opentelemetry / prometheus", ("opentelemetry", "prometheus_client")),
    ("event loop (asyncio, selectors, ssl)", ("asyncio/", "selectors", "ssl.py", "socket.py")),
    ("tether runtime (actors/)", ("actors/",)),
    ("tether eventstore (eventstore/)", ("eventstore/",)),
)


@dataclass(frozen=True)
class Summary:
    samples: int
    by_category: list[tuple[str, int]]
    top_functions: list[tuple[str, int]]


def _category(frame: str) -> str:
    for name, marks in CATEGORIES:
        if any(mark in frame for mark in marks):
            return name
    return "other (stdlib, builtins)"


def summarize(collapsed: str, top: int = 15) -> Summary:
    """Self time (the innermost frame of each sample) by package and by function."""
    categories: collections.Counter[str] = collections.Counter()
    functions: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        n = int(count)
        total += n
        categories[_category(leaf)] += n
        functions[leaf] += n
    return Summary(total, categories.most_common(), functions.most_common(top))


def _find_worker(bench: psutil.Process, timeout: float) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in bench.children(recursive=True):
            try:
                if WORKER_MARK in " ".join(child.cmdline()):
                    return child
            except psutil.Error:
                continue
        time.sleep(0.5)
    raise RuntimeError(f"no worker ({WORKER_MARK}) started within {timeout:.0f} s")


def profile(scheme: str, seconds: float, scale: float, delay: float, workload: str = "W2") -> Path:
    """Run `workload` (W2 or W4) with `scheme`, sample its worker for `seconds` after `delay`.

    Returns:
        The samples' path: ``profile-<scheme>.txt`` for W2, ``profile-W4-<scheme>.txt`` for W4.
    """
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / (f"profile-{scheme}.txt" if workload == "W2" else f"profile-{workload}-{scheme}.txt")
    # its figures are a profiled run's: they go next to the samples, not into latest.json
    env = {**os.environ, "TETHER_KAFKA__TRANSACTIONS": scheme, RESULTS_ENV: str(out.with_suffix(".json"))}
    cmd = [sys.executable, "-m", "bench", "tether", "--only", workload, "--runs", "1", "--scale", str(scale)]
    bench = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        worker = _find_worker(psutil.Process(bench.pid), timeout=300)
        console().print(f"worker {worker.pid}: sampling for {seconds:.0f} s after {delay:.0f} s of warm-up")
        time.sleep(delay)
        spy = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(worker.pid), "--nonblocking"]
        spy += ["--format", "raw", "--function", "--duration", str(int(seconds)), "--output", str(out)]
        subprocess.run(spy, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        bench.wait(timeout=900)
    finally:
        _stop(bench)
    return out


def _stop(bench: subprocess.Popen[bytes]) -> None:
    """Stop the bench run and everything it started, by PID: SIGINT first, so that it stops its
    worker and broker itself; what is still running a minute later is killed."""
    if bench.poll() is not None:
        return
    started = psutil.Process(bench.pid).children(recursive=True)
    bench.send_signal(signal.SIGINT)
    try:
        bench.wait(timeout=60)
    except subprocess.TimeoutExpired:
        bench.kill()
        bench.wait(timeout=10)
    for child in started:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def render(path: Path, seconds: float | None = None, rate: int = 100) -> list[str]:
    """The table of a samples file, as markdown lines."""
    summary = summarize(path.read_text())
    lines = [f"{path.name}: {summary.samples:,} samples" + (f" over {seconds:.0f} s" if seconds else "")]
    if seconds:
        lines[0] += f" (the worker was busy {summary.samples / (seconds * rate):.0%} of the time)"
    lines += ["", "| where (self time) | share |", "|---|---|"]
    lines += [f"| {name} | {n / summary.samples:.0%} |" for name, n in summary.by_category]
    lines += ["", "| function (self time) | share |", "|---|---|"]
    lines += [f"| `{name}` | {n / summary.samples:.1%} |" for name, n in summary.top_functions]
    return lines


__all__ = ["Summary", "profile", "render", "summarize"]
