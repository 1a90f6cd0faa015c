"""Plain aiokafka helpers for the tests that talk to the broker below Tether's log."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def create_topic(bootstrap: str, topic: str, partitions: int = 1, config: dict[str, str] | None = None) -> None:
    """Create `topic` (replication factor 1: the test broker is one node) with its own admin client."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1, topic_configs=config)]
        )
    finally:
        await admin.close()


async def read_values(
    bootstrap: str, topic: str, *, expected: int, isolation: str = "read_uncommitted", linger: float = 0.0
) -> list[bytes]:
    """The values of `topic` from its start, once `expected` arrived (or after 30 s), and what a
    last fetch of `linger` seconds then brings (what should stay hidden would come with the rest)."""
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
        if linger:
            batches = await consumer.getmany(timeout_ms=int(linger * 1000))
            seen += [r.value for records in batches.values() for r in records]
    finally:
        await consumer.stop()
    return seen
