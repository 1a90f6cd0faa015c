"""The aiokafka clients of the raw exactly-once baselines (`raw_kafka`, `raw_eos`), configured once.

Each input batch goes out in one transaction of an idempotent producer (acks=all, no linger);
the input is read committed-only from the start, with offsets committed in that transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError


def transactional_producers(
    bootstrap: str, id_prefix: str, ids: Iterable[int], **options: Any
) -> dict[int, AIOKafkaProducer]:
    """One transactional producer per id, its transactional id ``{id_prefix}-{id}`` (not started)."""
    return {
        i: AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            transactional_id=f"{id_prefix}-{i}",
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            **options,
        )
        for i in ids
    }


def committed_reader(*topics: str, bootstrap: str, group_id: str | None, **options: Any) -> AIOKafkaConsumer:
    """A consumer of committed records only, from the earliest offset, committing nothing itself."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **options,
    )


@contextlib.asynccontextmanager
async def scratch_topics(
    bootstrap: str, prefix: str, suffixes: tuple[str, str], partitions: int
) -> AsyncIterator[tuple[str, str, str]]:
    """Two new topics for one run, ``{ns}-{suffix}`` in a fresh namespace ``{prefix}-<random>``:
    created, each partition's leader ready, deleted on leaving. Yields (ns, first, second)."""
    ns = f"{prefix}-{uuid.uuid4().hex[:10]}"
    names = [f"{ns}-{suffix}" for suffix in suffixes]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names])
        for name in names:
            await wait_for_partitions(bootstrap, name, partitions)
        yield ns, names[0], names[1]
    finally:
        with contextlib.suppress(Exception):
            await admin.delete_topics(names)
        await admin.close()


async def wait_for_partitions(bootstrap: str, topic: str, partitions: int) -> None:
    """Wait until every partition of a new topic has a leader that serves requests.

    Seeing the partitions in metadata is not enough: right after creation the broker may still
    answer NotLeaderForPartition, and the produce phase would then time retries, not Kafka.
    A ListOffsets request to each partition succeeds only once its leader is ready.
    """
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await probe.start()
    # Until the new topic reaches the metadata cache, aiokafka logs "Topic ... not found" at
    # ERROR on every probe; that is the expected state here, not a failure.
    cluster_log = logging.getLogger("aiokafka.cluster")
    level = cluster_log.level
    cluster_log.setLevel(logging.CRITICAL)
    try:
        deadline = time.monotonic() + 30
        while True:
            await probe._client.force_metadata_update()  # noqa: SLF001 - no public refresh
            parts = probe.partitions_for_topic(topic)
            if parts and len(parts) == partitions:
                try:
                    await probe.end_offsets([TopicPartition(topic, p) for p in parts])
                    return
                except KafkaError:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic}: {partitions} partitions not ready after 30 s")
            await asyncio.sleep(0.1)
    finally:
        cluster_log.setLevel(level)
        await probe.stop()
