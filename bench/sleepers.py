"""W8: memory of sleeping sessions. ``python -m bench.sleepers [--sessions N]``.

A worker subprocess serves a session type whose handler sleeps for ten minutes. The bench sends
one message to each of N sessions, waits until every invocation is suspended (its message moved
into the events log), and samples the worker's RSS before and after: the slope is what one
waiting session costs. It then restarts the worker and measures again after the restore.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click
import psutil
from pydantic import BaseModel

from actors import Client, ObjectContext, Settings, VirtualObject
from bench._harness import console, record
from bench._kafka import kafka_bootstrap


class Nothing(BaseModel):
    pass


class Nap(BaseModel):
    seconds: float


sleeper = VirtualObject("sleeper", state=Nothing)


@sleeper.handler()
async def nap(ctx: ObjectContext[Nothing], req: Nap) -> Nothing:
    await ctx.sleep(req.seconds)
    return Nothing()


@sleeper.handler(kind="shared")
async def ping(ctx: ObjectContext[Nothing], req: Nothing) -> Nothing:
    return Nothing()


def _worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        TETHER_NAMESPACE=settings.namespace,
        TETHER_PARTITIONS=str(settings.partitions),
        TETHER_BACKEND="kafka",
        TETHER_DATA_DIR=str(settings.data_dir),
    )
    env.update(settings.kafka.environment())  # bootstrap, TLS and SASL alike
    cmd = [sys.executable, "-c", "from actors.cli.main import main; main()", "serve", "bench.sleepers:sleeper", "-v"]
    with log.open("ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1])


async def _suspended(log: Path) -> int:
    return log.read_text(errors="replace").count(" waits (timer ")


def _rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


async def _ready(client: Client) -> None:
    for i in range(8):  # one shared call per partition-ish key answers once partitions are restored
        await client.call(ping, f"warm-{i}", Nothing(), timeout=120)


async def run(sessions: int) -> dict[str, Any]:
    async with kafka_bootstrap() as broker:
        work = Path(tempfile.mkdtemp(prefix="tether-w8-"))
        settings = Settings(
            backend="kafka",
            namespace=f"w8{uuid.uuid4().hex[:8]}",
            partitions=4,
            data_dir=work,
            kafka={"bootstrap_servers": broker["bootstrap"]},
        )
        log = work / "worker.log"
        worker = _worker(settings, log)
        try:
            async with Client.connect(settings) as client:
                await _ready(client)
                await asyncio.sleep(1.0)
                base = _rss_mb(worker.pid)
                started = time.monotonic()
                sem = asyncio.Semaphore(512)

                async def send(i: int) -> None:
                    async with sem:
                        await client.send(nap, f"s{i}", Nap(seconds=600))

                await asyncio.gather(*(send(i) for i in range(sessions)))
                while await _suspended(log) < sessions:
                    if time.monotonic() - started > 600:
                        raise RuntimeError("sessions did not all suspend within 10 minutes")
                    await asyncio.sleep(0.5)
                suspend_s = time.monotonic() - started
                await asyncio.sleep(2.0)
                sleeping = _rss_mb(worker.pid)
                console().print(f"{sessions} sleeping sessions: RSS {base:.0f} -> {sleeping:.0f} MiB")
                worker.send_signal(signal.SIGTERM)
                worker.wait(60)
                log.write_text("")
                worker = _worker(settings, log)
                restore_started = time.monotonic()
                await _ready(client)
                restore_s = time.monotonic() - restore_started
                await asyncio.sleep(2.0)
                restored = _rss_mb(worker.pid)
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(60)
                except subprocess.TimeoutExpired:
                    worker.kill()
        per_session = (sleeping - base) * 2**20 / sessions
        return {
            "params": {"sessions": sessions, "sleep_s": 600, "partitions": 4, "backend": "kafka"},
            "median": {
                "sessions": sessions,
                "rss_idle_mb": round(base, 1),
                "rss_sleeping_mb": round(sleeping, 1),
                "rss_after_restore_mb": round(restored, 1),
                "bytes_per_sleeping_session": round(per_session),
                "suspend_all_s": round(suspend_s, 2),
                "restore_s": round(restore_s, 2),
            },
            "runs": [],
            "correct": True,
        }


@click.command()
@click.option("--sessions", default=10_000, show_default=True)
def main(sessions: int) -> None:
    """Measure the worker memory of N sleeping sessions and record it as W8."""
    result = asyncio.run(run(sessions))
    record("tether", {"W8-sleepers": result})
    console().print(result["median"])


if __name__ == "__main__":
    main()
