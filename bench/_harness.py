"""Shared benchmark harness: timers, a closed-loop driver, RSS/CPU sampling, machine info, JSON out.

Nothing here imports Tether: the same harness measures Tether, the Restate peer and the raw
aiokafka baseline, so the three are timed by the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LATEST_JSON = RESULTS_DIR / "latest.json"
QUICK_JSON = RESULTS_DIR / "quick.json"
RUNS_DIR = RESULTS_DIR / "runs"

KAFKA_VERSION = "4.3.1"
"""The Apache Kafka broker version the project pins (see eventstore/kafka/localbroker/pom.xml)."""

SCHEMA_VERSION = 1
"""Version of the layout of latest.json; bump it when a reader would misread an old file."""

# Packages whose versions go into every result file, when installed.
TRACKED_PACKAGES = (
    "tether",
    "aiokafka",
    "kafka-python",
    "msgpack",
    "pydantic",
    "ray",
    "restate-sdk",
    "hypercorn",
    "aiohttp",
    "psutil",
    "matplotlib",
)

Progress = Callable[[int], None]
"""Advance a progress display by n completed calls."""


# --------------------------------------------------------------------------------------------
# Latency recording
# --------------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return float("nan")
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass
class LatencyRecorder:
    """Collects per-call latencies in seconds; summarises them in milliseconds."""

    samples: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    @contextlib.contextmanager
    def time(self) -> Iterator[None]:
        """Time the body of a ``with`` block as one call."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.samples.append(time.perf_counter() - start)

    def __len__(self) -> int:
        return len(self.samples)

    def summary(self) -> dict[str, float]:
        """p50/p90/p99/mean/max (and min) in milliseconds."""
        s = sorted(self.samples)
        if not s:
            return {}
        return {
            "p50_ms": percentile(s, 50) * 1e3,
            "p90_ms": percentile(s, 90) * 1e3,
            "p99_ms": percentile(s, 99) * 1e3,
            "mean_ms": statistics.fmean(s) * 1e3,
            "max_ms": s[-1] * 1e3,
            "min_ms": s[0] * 1e3,
        }


@dataclass
class Result:
    """Outcome of one measured run of a workload."""

    total: int
    """Calls attempted."""
    concurrency: int
    """Calls kept in flight (1 = sequential)."""
    duration_s: float
    """Wall time from the first call's start to the last call's end."""
    latencies: LatencyRecorder
    """Latency of each successful call."""
    errors: int = 0
    """Calls that raised."""
    first_error: str | None = None
    """repr() of the first exception, to say what went wrong."""
    values: list[Any] = field(default_factory=list)
    """What each call returned, indexed by call number (None where it failed)."""

    @property
    def ok(self) -> int:
        return self.total - self.errors

    @property
    def calls_per_s(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The figures that go into the JSON file (no per-call values)."""
        return {
            "calls": self.total,
            "ok": self.ok,
            "errors": self.errors,
            "first_error": self.first_error,
            "concurrency": self.concurrency,
            "duration_s": self.duration_s,
            "calls_per_s": self.calls_per_s,
            **self.latencies.summary(),
        }


async def drive(
    call: Callable[[int], Awaitable[Any]],
    total: int,
    concurrency: int,
    progress: Progress | None = None,
    *,
    keep_values: bool = True,
) -> Result:
    """Run ``call(i)`` for i in 0..total-1 as a closed loop with ``concurrency`` calls in flight.

    Each of ``concurrency`` workers takes the next index as soon as its previous call returns,
    so the offered load adapts to the system under test (no coordinated omission from a fixed
    schedule, but also no queueing beyond ``concurrency``). A call that raises counts as an
    error and the loop goes on.

    Args:
        call: The operation; it receives the call number.
        total: How many calls to make.
        concurrency: How many calls to keep in flight.
        progress: Advanced by one per completed call, if given.
        keep_values: Keep what each call returned in ``Result.values``.

    Returns:
        The run's timings, error count and (optionally) returned values.
    """
    if total < 0 or concurrency < 1:
        raise ValueError("total must be >= 0 and concurrency >= 1")
    rec = LatencyRecorder()
    values: list[Any] = [None] * total if keep_values else []
    errors = 0
    first_error: str | None = None
    next_index = 0

    async def worker() -> None:
        nonlocal next_index, errors, first_error
        while next_index < total:
            i = next_index
            next_index += 1
            t0 = time.perf_counter()
            try:
                v = await call(i)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a benchmark counts failures, it does not stop
                errors += 1
                if first_error is None:
                    first_error = repr(exc)
            else:
                rec.add(time.perf_counter() - t0)
                if keep_values:
                    values[i] = v
            if progress is not None:
                progress(1)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, max(total, 1)))))
    duration = time.perf_counter() - start
    return Result(
        total=total,
        concurrency=concurrency,
        duration_s=duration,
        latencies=rec,
        errors=errors,
        first_error=first_error,
        values=values,
    )


def median_run(runs: Sequence[dict[str, Any]], key: str = "calls_per_s") -> dict[str, Any]:
    """The run whose ``key`` is the median (the lower middle one for an even count)."""
    if not runs:
        return {}
    ordered = sorted(runs, key=lambda r: r.get(key, float("nan")))
    return ordered[(len(ordered) - 1) // 2]


# --------------------------------------------------------------------------------------------
# Process sampling: peak RSS and CPU of process trees
# --------------------------------------------------------------------------------------------


class ProcessSampler:
    """Samples the RSS and CPU time of processes (or process trees) in a background thread.

    RSS is summed over each root (plus its descendants, unless listed in ``no_children``) at
    each tick and the peak kept. CPU time is the sum of user+system seconds of every process
    ever seen under the root, at its last observation, so a child that exits mid-run is still
    counted up to its last tick. The machine's total busy CPU over the window is measured too:
    what the sampled processes did not use went to something else on the machine, which is
    the first thing to look at when figures are noisy.

    Use as a context manager around the measured phase::

        with ProcessSampler({"server": pid1, "bench": os.getpid()}, no_children={"bench"}) as s:
            ...
        s.summary(calls=n)  # {"server": {"peak_rss_mb": ..., "cpu_s": ...}, ..., "machine": ...}
    """

    def __init__(
        self,
        roots: dict[str, int],
        *,
        no_children: Iterable[str] = (),
        interval_s: float = 0.1,
    ) -> None:
        self.roots = dict(roots)
        self.no_children = set(no_children)
        self.interval_s = interval_s
        self._peak: dict[str, int] = {name: 0 for name in roots}
        self._cpu_start: dict[str, dict[int, float]] = {name: {} for name in roots}
        self._cpu_last: dict[str, dict[int, float]] = {name: {} for name in roots}
        self._procs: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._sys_start: Any = None
        self._sys_end: Any = None
        self._t0 = 0.0
        self._t1 = 0.0
        self._load_start: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def _proc(self, pid: int) -> psutil.Process:
        # Reuse Process objects so psutil can tell a reused PID apart.
        p = self._procs.get(pid)
        if p is None:
            p = self._procs[pid] = psutil.Process(pid)
        return p

    def _tree(self, name: str, pid: int) -> list[psutil.Process]:
        try:
            root = self._proc(pid)
            if name in self.no_children:
                return [root]
            return [root, *(self._proc(c.pid) for c in root.children(recursive=True))]
        except psutil.Error:
            return []

    def _sample(self, first: bool = False) -> None:
        with self._lock:
            for name, pid in self.roots.items():
                rss = 0
                for p in self._tree(name, pid):
                    try:
                        with p.oneshot():
                            rss += p.memory_info().rss
                            ct = p.cpu_times()
                    except psutil.Error:
                        continue
                    cpu = ct.user + ct.system
                    # A process first seen after the start was born mid-run: it counts from 0.
                    self._cpu_start[name].setdefault(p.pid, cpu if first else 0.0)
                    self._cpu_last[name][p.pid] = cpu
                self._peak[name] = max(self._peak[name], rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> ProcessSampler:
        self._load_start = os.getloadavg()
        self._sys_start = psutil.cpu_times()
        self._t0 = time.perf_counter()
        self._sample(first=True)
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        self._sys_end = psutil.cpu_times()
        self._t1 = time.perf_counter()

    def __enter__(self) -> ProcessSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def _busy(ct: Any) -> float:
        return float(sum(ct) - ct.idle - getattr(ct, "iowait", 0.0))

    def summary(self, calls: int | None = None) -> dict[str, dict[str, float]]:
        """Per root: peak RSS (MiB), CPU seconds, CPU ms per call; and the machine's load.

        Args:
            calls: Completed calls, to give CPU per call.

        Returns:
            Root name -> figures, plus ``"machine"`` with the whole machine's busy CPU seconds,
            the share of it the roots did not account for (``other_cpu_s``), the CPU capacity
            of the window and the 1-minute load average at the start.
        """
        out: dict[str, dict[str, float]] = {}
        total = 0.0
        for name in self.roots:
            cpu = sum(last - self._cpu_start[name].get(pid, 0.0) for pid, last in self._cpu_last[name].items())
            total += cpu
            entry = {"peak_rss_mb": self._peak[name] / 2**20, "cpu_s": cpu}
            if calls:
                entry["cpu_ms_per_call"] = cpu * 1e3 / calls
            out[name] = entry
        if self._sys_start is not None and self._sys_end is not None:
            busy = self._busy(self._sys_end) - self._busy(self._sys_start)
            out["machine"] = {
                "busy_cpu_s": busy,
                "other_cpu_s": max(0.0, busy - total),
                "capacity_cpu_s": (self._t1 - self._t0) * (os.cpu_count() or 1),
                "loadavg_1m_at_start": self._load_start[0],
            }
        return out


# --------------------------------------------------------------------------------------------
# Machine and versions
# --------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of the named distributions (missing ones are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _java_version() -> str | None:
    try:
        proc = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = (proc.stderr or proc.stdout).strip().splitlines()
    return first[0] if first else None


def _git_commit() -> str | None:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None


def machine_info(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """CPU, cores, memory, OS, Python, Java, Kafka and package versions of this machine."""
    vm = psutil.virtual_memory()
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "memory_gib": round(vm.total / 2**30, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_impl": platform.python_implementation(),
        "java": _java_version(),
        "kafka": KAFKA_VERSION,
        "packages": package_versions(),
        "git_commit": _git_commit(),
    }
    if extra:
        info.update(extra)
    return info


# --------------------------------------------------------------------------------------------
# JSON results
# --------------------------------------------------------------------------------------------


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_results(path: Path = LATEST_JSON) -> dict[str, Any]:
    """The results file as a dict (an empty skeleton if it does not exist yet)."""
    if path.exists():
        data: dict[str, Any] = json.loads(path.read_text())
        data.setdefault("sections", {})
        return data
    return {"schema": SCHEMA_VERSION, "sections": {}}


def record(
    section: str,
    workloads: dict[str, dict[str, Any]],
    *,
    path: Path = LATEST_JSON,
    machine: dict[str, Any] | None = None,
) -> Path:
    """Merge workload results into one section of the results file, leaving the rest alone.

    ``section`` is who was measured (``tether``, ``restate``, ``raw_kafka``); each entry of
    ``workloads`` replaces that workload's entry in the section, so re-running one workload
    updates only it. The machine description is refreshed on every write, and a timestamped
    copy of the written section goes under ``results/runs/`` (gitignored).

    Args:
        section: The system measured.
        workloads: Workload name -> its figures (parameters, runs, median, ...).
        path: The results file.
        machine: Machine info; measured afresh when not given.

    Returns:
        The path written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = load_results(path)
    data["schema"] = SCHEMA_VERSION
    data["machine"] = machine or machine_info()
    data["updated_at"] = utc_now()
    sec = data["sections"].setdefault(section, {})
    stamped = {}
    for name, figures in workloads.items():
        entry = {"recorded_at": utc_now(), **figures}
        sec[name] = entry
        stamped[name] = entry
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
    tmp.replace(path)
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S")
    (RUNS_DIR / f"{stamp}-{path.stem}-{section}.json").write_text(
        json.dumps(
            {"machine": data["machine"], "section": section, "workloads": stamped},
            indent=2,
            default=_json_default,
        )
        + "\n"
    )
    return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and obj != obj:  # NaN
        return None
    raise TypeError(f"cannot serialise {type(obj).__name__}")


# --------------------------------------------------------------------------------------------
# Progress bars and ports
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True) -> Iterator[Progress]:
    """A rich progress bar for ``total`` calls; yields a callable that advances it."""
    if not enabled or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import (
        Progress as RichProgress,
    )

    with RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def console() -> Any:
    """A shared rich console writing to stderr (results go to files, chatter to stderr)."""
    global _CONSOLE
    if _CONSOLE is None:
        from rich.console import Console

        _CONSOLE = Console(stderr=True, highlight=False)
    return _CONSOLE


_CONSOLE: Any = None


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on host:port and we may bind it."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", avoid: Iterable[int] = ()) -> int:
    """A port the kernel says is free now (it may be taken by the time it is used)."""
    import socket

    avoid = set(avoid)
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port
    raise RuntimeError(f"could not find a free TCP port on {host}")


def pick_port(preferred: int, host: str = "127.0.0.1", avoid: Iterable[int] = ()) -> int:
    """``preferred`` if it is free, else another free port."""
    avoid = set(avoid)
    if preferred not in avoid and port_is_free(preferred, host):
        return preferred
    return free_port(host, avoid)


async def wait_for_port(port: int, host: str = "127.0.0.1", timeout_s: float = 60.0) -> None:
    """Wait until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s:.0f} s") from exc
            await asyncio.sleep(0.1)
        else:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
