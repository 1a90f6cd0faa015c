"""The broker's PID file, our JVM told apart from other processes, the short-lived tools run."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

MAIN_CLASS = "kafka.Kafka"
"""The broker's main class, as it appears on the JVM's command line."""

TAG_PROPERTY = "tether.kafka.dataDir"
"""A system property naming the data directory, put on the command line to recognise the JVM."""

_CREATE_TIME_SLACK = 1.0
"""Seconds of disagreement tolerated between a recorded and an observed process start time."""


def run_tool(cmd: Sequence[str], *, cwd: Path, timeout: float, **options: Any) -> subprocess.CompletedProcess[str]:
    """Run a short-lived tool (kafka-storage, openssl, the JVM launcher) to its end.

    It gets no input; its output is captured as text (undecodable bytes replaced); its exit code
    is the caller's to check.

    Raises:
        subprocess.TimeoutExpired: It ran longer than `timeout` seconds (it is killed).
    """
    return subprocess.run(
        list(cmd),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
        **options,
    )


@dataclass(frozen=True)
class PidRecord:
    """What the PID file says about the running broker."""

    pid: int
    """The JVM's process id."""
    create_time: float
    """The JVM's start time (seconds since the epoch), which tells a reused PID apart."""


def broker_tag(data_dir: Path) -> str:
    """Return the `-D` option that marks the JVM serving `data_dir`."""
    return f"-D{TAG_PROPERTY}={data_dir.resolve()}"


def is_broker_cmdline(cmdline: Sequence[str], data_dir: Path) -> bool:
    """Whether a command line is that of a Kafka broker JVM started for `data_dir`."""
    if not cmdline:
        return False
    program = os.path.basename(cmdline[0])
    return program.startswith("java") and MAIN_CLASS in cmdline and broker_tag(data_dir) in cmdline


def write_pid_file(path: Path, record: PidRecord) -> None:
    """Write the PID file atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(record)) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_pid_file(path: Path) -> PidRecord | None:
    """Read the PID file; None when it is missing or unreadable."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return PidRecord(pid=int(raw["pid"]), create_time=float(raw["create_time"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def process_create_time(pid: int) -> float:
    """Return a process's start time as psutil reports it."""
    return float(psutil.Process(pid).create_time())


def find_broker(record: PidRecord, data_dir: Path) -> Any | None:
    """Return the live `psutil.Process` the record names, if it really is our broker's JVM.

    A PID alone is not trusted: the process must have started when the record says, must not
    be a zombie, and must be a `kafka.Kafka` JVM tagged with this data directory. This keeps a
    stale PID file from ever getting an unrelated process signalled.
    """
    try:
        proc = psutil.Process(record.pid)
        if abs(float(proc.create_time()) - record.create_time) > _CREATE_TIME_SLACK:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if not is_broker_cmdline(proc.cmdline(), data_dir):
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return proc


def is_gone(proc: Any) -> bool:
    """Whether a process has exited and released its resources (ports, files).

    A zombie whose parent has not collected it yet counts as exited. But a JVM's main thread
    turns zombie while its other threads are still being torn down and the process's sockets
    are still open, so only a zombie with no other thread left counts.
    """
    try:
        if proc.status() != psutil.STATUS_ZOMBIE:
            return False
        return int(proc.num_threads()) <= 1
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True


def wait_gone(proc: Any, timeout: float) -> bool:
    """Wait up to `timeout` seconds for a process to exit; return whether it did."""
    deadline = time.monotonic() + timeout
    while True:
        if is_gone(proc):
            _reap(proc.pid)
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def send_signal(proc: Any, sig: signal.Signals) -> None:
    """Signal a process, ignoring that it may have exited meanwhile."""
    try:
        proc.send_signal(sig)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        pass


def _reap(pid: int) -> None:
    """Collect the exit status if the process happens to be our child (no zombie left)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created if missing) for the block."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
