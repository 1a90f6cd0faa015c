"""Turn metrics and tracing on and off inside running processes, for the interleaved overhead bench.

Comparing separate runs, each a new worker process, measures the cost of observability plus
the difference between two processes (their memory layout, the broker's state, the machine's
drift between runs), which on a shared 2-core VM is larger than the cost itself. Switching
both inside one worker and one load generator, block by block, compares like with like.

A mode (an `Arm`) is three values: metrics recorded or not (`METRICS.enabled`, what a worker sets at start
when it has a metrics port), the share of new traces sampled (0: no tracer provider at all, as
in a deployment without an OpenTelemetry SDK), and ``trace_unsampled``. "No provider" is the
OpenTelemetry API's global set back to None: the API allows setting it once, so this reaches
into its private global; the bench does it, Tether never does (Tether reads that global on
every check, so it follows at once: ``actors.observability.tracing.enabled``).

A worker started with ``SWITCH_ENV`` naming a file listens for SIGUSR1: it reads the mode from
that file, applies it, and writes it back to ``<file>.ack`` (`ask_worker` waits for that). On
SIGUSR2 it writes the invocations it finished and the transactions that carried them
(`Worker.stats`) to ``<file>.counts`` (`ask_counts`), so that a block's calls per transaction
are known: whether a mode changes how many calls group commit puts in a transaction (the
commit's share of each call), which a closed loop's throughput would then carry too.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from opentelemetry import trace

from actors import Worker
from actors.observability import METRICS
from actors.observability.tracing import trace_unsampled
from bench._harness import tracing

SWITCH_ENV = "TETHER_BENCH_SWITCH"
"""Set in a worker's environment to a file path: the worker switches modes on SIGUSR1."""


@dataclass(frozen=True)
class Arm:
    """One mode of observability: what the overhead benches compare."""

    name: str
    metrics: bool
    sampling: float
    """Share of the load generator's new traces that are sampled (the worker follows it); 0 with
    no tracer provider in the interleaved bench (spans are not even created)."""
    trace_unsampled: bool = True
    """The workers' ``TETHER_RUNTIME__TRACE_UNSAMPLED``: False, no span under an unsampled parent."""

    def encode(self) -> str:
        return f"{self.name} {int(self.metrics)} {self.sampling!r} {int(self.trace_unsampled)}"

    @classmethod
    def decode(cls, text: str) -> Arm:
        name, metrics, sampling, unsampled = text.split()
        return cls(name, metrics == "1", float(sampling), unsampled == "1")


def apply(mode: Arm) -> None:
    """Put this process in `mode` (installing the bench's tracer provider on first use)."""
    METRICS.enable(mode.metrics)
    trace_unsampled(mode.trace_unsampled)
    if mode.sampling > 0:
        tracing.install()
        tracing.set_sampling(mode.sampling)
        trace._TRACER_PROVIDER = tracing.provider()  # noqa: SLF001 - see the module's docstring
    else:
        tracing.set_sampling(0.0)
        trace._TRACER_PROVIDER = None  # noqa: SLF001


def listen(path: Path) -> None:
    """In a worker: apply the mode written to `path` on each SIGUSR1 and acknowledge it; write
    the worker's counts on each SIGUSR2."""
    ack, counts = ack_path(path), counts_path(path)
    served: list[Worker] = []

    def on_switch(signum: int, frame: FrameType | None) -> None:
        text = path.read_text().strip()
        apply(Arm.decode(text))
        if not served:  # found once, at the first switch (before the load starts)
            served.extend(o for o in gc.get_objects() if isinstance(o, Worker))
        ack.write_text(text)

    def on_count(signum: int, frame: FrameType | None) -> None:
        stats = [w.stats for w in served]
        invocations = sum(st["invocations"] for st in stats)
        transactions = sum(st["transactions"] for st in stats)
        partial = counts.with_name(counts.name + ".partial")
        partial.write_text(f"{invocations} {transactions}")
        partial.replace(counts)  # whole or absent for the reader

    signal.signal(signal.SIGUSR1, on_switch)
    signal.signal(signal.SIGUSR2, on_count)


def ack_path(path: Path) -> Path:
    return path.with_name(path.name + ".ack")


def counts_path(path: Path) -> Path:
    return path.with_name(path.name + ".counts")


async def ask_counts(pid: int, path: Path, timeout_s: float = 5.0) -> tuple[int, int]:
    """``(invocations, transactions)`` of the worker `pid` (listening on `path`) now."""
    counts = counts_path(path)
    counts.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout_s
    while not counts.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker {pid} did not report its counts within {timeout_s} s")
        await asyncio.sleep(0.005)
    invocations, transactions = counts.read_text().split()
    return int(invocations), int(transactions)


async def ask_worker(pid: int, path: Path, mode: Arm, timeout_s: float = 5.0) -> None:
    """Switch the worker `pid` (listening on `path`) to `mode`; return once it acknowledged."""
    ack = ack_path(path)
    ack.unlink(missing_ok=True)
    path.write_text(mode.encode())
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout_s
    while not (ack.exists() and ack.read_text().strip() == mode.encode()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker {pid} did not switch to {mode} within {timeout_s} s")
        await asyncio.sleep(0.01)


__all__ = ["SWITCH_ENV", "Arm", "apply", "ask_counts", "ask_worker", "listen"]
