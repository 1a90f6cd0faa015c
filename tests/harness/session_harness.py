"""Helpers shared by the session-runtime tests: polling asserts, a runtime fixture body, raw
log readers (the independent oracle) and worker subprocesses.

Tests import it as ``harness.session_harness``; worker subprocesses get ``tests`` on
``PYTHONPATH`` from `worker_env`.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from actors import Client, RuntimeSettings, Settings, VirtualObject, Worker
from actors.messages import Message
from actors.runtime.deadletters import MESSAGE_ID
from eventstore import EventLog, OutRecord, Record, Topics, open_log, partition_for, unpack

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parents[1]
"""On worker subprocesses' PYTHONPATH, so that ``harness.*`` imports there as here."""
WAIT = 30.0
"""Generous bound of every wait on a loaded 2-core machine; a passing run needs a fraction."""


# -- polling ----------------------------------------------------------------------------------
async def assert_eventually(
    check: Callable[[], Awaitable[T]] | Callable[[], T],
    *,
    timeout: float = WAIT,
    interval: float = 0.05,
) -> T:
    """Call `check` until it stops raising AssertionError; return its result.

    On timeout the last AssertionError propagates, so the failure shows the observed values.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            return result  # type: ignore[return-value]
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval)


async def assert_stays(
    check: Callable[[], Awaitable[Any]] | Callable[[], Any], *, duration: float, interval: float = 0.05
) -> None:
    """`check` must hold (not raise) for `duration` seconds."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        result = check()
        if inspect.isawaitable(result):
            await result
        await asyncio.sleep(interval)


def keys_on_partition(prefix: str, count: int, partitions: int, *, partition: int = 0, obj: str) -> list[str]:
    """`count` session keys of `obj` that all land on `partition`."""
    out: list[str] = []
    i = 0
    while len(out) < count:
        key = f"{prefix}{i}"
        if partition_for(f"{obj}/{key}".encode(), partitions) == partition:
            out.append(key)
        i += 1
    return out


# -- an in-process runtime ---------------------------------------------------------------------
@dataclass
class Runtime:
    """A worker, a client and a raw reader of one namespace, all in this process."""

    backend: str
    settings: Settings
    objects: list[VirtualObject[Any]]
    client: Client
    log: EventLog
    worker: Worker | None = None

    @property
    def topics(self) -> Topics:
        return Topics(self.settings.namespace)

    async def start_worker(self) -> Worker:
        assert self.worker is None
        worker = Worker(self.objects, self.settings)
        await worker.start()
        self.worker = worker
        return worker

    async def stop_worker(self) -> None:
        if self.worker is not None:
            worker, self.worker = self.worker, None
            await worker.stop()

    async def restart_worker(self) -> Worker:
        await self.stop_worker()
        return await self.start_worker()

    async def state(self, obj: str, key: str) -> dict[str, Any]:
        """The session's state as the runtime reports it."""
        result = await self.client.state(obj, key, timeout=WAIT)
        state = result["state"]
        assert isinstance(state, dict)
        return state

    async def processors(self, count: int | None = None) -> dict[int, Any]:
        """The running worker's partition processors, once it has `count` (default: all)."""
        assert self.worker is not None
        worker = self.worker
        wanted = self.settings.partitions if count is None else count

        def ready() -> dict[int, Any]:
            assert len(worker.processors) >= wanted, f"worker owns {sorted(worker.processors)}"
            return dict(worker.processors)

        return await assert_eventually(ready)

    async def records(self, topic: str) -> list[Record]:
        """Every committed record of `topic`, partition by partition."""
        out: list[Record] = []
        for p in range(await self.log.partition_count(topic)):
            out.extend([r async for r in self.log.read(topic, p)])
        return out

    async def dead_letters(self) -> list[Record]:
        return await self.records(self.topics.dlq)

    async def dead_letter(self, message_id: str) -> Record:
        """The dead letter of message `message_id` (waits until it is visible)."""

        async def find() -> Record:
            found = [r for r in await self.dead_letters() if r.header(MESSAGE_ID) == message_id.encode()]
            assert len(found) == 1, f"dead letters of {message_id}: {found}"
            return found[0]

        return await assert_eventually(find)

    async def inbox_record(self, message_id: str) -> Record:
        """The inbox record that carried message `message_id`."""
        for record in await self.records(self.topics.inbox):
            try:
                if Message.decode(record.value).id == message_id:
                    return record
            except Exception:  # poison records in the inbox are not messages
                continue
        raise AssertionError(f"no inbox record carries message {message_id}")

    async def append_raw(self, key: bytes, value: bytes) -> int:
        """Append raw bytes to the inbox partition of `key` (bypassing the client); its partition."""
        p = partition_for(key, self.settings.partitions)
        await self.log.append([OutRecord(self.topics.inbox, p, key, value)])
        return p


def cli_options(settings: Settings) -> list[str]:
    """The `tether` options that point a command at `settings`' namespace, on either backend."""
    if settings.resolved_backend == "kafka":
        assert settings.kafka.bootstrap_servers
        return ["-b", settings.kafka.bootstrap_servers, "-n", settings.namespace]
    return ["--data-dir", str(settings.data_dir), "-n", settings.namespace]


def make_settings(
    backend: str,
    data_dir: Path,
    namespace: str,
    *,
    bootstrap: str | None = None,
    partitions: int = 2,
    runtime: RuntimeSettings | None = None,
) -> Settings:
    kwargs: dict[str, Any] = {
        "namespace": namespace,
        "data_dir": data_dir,
        "partitions": partitions,
        "backend": backend,
        "runtime": runtime or RuntimeSettings(),
    }
    if backend == "kafka":
        assert bootstrap, "the kafka backend needs a bootstrap address"
        kwargs["kafka"] = {"bootstrap_servers": bootstrap, "client_id": f"test-{namespace}"}
    return Settings(**kwargs)


BACKENDS_AND_SCHEMES = [
    "embedded",
    pytest.param("kafka", marks=pytest.mark.kafka),
    pytest.param("kafka-per-worker", marks=pytest.mark.kafka),
]
"""A `backend` parameter: the embedded log, and Kafka under both transaction schemes."""


def backend_and_scheme(backend: str) -> tuple[str, str]:
    """``(backend, kafka.transactions)`` of a `BACKENDS_AND_SCHEMES` value."""
    per_worker = backend.endswith("-per-worker")
    return backend.removesuffix("-per-worker"), "per_worker" if per_worker else "per_partition"


def settings_for(request: pytest.FixtureRequest, backend: str, data_dir: Path, namespace: str, **kw: Any) -> Settings:
    """`make_settings` for `backend`; for Kafka it starts (or reuses) the test broker."""
    bootstrap = request.getfixturevalue("kafka_bootstrap") if backend == "kafka" else None
    return make_settings(backend, data_dir, namespace, bootstrap=bootstrap, **kw)


@asynccontextmanager
async def open_runtime(
    objects: Sequence[VirtualObject[Any]], settings: Settings, *, start_worker: bool = True
) -> AsyncIterator[Runtime]:
    """A started client and raw log (and worker), all closed on exit."""
    client = Client(settings)
    await client.start()
    log = open_log(settings)
    runtime = Runtime(settings.resolved_backend, settings, list(objects), client, log)
    try:
        await log.start()
        if start_worker:
            await runtime.start_worker()
        yield runtime
    finally:
        try:
            await runtime.stop_worker()
        finally:
            try:
                await client.close()
            finally:
                await log.close()


# -- the independent oracle ----------------------------------------------------------------------
@dataclass
class Invocations:
    """Finished invocations and journaled steps as the raw events topic holds them."""

    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Message id -> its done entry (plus "session": the record key)."""
    done_by_session: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    steps: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    duplicate_done: list[str] = field(default_factory=list)
    duplicate_steps: list[tuple[str, int]] = field(default_factory=list)


async def read_invocations(log: EventLog, topics: Topics) -> Invocations:
    """Read the events topic with the log API only (no runtime code) and index its entries."""
    out = Invocations()
    for p in range(await log.partition_count(topics.events)):
        async for record in log.read(topics.events, p):
            if record.value is None or record.key is None:
                continue
            entry = unpack(record.value)
            session = record.key.decode()
            if entry["k"] == "done":
                message_id = str(entry["i"])
                if message_id in out.done:
                    out.duplicate_done.append(message_id)
                entry["session"] = session
                out.done[message_id] = entry
                out.done_by_session.setdefault(session, []).append(entry)
            elif entry["k"] == "step":
                step = (str(entry["i"]), int(entry["n"]))
                if step in out.steps:
                    out.duplicate_steps.append(step)
                out.steps[step] = entry
    return out


# -- worker subprocesses ---------------------------------------------------------------------
def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `tether serve` subprocess for `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.update(
        {
            "TETHER_NAMESPACE": settings.namespace,
            "TETHER_DATA_DIR": str(settings.data_dir),
            "TETHER_PARTITIONS": str(settings.partitions),
            "TETHER_BACKEND": settings.resolved_backend,
            "TETHER_RUNTIME__CHECKPOINT_EVERY": str(settings.runtime.checkpoint_every),
            "TETHER_RUNTIME__MAX_RESIDENT_SESSIONS": str(settings.runtime.max_resident_sessions),
            "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")]),
        }
    )
    if settings.kafka.bootstrap_servers:
        env["TETHER_KAFKA__BOOTSTRAP_SERVERS"] = settings.kafka.bootstrap_servers
        env["TETHER_KAFKA__SESSION_TIMEOUT_MS"] = str(settings.kafka.session_timeout_ms)
        env["TETHER_KAFKA__HEARTBEAT_INTERVAL_MS"] = str(settings.kafka.heartbeat_interval_ms)
    env.update(extra)
    return env


class WorkerProcess:
    """One `tether serve` subprocess at a time; every (re)start logs to a new file."""

    def __init__(
        self, target: str, env: dict[str, str], log_dir: Path, name: str = "worker", args: Sequence[str] = ()
    ) -> None:
        self.target = target
        self.args = list(args)
        self.env = env
        self.log_dir = log_dir
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_path: Path | None = None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        self.log_path = self.log_dir / f"{self.name}-{self.starts}.log"
        cmd = [
            sys.executable,
            "-c",
            "from actors.cli.main import main; main()",
            "serve",
            self.target,
            os.environ.get("TETHER_TEST_WORKER_VERBOSITY", "-v"),
            *self.args,
        ]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, env=self.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def restored_partitions(self) -> int:
        """How many partition restores this instance logged (it owns partitions once > 0)."""
        return self.output().count(" restored: ")

    def assert_restored(self, more_than: int = 0, why: str = "the worker has not restored a partition yet") -> None:
        """It runs and has logged more than `more_than` partition restores (with 0: it owns partitions).

        For `assert_eventually`; `why` is the failure message (a takeover, a join, a restart).
        """
        assert self.alive(), self.output()[-3000:]
        assert self.restored_partitions() > more_than, why

    def kill(self) -> None:
        """SIGKILL by PID, and reap."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def kill_and_restart(self, meanwhile: Callable[[], object] | None = None) -> int:
        """SIGKILL, then a new process (`meanwhile` runs in between, while none runs: to open a gate
        the old one waited at); returns the PID of the killed one."""
        killed = self.pid
        self.kill()
        if meanwhile is not None:
            meanwhile()
        self.start()
        return killed

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not stop within {timeout} s of SIGTERM") from None

    def cleanup(self) -> None:
        """Kill the process if it still runs (test teardown)."""
        self.kill()

    def stop(self) -> None:
        """SIGTERM and assert a clean exit (exit code 0, its output in the message); killed in any case."""
        try:
            assert self.terminate() == 0, self.output()
        finally:
            self.cleanup()

    def logs(self, tail: int | None = 6000) -> str:
        """Every log file of this worker (the last `tail` characters of each)."""
        parts = []
        for path in sorted(self.log_dir.glob(f"{self.name}-*.log")):
            text = path.read_text(errors="replace")
            parts.append(f"--- {path.name} ---\n" + (text[-tail:] if tail else text))
        return "\n".join(parts)
