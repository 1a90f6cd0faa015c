"""`KafkaLog.group_writer`: one aiokafka producer whose offset commits speak TxnOffsetCommit v3
with the consumer's group metadata, so the broker fences it by the group's generation (KIP-447),
not by transactional id; commits made meanwhile share a transaction."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from eventstore import ProducerFencedError, UsageError
from eventstore.kafka import KafkaLog
from eventstore.kafka.group_writer import GroupCommitWriter
from eventstore.kafka.kip447 import GroupMetadata
from eventstore.records import OutRecord, TopicPartition
from eventstore.settings import KafkaSettings
from eventstore.topics import TopicSpec

pytestmark = [pytest.mark.kafka]


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
    writers: list[GroupCommitWriter] = []
    try:
        await log.create_topics([TopicSpec(src, 2), TopicSpec(out, 2)])
        first_owned = _Listener()
        first = await log.consumer(src, group_id=group, listener=first_owned)
        consumers.append(first)
        tasks.append(asyncio.create_task(_fetching(first)))
        await _until(lambda: first_owned.owned == {0, 1})
        live = await log.group_writer(f"{name}-w", first.group_metadata)
        writers.append(live)
        with pytest.raises(UsageError, match="must commit offsets"):
            await live.commit([OutRecord(out, 0, b"k", b"no offsets")])
        await live.commit([OutRecord(out, 0, b"k", b"one")], group_id=group, offsets={TopicPartition(src, 0): 1})

        # The writer of a zombie: it keeps the membership the first consumer had before the
        # group moved on.
        stale_metadata = first.group_metadata()
        zombie = await log.group_writer(f"{name}-z", lambda: stale_metadata)
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
        # The refused transaction is aborted on the broker as well (an EndTxn, not only in the
        # client): nothing stays open on the partition until the transaction timeout (60 s).
        async with asyncio.timeout(15):
            await log.settle(out, 1)
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


async def test_concurrent_commits_share_transactions_and_a_member_without_membership_commits_nothing(
    kafka_bootstrap: str,
) -> None:
    name = f"gw-{uuid.uuid4().hex[:8]}"
    src, out, group = f"{name}-in", f"{name}-out", f"{name}-g"
    log = KafkaLog(KafkaSettings(bootstrap_servers=kafka_bootstrap, session_timeout_ms=6000))
    await log.start()
    writers: list[GroupCommitWriter] = []
    owned = _Listener()
    consumer = None
    task = None
    try:
        await log.create_topics([TopicSpec(src, 2), TopicSpec(out, 2)])
        consumer = await log.consumer(src, group_id=group, listener=owned)
        task = asyncio.create_task(_fetching(consumer))
        await _until(lambda: owned.owned == {0, 1})
        writer = await log.group_writer(f"{name}-w", consumer.group_metadata)
        writers.append(writer)
        await asyncio.gather(
            *(
                writer.commit(
                    [OutRecord(out, i % 2, b"k", b"%d" % i)], group_id=group, offsets={TopicPartition(src, i % 2): i}
                )
                for i in range(20)
            )
        )
        # Calls made while a transaction is in flight (or before it began) share the next one.
        assert 1 <= writer.transactions <= 2, writer.transactions
        assert await log.committed(group, TopicPartition(src, 0)) == 18
        assert await log.committed(group, TopicPartition(src, 1)) == 19

        # aiokafka resets member id and generation when the group expels a member; the broker
        # would accept a transactional commit naming neither, so the writer must not send one.
        expelled = GroupMetadata(group, -1, "", None)
        zombie = await log.group_writer(f"{name}-z", lambda: expelled)
        writers.append(zombie)
        with pytest.raises(ProducerFencedError, match="not a member"):
            await zombie.commit(
                [OutRecord(out, 0, b"k", b"zombie")], group_id=group, offsets={TopicPartition(src, 0): 99}
            )
        async with asyncio.timeout(15):
            await log.settle(out, 0)
        values = [r.value for p in (0, 1) async for r in log.read(out, p)]
        assert len(values) == 20 and b"zombie" not in values
        assert await log.committed(group, TopicPartition(src, 0)) == 18
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for w in writers:
            await w.close()
        if consumer is not None:
            await consumer.close()
        await log.close()


async def test_partitions_that_settle_at_once_share_one_consumer(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a rebalance every new partition settles at once; one of them opens the consumer
    that reads uncommitted end offsets (before, each opened its own and all but one leaked)."""
    import eventstore.kafka.log as kafka_log

    opened: list[object] = []

    class Counting(kafka_log.AIOKafkaConsumer):  # type: ignore[misc, name-defined]
        async def start(self) -> None:
            opened.append(self)
            await super().start()

    name = f"gw-{uuid.uuid4().hex[:8]}"
    log = KafkaLog(KafkaSettings(bootstrap_servers=kafka_bootstrap))
    await log.start()
    try:
        await log.create_topics([TopicSpec(name, 8)])
        monkeypatch.setattr(kafka_log, "AIOKafkaConsumer", Counting)
        async with asyncio.timeout(30):
            await asyncio.gather(*(log.settle(name, p) for p in range(8)))
        assert len(opened) == 1
    finally:
        await log.close()
