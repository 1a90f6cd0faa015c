"""Consuming a topic through aiokafka: a group member's partitions, or partitions assigned by hand."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTP

from ..errors import UsageError
from ..log import PartitionListener
from ..records import Record
from .adapt import to_record
from .kip447 import GroupMetadata


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Adapts a `PartitionListener`; its errors surface from the next `fetch`.

    aiokafka only logs an exception of a rebalance listener and goes on fetching, which would
    hand out records of a partition whose `on_assigned` never completed.
    """

    def __init__(self, listener: PartitionListener) -> None:
        self.listener = listener
        self.owned: set[int] = set()
        self.failure: Exception | None = None

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """aiokafka: these partitions are taken away (before the rebalance)."""
        partitions = {tp.partition for tp in revoked}
        self.owned -= partitions
        if partitions:
            try:
                await self.listener.on_revoked(partitions)
            except Exception as exc:
                self.failure = self.failure or exc

    async def on_partitions_assigned(self, assigned: Any) -> None:
        """aiokafka: these partitions are ours now (after the rebalance)."""
        partitions = {tp.partition for tp in assigned}
        self.owned |= partitions
        if partitions:
            try:
                await self.listener.on_assigned(partitions)
            except Exception as exc:
                self.failure = self.failure or exc

    def raise_failure(self) -> None:
        """Raise (once) what the listener raised during the last rebalance, if anything."""
        failure, self.failure = self.failure, None
        if failure is not None:
            raise failure


class KafkaConsumer:
    """`LogConsumer` over an aiokafka consumer."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topic: str,
        guard: Callable[[Awaitable[Any]], Awaitable[Any]],
        rebalance: Rebalance | None,
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._guard = guard
        self._rebalance = rebalance
        self._closed = False

    async def fetch(self, timeout: float, max_records: int = 2000) -> list[Record]:
        """The next committed records of the assigned partitions.

        Raises:
            Exception: whatever the listener raised while the group (re)assigned partitions.
        """
        if self._rebalance is not None:
            self._rebalance.raise_failure()
        batch = await self._guard(self._consumer.getmany(timeout_ms=int(timeout * 1000), max_records=max_records))
        if self._rebalance is not None:
            self._rebalance.raise_failure()
        return [to_record(m) for msgs in batch.values() for m in msgs]

    def seek(self, partition: int, offset: int) -> None:
        """Fetch `partition` from `offset` next.

        Raises:
            UsageError: the partition is not assigned to this consumer, or the offset is < 0.
        """
        tp = KafkaTP(self._topic, partition)
        if tp not in self._consumer.assignment():
            raise UsageError(
                f"cannot seek partition {partition} of {self._topic!r}: it is not assigned to "
                f"this consumer (assigned: {sorted(self.assignment())})"
            )
        if offset < 0:
            raise UsageError(f"cannot seek to offset {offset}; offsets are >= 0")
        self._consumer.seek(tp, offset)

    def assignment(self) -> set[int]:
        """Partitions currently assigned."""
        return {tp.partition for tp in self._consumer.assignment()}

    def position(self, partition: int) -> int | None:
        """The offset `fetch` returns next for `partition`, past transaction markers; None if unknown.

        aiokafka's public ``position`` waits for a position that is not known yet (a partition
        assigned a moment ago, its committed offset still being fetched); this one does not.
        """
        tp = KafkaTP(self._topic, partition)
        assignment = self._consumer._subscription.subscription
        assignment = assignment.assignment if assignment is not None else None
        if assignment is None or tp not in assignment.tps:
            return None
        state = assignment.state_value(tp)
        return int(state.position) if state is not None and state.has_valid_position else None

    def group_metadata(self) -> GroupMetadata:
        """This member's group id, generation, member id and instance id, as of now (KIP-447).

        Raises:
            UsageError: the consumer is not a group member (partitions assigned by hand).
        """
        coordinator = self._consumer._coordinator  # aiokafka has no public accessor
        if self._rebalance is None or coordinator is None:
            raise UsageError(f"the consumer of {self._topic!r} is no group member: it has no group metadata")
        return GroupMetadata(
            str(coordinator.group_id),
            int(coordinator.generation),
            str(coordinator.member_id),
            coordinator._group_instance_id,
        )

    async def close(self) -> None:
        """Tell the listener its partitions are revoked, leave the group, close connections."""
        if self._closed:
            return
        self._closed = True
        try:
            # aiokafka leaves the group on stop without calling the rebalance listener.
            if self._rebalance is not None and self._rebalance.owned:
                owned, self._rebalance.owned = self._rebalance.owned, set()
                await self._rebalance.listener.on_revoked(owned)
        finally:
            await self._consumer.stop()
