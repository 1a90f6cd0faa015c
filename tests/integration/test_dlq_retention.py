"""On the real broker: dead letters that the topic's retention deleted (here: the admin API's
DeleteRecords, which moves the log start offset as retention does) leave the local index."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import TopicPartition as KafkaTP
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from actors import Settings, TerminalError
from actors.messages import Message
from actors.runtime.deadletters import Failure, dead_letter
from dlq import DeadLetters, Filter
from eventstore import OutRecord, Record, Topics, open_log

T0 = 1_714_564_800_000


def letters(topics: Topics, count: int, first: int = 0) -> list[OutRecord]:
    out = []
    for n in range(first, first + count):
        msg = Message(id=f"m{n}", o="orders", k=f"k{n % 3}", h="apply", p={"n": n}, ts=1)
        source = Record(topics.inbox, 0, n, b"orders/k", msg.encode(), (), T0)
        failure = Failure(TerminalError(f"item {n}"), "terminal", 1, T0 + n, T0 + n, "orders", msg.key, "apply", msg.id)
        letter = dead_letter(source, failure, dlq_topic=topics.dlq, group="g")
        out.append(OutRecord(letter.topic, 0, letter.key, letter.value, letter.headers, T0 + n))
    return out


@pytest.mark.kafka
async def test_letters_deleted_from_the_topic_leave_the_index(
    kafka_bootstrap: str, namespace: str, tmp_path: Path
) -> None:
    settings = Settings(namespace=namespace, data_dir=tmp_path, partitions=1, backend="kafka")
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": kafka_bootstrap})}
    )
    topics = Topics(namespace)
    log = open_log(settings)
    await log.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await log.create_topics(topics.specs(1))
        await log.append(letters(topics, 20))
        async with DeadLetters(settings) as dead:
            assert sum(r.count for r in await dead.stats()) == 20  # the index is built
        async with DeadLetters(settings, index=False) as scan:
            offsets = [int(x.id.split("-")[1]) for x in await scan.all()]
        await admin.delete_records({KafkaTP(topics.dlq, 0): RecordsToDelete(before_offset=offsets[8])})
        async with DeadLetters(settings) as dead:
            assert sum(r.count for r in await dead.stats()) == 12
            found, total = await dead.page(Filter(), limit=100)
            assert total == 12 and [x.id for x in found] == [f"0-{o}" for o in offsets[8:]]
            assert dead.inspector.index is not None and dead.inspector.index.read_records == 0
        await admin.delete_records({KafkaTP(topics.dlq, 0): RecordsToDelete(before_offset=offsets[-1] + 1)})
        await log.append(letters(topics, 2, first=20))
        async with DeadLetters(settings, index=False) as scan:
            kept = [x.id for x in await scan.all()]
        async with DeadLetters(settings) as dead:
            found, total = await dead.page(Filter(), limit=100)
            assert total == 2 and [x.id for x in found] == kept, (found, kept)
    finally:
        await admin.close()
        await log.close()
