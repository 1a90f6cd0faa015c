"""`KafkaLog.group_writer`: one producer whose offset commits carry the aiokafka consumer's group
metadata, so the broker fences it by the group's generation (KIP-447), not by transactional id."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from eventstore import ProducerFencedError, UsageError
from eventstore.kafka import KafkaLog
from eventstore.kafka.group_writer import KafkaGroupWriter
from eventstore.records import OutRecord, TopicPartition
from eventstore.settings import KafkaSettings
from eventstore.topics import TopicSpec

pytestmark = [pytest.mark.kafka, pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")]


class _Listener:
    def __init__(self) -> None:
        self.owned: set[int] = set()

    async def on_assigned(self, partitions: set[int]) -> None:
        self.owned |= partitions

    async def on_revoked(self, partitions: set[int]) -> None:
        self.owned -= partitions


async def _until(predicate: object, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def _fetching(consumer: object) -> None:
    while True:
        await consumer.fetch(0.1)  # type: ignore[attr-defined]


async def test_a_stale_generation_fences_the_group_writer(kafka_bootstrap: str) -> None:
    name = f"gw-{uuid.uuid4().hex[:8]}"
    src, out, group = f"{name}-in", f"{name}-out", f"{name}-g"
    log = KafkaLog(KafkaSettings(bootstrap_servers=kafka_bootstrap, session_timeout_ms=6000))
    await log.start()
    tasks: list[asyncio.Task[None]] = []
    consumers = []
    writers: list[KafkaGroupWriter] = []
    try:
        await log.create_topics([TopicSpec(src, 2), TopicSpec(out, 2)])
        first_owned = _Listener()
        first = await log.consumer(src, group_id=group, listener=first_owned)
        consumers.append(first)
        tasks.append(asyncio.create_task(_fetching(first)))
        await _until(lambda: first_owned.owned == {0, 1})
        live = await log.group_writer(f"{name}-w", first)
        writers.append(live)
        with pytest.raises(UsageError, match="must commit offsets"):
            await live.commit([OutRecord(out, 0, b"k", b"no offsets")])
        await live.commit([OutRecord(out, 0, b"k", b"one")], group_id=group, offsets={TopicPartition(src, 0): 1})

        # The writer of a zombie: it keeps the membership the first consumer had before the
        # group moved on.
        stale_metadata = first.group_metadata()
        zombie = await KafkaGroupWriter.open(
            {"bootstrap_servers": kafka_bootstrap}, f"{name}-z", lambda: stale_metadata
        )
        writers.append(zombie)
        second_owned = _Listener()
        second = await log.consumer(src, group_id=group, listener=second_owned)
        consumers.append(second)
        tasks.append(asyncio.create_task(_fetching(second)))
        await _until(lambda: len(second_owned.owned) == 1 and len(first_owned.owned) == 1)
        assert first.group_metadata().generation > stale_metadata.generation

        with pytest.raises(ProducerFencedError, match="group moved on"):
            await zombie.commit(
                [OutRecord(out, 1, b"k", b"zombie")], group_id=group, offsets={TopicPartition(src, 1): 2}
            )
        # The live member's writer, with the current generation, goes on.
        owned = next(iter(first_owned.owned))
        await live.commit(
            [OutRecord(out, owned, b"k", b"two")], group_id=group, offsets={TopicPartition(src, owned): 1}
        )

        values = [r.value for p in (0, 1) async for r in log.read(out, p)]
        assert sorted(values) == [b"one", b"two"]
        assert await log.committed(group, TopicPartition(src, 1)) != 2
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in writers:
            await writer.close()
        for consumer in consumers:
            await consumer.close()
        await log.close()
