"""What fences a zombie's offset commit on this broker (KIP-447), client by client.

A transactional producer that commits consumed offsets with the consumer's group metadata
(member id, generation: ``TxnOffsetCommit`` v3+) is fenced by the group coordinator once the
group has moved on: the commit fails, the transaction can only abort, and none of its records
becomes visible. aiokafka 0.14 sends ``TxnOffsetCommit`` v0, with no member or generation, so
the coordinator accepts its commit whatever the group did meanwhile: with aiokafka only a
transactional id per input partition fences a zombie (the scheme Tether's workers use).
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka import TopicPartition as AioTP

with warnings.catch_warnings():
    # kafka-python 3.0 loads its protocol schemas with importlib.resources' deprecated open_text.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic
    from kafka.errors import CommitFailedError, KafkaError
    from kafka.structs import OffsetAndMetadata, TopicPartition

pytestmark = [pytest.mark.kafka, pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")]

PARTITIONS = 2


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[tuple[str, str, str]]:
    """(input topic, output topic, group) with a few records in the input."""
    name = f"kip447-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in (f"{name}-in", f"{name}-out")])
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for p in range(PARTITIONS):
        for i in range(3):
            producer.send(f"{name}-in", b"v%d" % i, partition=p)
    producer.flush()
    producer.close()
    try:
        yield f"{name}-in", f"{name}-out", f"{name}-g"
    finally:
        admin.delete_topics([f"{name}-in", f"{name}-out"])
        admin.close()


def _consumer(bootstrap: str, topic: str, group: str) -> KafkaConsumer:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    consumer.subscribe([topic])
    return consumer


def _poll_until(consumers: list[KafkaConsumer], done: object, timeout: float = 30.0) -> None:
    """Poll until `done()`; each poll long enough to finish a join and its sync.

    With kafka-python 3.0.12 a member whose poll times out while it re-joins (the leader
    re-joins at once when its first assignment saw older topic metadata) can stop
    heartbeating with the join never completed: the broker drops it after the session
    timeout and it holds nothing for good. Seen with 100 ms polls on a loaded machine
    (2 of 25 runs, and once in CI); with 1 s polls 75 runs under the same load passed.
    """
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        assignments = [sorted(c.assignment()) for c in consumers]
        assert time.monotonic() < deadline, f"the group did not settle: assignments {assignments}"
        for c in consumers:
            c.poll(timeout_ms=1000)


def _producer(bootstrap: str) -> KafkaProducer:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"kip447-{uuid.uuid4().hex[:8]}", enable_idempotence=True
    )
    producer.init_transactions()
    return producer


def _committed_records(bootstrap: str, topic: str) -> list[bytes]:
    reader = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        consumer_timeout_ms=2000,
    )
    reader.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    try:
        return [r.value for r in reader]
    finally:
        reader.close()


def test_a_stale_generation_fails_the_offset_commit_and_nothing_becomes_visible(
    kafka_bootstrap: str, topics: tuple[str, str, str]
) -> None:
    in_topic, out_topic, group = topics
    first = _consumer(kafka_bootstrap, in_topic, group)
    _poll_until([first], lambda: len(first.assignment()) == PARTITIONS)
    stale = first.group_metadata()
    second = _consumer(kafka_bootstrap, in_topic, group)
    try:
        # The group rebalances: the first member's generation is now an old one.
        _poll_until([first, second], lambda: len(first.assignment()) == 1 and len(second.assignment()) == 1)
        current = first.group_metadata()
        assert current.generation_id > stale.generation_id
        zombie = _producer(kafka_bootstrap)
        try:
            zombie.begin_transaction()
            zombie.send(out_topic, b"zombie", partition=0)
            with pytest.raises(CommitFailedError, match="IllegalGeneration"):
                zombie.send_offsets_to_transaction({TopicPartition(in_topic, 0): OffsetAndMetadata(3, "", -1)}, stale)
            with pytest.raises(KafkaError):
                zombie.commit_transaction()  # only an abort is left
            zombie.abort_transaction()

            # Control: the same member with its current metadata commits.
            zombie.begin_transaction()
            zombie.send(out_topic, b"owner", partition=0)
            owned = next(iter(first.assignment()))
            zombie.send_offsets_to_transaction({owned: OffsetAndMetadata(3, "", -1)}, current)
            zombie.commit_transaction()
        finally:
            zombie.close()
        assert _committed_records(kafka_bootstrap, out_topic) == [b"owner"]
    finally:
        second.close()
        first.close()


def test_a_member_that_left_is_fenced_too(kafka_bootstrap: str, topics: tuple[str, str, str]) -> None:
    in_topic, out_topic, group = topics
    first = _consumer(kafka_bootstrap, in_topic, group)
    _poll_until([first], lambda: len(first.assignment()) == PARTITIONS)
    gone = first.group_metadata()
    first.close()  # leaves the group
    second = _consumer(kafka_bootstrap, in_topic, group)
    try:
        _poll_until([second], lambda: len(second.assignment()) == PARTITIONS)
        zombie = _producer(kafka_bootstrap)
        try:
            zombie.begin_transaction()
            zombie.send(out_topic, b"zombie", partition=1)
            with pytest.raises(CommitFailedError):
                zombie.send_offsets_to_transaction({TopicPartition(in_topic, 1): OffsetAndMetadata(3, "", -1)}, gone)
            zombie.abort_transaction()
        finally:
            zombie.close()
        assert _committed_records(kafka_bootstrap, out_topic) == []
    finally:
        second.close()


async def test_aiokafka_offset_commits_are_not_fenced_by_the_group(
    kafka_bootstrap: str, topics: tuple[str, str, str]
) -> None:
    """aiokafka's v0 commit names only the group: a producer that owns nothing commits anyway."""
    in_topic, out_topic, group = topics
    owner = _consumer(kafka_bootstrap, in_topic, group)
    try:
        _poll_until([owner], lambda: len(owner.assignment()) == PARTITIONS)
        outsider = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, transactional_id=f"kip447-{uuid.uuid4().hex[:8]}"
        )
        await outsider.start()
        try:
            async with outsider.transaction():
                await outsider.send(out_topic, b"outsider", partition=0)
                await outsider.send_offsets_to_transaction({AioTP(in_topic, 0): 2}, group)
        finally:
            await outsider.stop()
        assert _committed_records(kafka_bootstrap, out_topic) == [b"outsider"]
        owner.poll(timeout_ms=100)
        assert owner.committed(TopicPartition(in_topic, 0)) == 2
    finally:
        owner.close()
