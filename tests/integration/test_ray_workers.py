"""`tether serve --ray`: Ray actors hosting workers on real Kafka, one killed mid-load."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
import ray
from click.testing import CliRunner
from harness.cli import TETHER
from harness.models import Add
from harness.ray_counter import Total, add

from actors import CallTimeoutError, Client, Settings, UsageError
from actors.cli.main import build
from actors.hosting.ray import NEEDS_KAFKA, RayWorkerPool, WorkerPoolError, WorkerStatus
from eventstore.settings import KafkaSettings

TESTS = Path(__file__).parent.parent
TARGET = "harness.ray_counter:counter"
PARTITIONS = 4
CALLS = 400
KEYS = 50
KILL_AFTER = 150
CONCURRENCY = 16


@pytest.fixture
def ray_pool(kafka_bootstrap: str, namespace: str) -> Iterator[tuple[RayWorkerPool, Settings]]:
    settings = Settings(
        namespace=namespace,
        backend="kafka",
        partitions=PARTITIONS,
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
    )
    pool = RayWorkerPool()
    try:
        pool.start(TARGET, settings, workers=2, ready_timeout=90)
        yield pool, settings
    finally:
        pool.stop()
        if ray.is_initialized():
            ray.shutdown()


async def _until(pool: RayWorkerPool, ok: Callable[[list[WorkerStatus]], bool], timeout: float) -> list[WorkerStatus]:
    """Ping the pool until `ok(statuses)` holds; fail with the last statuses after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = await asyncio.to_thread(pool.status)
        if ok(statuses):
            return statuses
        if time.monotonic() > deadline:
            pytest.fail(f"pool did not get there in {timeout} s: {statuses}")
        await asyncio.sleep(0.5)


def _balanced(statuses: list[WorkerStatus]) -> bool:
    owned = [p for s in statuses for p in s.partitions]
    return all(s.reachable and s.ready and s.partitions for s in statuses) and sorted(owned) == list(range(PARTITIONS))


@pytest.mark.ray
@pytest.mark.kafka
async def test_killed_actor_restarts_and_nothing_is_lost_or_repeated(
    ray_pool: tuple[RayWorkerPool, Settings],
) -> None:
    pool, settings = ray_pool
    namespace = settings.namespace
    before = await _until(pool, _balanced, 60)
    victim = max(before, key=lambda s: len(s.partitions))

    replies: dict[str, list[Total]] = collections.defaultdict(list)
    expected_value: collections.Counter[str] = collections.Counter()
    expected_adds: collections.Counter[str] = collections.Counter()
    done = 0
    killed = asyncio.Event()
    gate = asyncio.Semaphore(CONCURRENCY)

    async with Client.connect(settings) as client:

        async def one(i: int) -> None:
            nonlocal done
            key, n = f"k{i % KEYS}", i % 3 + 1
            async with gate:
                for attempt in range(3):
                    try:
                        # The same idempotency key on a retry: the session answers it once.
                        total = await client.call(add, key, Add(n=n), timeout=40, idempotency_key=f"{namespace}-{i}")
                        break
                    except CallTimeoutError:
                        if attempt == 2:
                            raise
            replies[key].append(total)
            expected_value[key] += n
            expected_adds[key] += 1
            done += 1
            if done == KILL_AFTER:
                await asyncio.to_thread(pool.kill, victim.index)
                killed.set()

        await asyncio.gather(*(one(i) for i in range(CALLS)))
        assert killed.is_set()

        # Every add ran exactly once: each reply saw a distinct count, 1..n, and the state agrees.
        for key, totals in replies.items():
            assert sorted(t.adds for t in totals) == list(range(1, expected_adds[key] + 1)), key
            assert max(t.value for t in totals) == expected_value[key], key
        states = await asyncio.gather(*(client.state("ray_counter", f"k{k}") for k in range(KEYS)))
        for k, view in enumerate(states):
            key = f"k{k}"
            assert view["state"] == {"value": expected_value[key], "adds": expected_adds[key]}, key

    # Ray restarted the victim (a new process), and the group gave both actors partitions again.
    after = await _until(pool, _balanced, 60)
    assert after[victim.index].pid != victim.pid
    assert after[victim.index].restarts >= 1
    assert sum(expected_adds.values()) == CALLS


def test_pool_refuses_the_embedded_log() -> None:
    settings = Settings(backend="embedded")
    with pytest.raises(UsageError, match="--ray needs a Kafka broker"):
        RayWorkerPool().start(TARGET, settings, workers=2)
    assert not ray.is_initialized()


def test_pool_fails_fast_on_a_ray_address_nobody_answers() -> None:
    settings = Settings(backend="kafka", kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9"))
    with pytest.raises(WorkerPoolError, match="no Ray cluster answers at 127.0.0.1:1"):
        RayWorkerPool().start(TARGET, settings, workers=1, address="127.0.0.1:1")
    assert not ray.is_initialized()


def test_cli_ray_without_a_broker_is_a_usage_error() -> None:
    result = CliRunner().invoke(
        build(),
        ["serve", TARGET, "--ray", "--workers", "2"],
        env={"TETHER_KAFKA__BOOTSTRAP_SERVERS": None, "TETHER_BACKEND": None},
    )
    assert result.exit_code == 2, result.output  # a usage error, as every command's (tether --help)
    assert NEEDS_KAFKA in result.output


@contextmanager
def _serving_on_ray(kafka_bootstrap: str, namespace: str) -> Iterator[subprocess.Popen[str]]:
    """`tether serve --ray --workers 2` as a user runs it, without the test session's TETHER_* env;
    killed on leaving if it still runs."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TETHER_", "RAY_ADDRESS"))},
        "TETHER_NAMESPACE": namespace,
        "TETHER_PARTITIONS": "2",
    }
    cmd = [*TETHER, "serve", TARGET, "--ray", "--workers", "2", "-b", kafka_bootstrap, "-v"]
    # cwd: `tether serve` imports MODULE from the current directory, like the user's app.
    proc = subprocess.Popen(cmd, cwd=TESTS, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


@pytest.mark.ray
@pytest.mark.kafka
async def test_cli_serves_on_ray_until_sigterm(kafka_bootstrap: str, namespace: str) -> None:
    """`tether serve --ray` as a user runs it: answers calls, stops on SIGTERM, takes Ray down."""
    ray_processes: list[psutil.Process] = []
    with _serving_on_ray(kafka_bootstrap, namespace) as proc:
        settings = Settings(
            namespace=namespace,
            backend="kafka",
            partitions=2,
            kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        )
        async with Client.connect(settings) as client:
            total = await client.call(add, "cli", Add(n=5), timeout=120)
            assert total == Total(value=5, adds=1)
        ray_processes = psutil.Process(proc.pid).children(recursive=True)
        assert ray_processes, "ray should run under the serving process"
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(proc.communicate, timeout=90)
    assert proc.returncode == 0, output
    assert "stopped 2 Ray workers" in output, output
    # ray.shutdown() took down the local Ray it started (actors, raylet, GCS).
    _, alive = psutil.wait_procs(ray_processes, timeout=30)
    assert not alive, [p.info for p in alive if p.is_running()]


@pytest.mark.ray
@pytest.mark.kafka
async def test_cli_sigterm_while_the_ray_workers_start_stops_them_gracefully(
    kafka_bootstrap: str, namespace: str
) -> None:
    """A SIGTERM after Ray is up but before every worker joined: a graceful stop, not Ray's abort.

    `ray.init` installs a SIGTERM handler of its own that ends the process at once (exit -6
    with an actor half created, seen in a CI run); the serve command's handler now survives it.
    """
    seen: list[str] = []

    def until_ray_started(proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "ray started" in line:
                return

    with _serving_on_ray(kafka_bootstrap, namespace) as proc:
        await asyncio.wait_for(asyncio.to_thread(until_ray_started, proc), timeout=120)
        assert not any("serving" in line for line in seen), "the workers were up already: no start-up window"
        proc.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.to_thread(proc.communicate, timeout=120)
    output = "".join(seen) + rest
    assert proc.returncode == 0, output
    assert "SIGTERM received" not in output, output
    assert "stopped 2 Ray workers" in output, output
