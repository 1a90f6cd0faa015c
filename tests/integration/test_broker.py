"""`tether kafka up/status/down` against the real broker, as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from harness.raw_kafka import create_topic, read_values

from eventstore.kafka.localbroker import log_tail

pytestmark = pytest.mark.kafka

ADDRESS = re.compile(r"127\.0\.0\.1:(\d+)")


def _tether(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("tether", path=str(Path(sys.executable).parent))
    cmd = [exe, "kafka", *args] if exe else [sys.executable, "-m", "eventstore.kafka.localbroker.cli", *args]
    env = {k: v for k, v in os.environ.items() if k != "TETHER_KAFKA_DATA_DIR"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False)


async def _produce_and_consume(bootstrap: str, topic: str, values: list[bytes]) -> list[bytes]:
    await create_topic(bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()
    return await read_values(bootstrap, topic, expected=len(values))


async def test_up_status_produce_consume_down(kafka_libs: Path, tmp_path: Path, namespace: str) -> None:
    data_dir = tmp_path / ".tether" / "kafka"  # the default, relative to the working directory
    up = _tether("up", cwd=tmp_path)
    try:
        assert up.returncode == 0, f"{up.stderr}\n{log_tail(data_dir)}"
        last_line = up.stdout.strip().splitlines()[-1]
        match = ADDRESS.fullmatch(last_line)
        assert match, f"the last stdout line is not a bootstrap address: {up.stdout!r}"
        bootstrap = last_line

        again = _tether("up", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip().splitlines()[-1] == bootstrap  # already running: same broker
        assert "already running" in again.stderr

        status = _tether("status", "--json", cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        assert info["running"] and info["accepting"] and info["bootstrap"] == bootstrap

        values = [f"record-{i}".encode() for i in range(5)]
        seen = await _produce_and_consume(bootstrap, f"{namespace}-cli", values)
        assert seen == values

        down = _tether("down", cwd=tmp_path)
        assert down.returncode == 0, down.stderr
        assert "stopped" in down.stderr
        stopped = _tether("status", cwd=tmp_path)
        assert stopped.returncode == 1
        assert "not running" in stopped.stdout
    except BaseException:
        _tether("down", "--kill", cwd=tmp_path)  # leave no broker behind
        raise


def test_status_and_down_of_an_empty_directory(tmp_path: Path) -> None:
    status = _tether("status", "--data-dir", str(tmp_path / "nothing"), cwd=tmp_path)
    assert status.returncode == 1
    assert "tether kafka up" in status.stdout
    down = _tether("down", "--data-dir", str(tmp_path / "nothing"), cwd=tmp_path)
    assert down.returncode == 0  # nothing to stop is not an error
    assert "no Kafka broker was running" in down.stderr


async def _read_topic(bootstrap: str, topic: str) -> list[tuple[bytes, bytes]]:
    """Everything in partition 0 of `topic`, from the log start to the current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        seen: list[tuple[bytes, bytes]] = []
        while await consumer.position(tp) < end:
            batches = await consumer.getmany(tp, timeout_ms=500)
            seen += [(r.key, r.value) for r in batches.get(tp, [])]
        return seen
    finally:
        await consumer.stop()


async def test_compaction_happens_within_a_test(kafka_bootstrap: str, namespace: str) -> None:
    """The broker's short cleaner back-off lets a test watch a compacted topic get compacted."""
    topic = f"{namespace}-compacted"
    config = {
        "cleanup.policy": "compact",
        "segment.ms": "100",  # roll segments quickly: only closed segments are compacted
        "min.cleanable.dirty.ratio": "0.01",
    }
    await create_topic(kafka_bootstrap, topic, config=config)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in [(b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"b", b"2"), (b"a", b"3")]:
            await producer.send_and_wait(topic, value, key=key)
        await asyncio.sleep(0.2)  # older than segment.ms: the next append rolls a new segment
        await producer.send_and_wait(topic, b"1", key=b"c")
    finally:
        await producer.stop()

    expected = [(b"b", b"2"), (b"a", b"3"), (b"c", b"1")]
    deadline = time.monotonic() + 60
    while (seen := await _read_topic(kafka_bootstrap, topic)) != expected:
        assert time.monotonic() < deadline, f"not compacted after 60 s: {seen}"
        await asyncio.sleep(0.25)
