"""Broker restarts lose no committed record and expose no aborted one (SIGTERM and SIGKILL)."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer
from harness.raw_kafka import create_topic, read_values

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _values(prefix: str, count: int) -> list[bytes]:
    return [f"{prefix}-{i}".encode() for i in range(count)]


def _producer(bootstrap: str, transactional_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id)


async def _send_all(producer: AIOKafkaProducer, topic: str, values: list[bytes]) -> None:
    for value in values:
        await producer.send_and_wait(topic, value, key=b"session-1")


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
    seen = await read_values(bootstrap, topic, isolation="read_committed", expected=len(expected), linger=1.0)
    assert seen == expected

    # The aborted records did reach the log and survived too; only their markers hide them.
    everything = committed_1 + aborted + committed_2 + in_flight + committed_3
    raw = await read_values(bootstrap, topic, isolation="read_uncommitted", expected=len(everything), linger=1.0)
    assert raw == everything
