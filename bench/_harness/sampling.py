"""Peak RSS and CPU of process trees, sampled in a background thread."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from typing import Any

import psutil


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


def sample_this_process(name: str, broker_pid: int | None = None, **others: int) -> ProcessSampler:
    """A sampler of this process (as `name`, without its children), the broker when its PID is
    known, and the `others` process trees."""
    roots = {name: os.getpid(), **others}
    if broker_pid:
        roots["broker"] = broker_pid
    return ProcessSampler(roots, no_children={name})


def other_share(figures: dict[str, Any]) -> float:
    """The share of the machine's CPU that processes outside a run used during it (from the
    ``machine_load`` a `ProcessSampler` summary gives)."""
    load = figures.get("machine_load") or {}
    cap = load.get("capacity_cpu_s") or 0.0
    return float(load.get("other_cpu_s", 0.0)) / cap if cap else 0.0
