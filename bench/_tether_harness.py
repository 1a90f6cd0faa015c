"""What Tether's workloads share: one broker for the whole run, worker subprocesses, namespaces,
and readers of the log that tell when a workload is done and whether it was done right.

Nothing here measures; `bench.tether_workloads` does, with `bench._harness`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from actors import RuntimeSettings, Settings
from bench._harness import BENCH_DIR, REPO_ROOT, console
from bench._harness.tracing import TRACING_ENV
from bench.observability_switch import SWITCH_ENV
from eventstore import EventLog, KafkaSettings, Record, TopicPartition, Topics, open_log, unpack
from eventstore.kafka import client_kwargs
from eventstore.settings import REVEAL_SECRETS

METRICS_PORT_ENV = "TETHER_BENCH_METRICS_PORT"
"""Set to a port to run the bench's worker subprocesses with metrics on (served on it and the
15 ports above it: each subprocess takes the next, so workers of one workload never collide)."""
_METRICS_OFFSETS = itertools.count()

PARTITIONS = 8
"""Partitions of every Tether namespace here: as many as the raw pipeline's topics."""
LOG_DIR = BENCH_DIR / ".tether" / "logs"
"""Worker logs of the last run (gitignored)."""

_BROKER: dict[str, Any] | None = None


# --------------------------------------------------------------------------------------------
# The broker, shared by every Tether workload of one `python -m bench` invocation
# --------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def lifespan(opts: Any) -> AsyncIterator[None]:
    """Start (or find) the broker once for all of Tether's workloads of this invocation."""
    global _BROKER
    from bench._kafka import kafka_bootstrap

    # Fresh topics answer NotLeaderForPartition for a moment, which aiokafka logs at ERROR and
    # retries; the workers' own logs (bench/.tether/logs) keep everything.
    kafka_logger = logging.getLogger("aiokafka")
    level = kafka_logger.level
    kafka_logger.setLevel(logging.CRITICAL)
    try:
        async with kafka_bootstrap() as broker:
            _BROKER = broker
            try:
                yield
            finally:
                _BROKER = None
    finally:
        kafka_logger.setLevel(level)


@contextlib.asynccontextmanager
async def use_broker() -> AsyncIterator[dict[str, Any]]:
    """The shared broker, or one started for this workload alone when there is none."""
    if _BROKER is not None:
        yield _BROKER
        return
    from bench._kafka import kafka_bootstrap

    async with kafka_bootstrap() as broker:
        yield broker


def new_namespace(workload: str) -> str:
    """A fresh namespace: nothing of an earlier run is visible in it."""
    clean = "".join(c if c.isalnum() else "-" for c in workload.lower())
    return f"bench-{clean}-{uuid.uuid4().hex[:8]}"


def kafka_connection(bootstrap: str) -> KafkaSettings:
    """How to reach `bootstrap`: TLS and SASL from the ``TETHER_KAFKA__*`` variables, if any.

    Tether's own workloads connect as an operator configured them, secured cluster or not;
    the raw-aiokafka baselines (`bench/raw_kafka.py`) speak PLAINTEXT to the local broker only.
    """
    return KafkaSettings.model_validate(
        {**Settings().kafka.model_dump(context={REVEAL_SECRETS: True}), "bootstrap_servers": bootstrap}
    )


def kafka_settings(bootstrap: str, namespace: str, runtime: RuntimeSettings | None = None) -> Settings:
    """Settings of a Kafka-backed namespace with `PARTITIONS` partitions."""
    return Settings(
        backend="kafka",
        namespace=namespace,
        partitions=PARTITIONS,
        kafka=kafka_connection(bootstrap),
        runtime=runtime or RuntimeSettings(),
    )


def embedded_settings(data_dir: Path, namespace: str) -> Settings:
    """Settings of an embedded (SQLite) namespace in `data_dir`."""
    return Settings(backend="embedded", namespace=namespace, partitions=PARTITIONS, data_dir=data_dir)


async def delete_namespace(bootstrap: str, namespace: str) -> None:
    """Delete a namespace's topics (best effort), so the broker does not grow run after run."""
    from aiokafka.admin import AIOKafkaAdminClient

    topics = Topics(namespace)
    names = [topics.inbox, topics.events, topics.snapshots, topics.replies, topics.dlq, topics.control]
    admin = AIOKafkaAdminClient(**client_kwargs(kafka_connection(bootstrap)))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            await admin.delete_topics(doomed)
    except Exception as exc:  # noqa: BLE001 - cleanup must not fail a measured workload
        console().print(f"[dim]could not delete the topics of {namespace}: {exc!r}[/dim]")
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def group_members(bootstrap: str, group: str) -> tuple[str, int]:
    """(state, member count) of a consumer group, e.g. ("Stable", 2)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_kwargs(kafka_connection(bootstrap)))
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    for response in responses:
        for g in response.groups:
            # DescribeGroups v0+: (error_code, group_id, state, protocol_type, protocol, members, ...)
            return str(g[2]), len(g[5])
    return "Dead", 0


# --------------------------------------------------------------------------------------------
# Worker subprocesses: `tether serve` exactly as an operator runs it
# --------------------------------------------------------------------------------------------


_STOPPED = re.compile(r"partition \d+ stopped: (\d+) invocations in (\d+) transactions")


def invocations_per_transaction(workers: list[WorkerProcess]) -> float | None:
    """Invocations per transaction over the stopped workers' lifetimes, from their logs (each
    processor logs its counts when it stops); None if none logged any."""
    invocations = transactions = 0
    for worker in workers:
        for match in _STOPPED.finditer(worker.log_text()):
            invocations += int(match.group(1))
            transactions += int(match.group(2))
    return invocations / transactions if transactions and invocations else None  # (Ray actors log elsewhere)


def runtime_overrides() -> dict[str, str]:
    """The ``TETHER_RUNTIME__*`` variables of the bench's environment: they reach every worker
    it starts (the other ``TETHER_*`` ones do not: the bench sets the backend, namespace and
    Kafka settings itself), and the results record them (`machine_info`)."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("TETHER_RUNTIME__")}


class WorkerProcess:
    """``tether serve MODULE:OBJECT -b BOOTSTRAP -n NAMESPACE -v [--ray --workers N]``.

    Its output goes to ``bench/.tether/logs/<name>.log``. `stop` sends SIGTERM (the worker
    commits what finished and leaves the group), then SIGKILL to it and every process it
    started, by PID, if it is not gone in time.
    """

    def __init__(
        self,
        target: str,
        settings: Settings,
        *,
        name: str,
        ray_workers: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.target = target
        self.settings = settings
        self.name = name
        self.ray_workers = ray_workers
        self.extra_env = env or {}
        self.log_path = LOG_DIR / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._seen: dict[int, psutil.Process] = {}

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> WorkerProcess:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        env.update(
            {
                "TETHER_BACKEND": "kafka",
                "TETHER_NAMESPACE": self.settings.namespace,
                "TETHER_PARTITIONS": str(self.settings.partitions),
                **self.settings.kafka.environment(),  # bootstrap, TLS and SASL alike
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            }
        )
        env.update(runtime_overrides())  # e.g. TETHER_RUNTIME__COMMIT_INTERVAL for a paired run
        metrics_port = os.environ.get(METRICS_PORT_ENV)
        if metrics_port:  # measure the cost of metrics: the worker records and serves them
            env["TETHER_RUNTIME__METRICS_PORT"] = str(int(metrics_port) + next(_METRICS_OFFSETS) % 16)
        if os.environ.get(TRACING_ENV):  # and traces (bench._harness.tracing)
            env[TRACING_ENV] = "1"
        if os.environ.get(SWITCH_ENV):  # switched on and off while it runs (bench.observability_switch)
            env[SWITCH_ENV] = os.environ[SWITCH_ENV]
        env.update(self.extra_env)
        cmd = [sys.executable, "-c", "from actors.cli.main import main; main()", "serve", self.target, "-v"]
        if self.ray_workers:
            cmd += ["--ray", "--workers", str(self.ray_workers)]
        self._log_file = self.log_path.open("wb")
        self._proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=self._log_file, stderr=subprocess.STDOUT)
        return self

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def check(self) -> None:
        """Raise if the worker exited (with the tail of its log)."""
        if self._proc is not None and self._proc.poll() is not None:
            tail = "\n".join(self.log_text().splitlines()[-15:])
            raise RuntimeError(f"worker {self.name} exited with {self._proc.returncode}:\n{tail}")

    def _remember_children(self) -> None:
        try:
            root = psutil.Process(self.pid)
            for child in root.children(recursive=True):
                self._seen.setdefault(child.pid, child)
        except psutil.Error:
            pass

    async def stop(self, timeout: float = 60.0) -> None:
        proc = self._proc
        if proc is None:
            return
        self._remember_children()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                self._remember_children()
            if proc.poll() is None:
                console().print(f"[yellow]worker {self.name} did not stop in {timeout:.0f} s: SIGKILL[/yellow]")
                proc.kill()
                proc.wait(10)
        # Whatever it started (Ray's processes) and left behind goes too, by PID.
        for child in self._seen.values():
            with contextlib.suppress(psutil.Error):
                if child.is_running():
                    child.kill()
        self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


@contextlib.asynccontextmanager
async def running_workers(workers: Sequence[WorkerProcess]) -> AsyncIterator[Sequence[WorkerProcess]]:
    """Start the workers; stop them on the way out, also on errors."""
    try:
        for w in workers:
            w.start()
        yield workers
    finally:
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)


async def wait_for_group(
    bootstrap: str, group: str, members: int, workers: Sequence[WorkerProcess], timeout: float
) -> None:
    """Wait until the group is Stable with `members` members (each worker joined)."""
    deadline = time.monotonic() + timeout
    state, count = "?", 0
    while time.monotonic() < deadline:
        for w in workers:
            w.check()
        with contextlib.suppress(Exception):
            state, count = await group_members(bootstrap, group)
            if state == "Stable" and count == members:
                return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"group {group}: {state} with {count} of {members} members after {timeout:.0f} s")


# --------------------------------------------------------------------------------------------
# Reading the log: progress, completion time and the correctness oracle
# --------------------------------------------------------------------------------------------


@dataclass
class InboxProgress:
    committed: int
    """Sum over partitions of the group's committed inbox offset."""
    end: int
    """Sum over partitions of the inbox end offset."""

    @property
    def done(self) -> bool:
        return self.committed >= self.end


async def inbox_progress(log: EventLog, topics: Topics, partitions: int) -> InboxProgress:
    """How far the workers' committed offsets are behind the inbox's end offsets."""
    group = topics.group()
    ends = await asyncio.gather(*(log.end_offset(topics.inbox, p) for p in range(partitions)))
    committed = await asyncio.gather(
        *(log.committed(group, TopicPartition(topics.inbox, p)) for p in range(partitions))
    )
    return InboxProgress(sum(c or 0 for c in committed), sum(ends))


async def last_record_ms(log: EventLog, topic: str, partitions: int) -> int:
    """The newest record timestamp (ms) over the partitions of `topic`: when its last
    transaction was written, i.e. the last commit of work (offset-only commits write no record)."""
    newest = 0
    for p in range(partitions):
        end = await log.end_offset(topic, p)
        async for record in log.read(topic, p, max(0, end - 64)):
            newest = max(newest, record.timestamp_ms)
    return newest


@dataclass
class DoneEntries:
    """Per session: what the events topic says finished (the independent oracle)."""

    count: dict[bytes, int]
    """Done entries per session key."""
    max_version: dict[bytes, int]
    """Highest session version per session key."""
    ids: int
    """Done entries in total."""
    distinct_ids: int
    """Distinct message ids among them (fewer means a message took effect twice)."""
    errors: int
    """Done entries that record a failure."""
    events: dict[str, int]
    """Event envelopes by type name."""
    last_ms: int
    """Newest record timestamp."""


async def read_done(log: EventLog, topic: str, partitions: int) -> DoneEntries:
    """Read every done entry of the events topic (read_committed)."""
    count: dict[bytes, int] = {}
    max_version: dict[bytes, int] = {}
    events: dict[str, int] = {}
    ids: set[str] = set()
    total = errors = newest = 0
    for p in range(partitions):
        async for record in log.read(topic, p):
            newest = max(newest, record.timestamp_ms)
            if record.key is None or record.value is None:
                continue
            entry = unpack(record.value)
            if entry.get("k") != "done":
                continue
            key = record.key
            total += 1
            ids.add(str(entry["i"]))
            count[key] = count.get(key, 0) + 1
            max_version[key] = max(max_version.get(key, 0), int(entry["sv"]))
            if "err" in entry:
                errors += 1
            for envelope in entry.get("ev", ()):
                events[envelope["t"]] = events.get(envelope["t"], 0) + 1
    return DoneEntries(count, max_version, total, len(ids), errors, events, newest)


@contextlib.asynccontextmanager
async def reader(settings: Settings) -> AsyncIterator[EventLog]:
    """A log instance of its own (its reads never wait for another instance's writes)."""
    log = open_log(settings)
    await log.start()
    try:
        yield log
    finally:
        await log.close()


@contextlib.contextmanager
def environment(values: dict[str, str | None]) -> Iterator[None]:
    """This process's environment with `values` set (None: removed) while the block runs; the
    workers started in it inherit them; restored after."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        _update_environment(values)
        yield
    finally:
        _update_environment(saved)


def _update_environment(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def broker_pids(broker: dict[str, Any]) -> dict[str, int]:
    """``{"broker": pid}`` when the bench started the broker (else it is not ours to sample)."""
    pid = broker.get("pid")
    return {"broker": int(pid)} if pid else {}


async def tail_done(
    log: EventLog,
    topic: str,
    partitions: int,
    on_entry: Callable[[Record, dict[str, Any]], None],
    until: Callable[[], bool],
    timeout_s: float,
    workers: Sequence[WorkerProcess] = (),
) -> None:
    """Follow the events topic from the start, calling `on_entry` for each done entry, until
    `until()` holds (read_committed: an entry is seen only once its transaction committed)."""
    consumer = await log.consumer(topic, partitions={p: 0 for p in range(partitions)})
    deadline = time.monotonic() + timeout_s
    try:
        while not until():
            if time.monotonic() > deadline:
                raise TimeoutError(f"tailing {topic}: not done after {timeout_s:.0f} s")
            for w in workers:
                w.check()
            for record in await consumer.fetch(0.2, max_records=5000):
                if record.value is None:
                    continue
                entry = unpack(record.value)
                if entry.get("k") == "done":
                    on_entry(record, entry)
    finally:
        await consumer.close()
