"""Group membership on the real broker with Tether's consumers: a rejoin starts no rebalance.

The broker starts a rebalance when a follower joins a stable group with protocols other than
those it last joined with, and aiokafka rejoins a stable group now and then (a SyncGroup that
timed out under load, a heartbeat that saw the last rebalance). Two things used to turn each
such rejoin into more rebalances: the sticky claim carried its generation (new after every
rebalance), and consumers offered round robin as a fallback, so aiokafka sent two JoinGroups
per join with different protocol lists (aio-libs/aiokafka#1168). Under load they chained: the
saga chaos test once saw generation 378 and 227 sagas left unsettled. Here two consumers made
by `KafkaLog.consumer` share a topic, the follower is told to rejoin again and again (what
aiokafka does on those errors), and after the first rejoin, which claims what the member was
dealt, the generation stays put. A member that offers only round robin (``eager``, or a Tether
from before the sticky assignor) keeps a sticky worker out with a typed error, not a loop, until
the last such member is gone: then the sticky one takes every partition.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from harness.session_harness import assert_eventually

from eventstore import ConfigurationError
from eventstore.kafka import KafkaLog
from eventstore.kafka.consumer import KafkaConsumer
from eventstore.settings import KafkaSettings
from eventstore.topics import TopicSpec

pytestmark = [pytest.mark.kafka]

PARTITIONS = 4


class _Listener:
    async def on_assigned(self, partitions: set[int]) -> None:
        pass

    async def on_revoked(self, partitions: set[int]) -> None:
        pass


@pytest.fixture
async def log(kafka_bootstrap: str) -> AsyncIterator[KafkaLog]:
    log = KafkaLog(KafkaSettings(bootstrap_servers=kafka_bootstrap, session_timeout_ms=6000, heartbeat_interval_ms=500))
    await log.start()
    try:
        yield log
    finally:
        await log.close()


class _Member:
    """A Tether group consumer, fetching in the background."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer
        self.errors: list[BaseException] = []
        self._fetcher = asyncio.create_task(self._fetch())

    @property
    def coordinator(self) -> Any:  # noqa: ANN401 - aiokafka's internals: no public accessor
        return self.consumer._consumer._coordinator

    def leads(self) -> bool:
        return self.coordinator._group_subscription is not None

    async def _fetch(self) -> None:
        while True:  # as the worker's fetch loop does: an error is logged, and it fetches again
            try:
                await self.consumer.fetch(0.2)
            except Exception as exc:  # noqa: BLE001 - the test reads it
                self.errors.append(exc)
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        self._fetcher.cancel()
        await asyncio.gather(self._fetcher, return_exceptions=True)
        await self.consumer.close()


async def _members(log: KafkaLog, topic: str, group: str, count: int) -> list[_Member]:
    return [_Member(await log.consumer(topic, group_id=group, listener=_Listener())) for _ in range(count)]


async def test_a_follower_rejoining_a_stable_group_starts_no_rebalance(log: KafkaLog) -> None:
    topic = f"rejoin-{uuid.uuid4().hex[:8]}"
    await log.create_topics([TopicSpec(topic, PARTITIONS)])
    members = await _members(log, topic, f"{topic}-g", 2)
    try:

        def balanced() -> tuple[int, _Member]:
            assert not any(m.errors for m in members), [m.errors for m in members]
            generations = {m.coordinator.generation for m in members}
            assert len(generations) == 1 and min(generations) > 0, generations
            held = [m.consumer.assignment() for m in members]
            assert sorted(len(h) for h in held) == [2, 2] and set().union(*held) == set(range(PARTITIONS)), held
            followers = [m for m in members if not m.leads()]
            assert len(followers) == 1, "no single follower yet"
            return generations.pop(), followers[0]

        await assert_eventually(balanced, timeout=60)
        generation, follower = balanced()
        # The first rejoin claims what it was dealt (it joined claiming nothing): one rebalance.
        follower.coordinator.request_rejoin()
        await asyncio.sleep(3)
        generation, follower = await assert_eventually(balanced, timeout=60)
        before = [m.consumer.assignment() for m in members]
        for _ in range(3):
            follower.coordinator.request_rejoin()
            await asyncio.sleep(2)
            assert follower.coordinator.generation == generation, "a rejoin with an unchanged claim started a rebalance"
            assert [m.consumer.assignment() for m in members] == before
        assert not any(m.errors for m in members)
    finally:
        for m in members:
            await m.close()


async def test_a_sticky_worker_cannot_join_a_round_robin_group(kafka_bootstrap: str, log: KafkaLog) -> None:
    topic = f"rejoin-{uuid.uuid4().hex[:8]}"
    await log.create_topics([TopicSpec(topic, PARTITIONS)])
    eager = KafkaLog(KafkaSettings(bootstrap_servers=kafka_bootstrap, session_timeout_ms=6000, rebalance="eager"))
    await eager.start()
    try:
        [old] = await _members(eager, topic, f"{topic}-g", 1)

        def holds_all() -> None:
            assert old.consumer.assignment() == set(range(PARTITIONS))

        await assert_eventually(holds_all, timeout=60)
        [new] = await _members(log, topic, f"{topic}-g", 1)
        try:

            def refused() -> None:
                assert new.errors, "the sticky worker has not been refused yet"

            await assert_eventually(refused, timeout=60)
            error = new.errors[0]
            assert isinstance(error, ConfigurationError), repr(error)
            assert "TETHER_KAFKA__REBALANCE" in str(error)
            assert all(isinstance(e, ConfigurationError) for e in new.errors), new.errors
            assert old.consumer.assignment() == set(range(PARTITIONS)) and not old.errors
            assert not new.consumer.assignment()
            # A rolling switch: once the last round-robin member is gone, the sticky one joins.
            await old.close()

            def took_over() -> None:
                assert new.consumer.assignment() == set(range(PARTITIONS))

            await assert_eventually(took_over, timeout=60)
        finally:
            await new.close()
            await old.close()
    finally:
        await eager.close()
