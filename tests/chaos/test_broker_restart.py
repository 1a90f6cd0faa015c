"""Broker restarts lose no committed record and expose no aborted one (SIGTERM and SIGKILL)."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from harness.raw_kafka import create_topic

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _values(prefix: str, count: int) -> list[bytes]:
    return [f"{prefix}-{i}".encode() for i in range(count)]


def _producer(bootstrap: str, transactional_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id)


async def _send_all(producer: AIOKafkaProducer, topic: str, values: list[bytes]) -> None:
    for value in values:
        await producer.send_and_wait(topic, value, key=b"session-1")


async def _read_all(bootstrap: str, topic: str, *, isolation: str, expected: int) -> list[bytes]:
    """Read the topic from the start until `expected` records arrived, then a little longer."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation,
    )
    await consumer.start()
    seen: list[bytes] = []
    try:
        for _ in range(120):
            batches = await consumer.getmany(timeout_ms=250)
            seen += [r.value for records in batches.values() for r in records]
            if len(seen) >= expected:
                break
        # Anything that should not be visible would arrive together with what should.
        batches = await consumer.getmany(timeout_ms=1000)
        seen += [r.value for records in batches.values() for r in records]
    finally:
        await consumer.stop()
    return seen


@pytest.mark.parametrize("kill", [False, True], ids=["SIGTERM", "SIGKILL"])
async def test_restart_keeps_committed_and_hides_aborted(local_broker, namespace: str, kill: bool) -> None:
    bootstrap = local_broker.bootstrap
    topic = f"{namespace}-events"
    txn_id = f"{namespace}-writer"
    await create_topic(bootstrap, topic)

    committed_1, aborted, committed_2, in_flight = (
        _values("committed-1", 5),
        _values("aborted", 4),
        _values("committed-2", 3),
        _values("in-flight", 2),
    )
    producer = _producer(bootstrap, txn_id)
    await producer.start()
    try:
        async with producer.transaction():
            await _send_all(producer, topic, committed_1)
        await producer.begin_transaction()
        await _send_all(producer, topic, aborted)
        await producer.abort_transaction()
        async with producer.transaction():
            await _send_all(producer, topic, committed_2)
        # A writer that dies mid-transaction: its records are in the log, never committed.
        await producer.begin_transaction()
        await _send_all(producer, topic, in_flight)
    finally:
        await producer.stop()

    info = local_broker.restart(kill=kill)
    assert info.bootstrap == bootstrap

    # The next writer with the same transactional id fences the dead one; the coordinator
    # (reloaded from the restarted broker's log) aborts the in-flight transaction.
    committed_3 = _values("committed-3", 2)
    producer = _producer(bootstrap, txn_id)
    await producer.start()
    try:
        async with producer.transaction():
            await _send_all(producer, topic, committed_3)
    finally:
        await producer.stop()

    expected = committed_1 + committed_2 + committed_3
    seen = await _read_all(bootstrap, topic, isolation="read_committed", expected=len(expected))
    assert seen == expected

    # The aborted records did reach the log and survived too; only their markers hide them.
    everything = committed_1 + aborted + committed_2 + in_flight + committed_3
    raw = await _read_all(bootstrap, topic, isolation="read_uncommitted", expected=len(everything))
    assert raw == everything
