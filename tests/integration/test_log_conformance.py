"""The `EventLog` contract (`eventstore.conformance.LogContract`) run against both backends,
and the tests that only one backend has.

Every contract test gets a fresh log: the embedded one in `tmp_path`, the Kafka one on the test
broker with topics under the test's unique namespace.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import EmbeddedLog, EventLog, KafkaSettings, LogUnavailableError, OutRecord, TopicSpec
from eventstore.conformance import LogContract, read_all
from eventstore.kafka import KafkaLog


class TestEmbeddedLog(LogContract):
    @pytest.fixture
    def log_factory(self, tmp_path: Path) -> Callable[[], EventLog]:
        return lambda: EmbeddedLog(tmp_path / "log")


@pytest.mark.kafka
class TestKafkaLog(LogContract):
    @pytest.fixture
    def log_factory(self, kafka_bootstrap: str) -> Callable[[], EventLog]:
        return lambda: KafkaLog(KafkaSettings(bootstrap_servers=kafka_bootstrap, client_id="conformance"))

    @pytest.fixture
    def namespace(self, namespace: str) -> str:
        return namespace  # the suite's own (one per test)


async def test_kafka_start_fails_fast_on_closed_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket is closed
    kafka = KafkaLog(KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}"))
    started = time.monotonic()
    with pytest.raises(LogUnavailableError, match=f"127.0.0.1:{port}"):
        await asyncio.wait_for(kafka.start(), 15)
    assert time.monotonic() - started < 15
    await kafka.close()


async def test_embedded_start_fails_on_unusable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    embedded = EmbeddedLog(blocker / "log")
    with pytest.raises(LogUnavailableError, match="cannot open the embedded log"):
        await embedded.start()
    await embedded.close()


@pytest.mark.kafka
async def test_kafka_read_starts_at_oldest_kept_record_when_start_is_gone(kafka_bootstrap: str, namespace: str) -> None:
    """Retention may delete the head of a partition; reading from 0 must not skip to the end."""
    from aiokafka import TopicPartition as KafkaTP
    from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

    kafka = KafkaLog(KafkaSettings(bootstrap_servers=kafka_bootstrap))
    await kafka.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        name = f"{namespace}.retained"
        await kafka.create_topics([TopicSpec(name, 1)])
        await kafka.append([OutRecord(name, 0, b"k", b"%d" % i) for i in range(5)])
        await admin.delete_records({KafkaTP(name, 0): RecordsToDelete(before_offset=3)})
        assert [(r.offset, r.value) for r in await read_all(kafka, name, 0)] == [
            (3, b"3"),
            (4, b"4"),
        ]
    finally:
        await admin.close()
        await kafka.close()
