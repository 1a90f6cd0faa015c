"""Timing calls: percentiles, a latency recorder, the closed-loop driver, the median run."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

Progress = Callable[[int], None]
"""Advance a progress display by n completed calls."""


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
