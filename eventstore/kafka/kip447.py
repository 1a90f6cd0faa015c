"""KIP-447 for aiokafka: ``TxnOffsetCommit`` v3, with the consumer's member id and generation.

aiokafka 0.14 commits offsets in a transaction with ``TxnOffsetCommit`` v0, which names only
the group, so the coordinator accepts a zombie's commit after a rebalance. `install` makes one
transactional producer send v3 instead (the first version with ``generation_id``, ``member_id``
and ``group_instance_id``; a flexible version), taking the membership from a callable at the
moment of each commit. The coordinator then refuses a commit whose generation or member is no
longer the group's: the transaction fails with `StaleMembershipError` and can only abort, so
none of its records becomes visible.

The request and response layouts follow Kafka's ``TxnOffsetCommitRequest.json`` and
``TxnOffsetCommitResponse.json`` (version 3). `install` replaces one private method of the
producer's sender (``_do_txn_offset_commit``); the protocol test
(`tests/integration/test_group_writer.py`) fails if an aiokafka upgrade moves it.
"""

from __future__ import annotations

import collections
import logging
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiokafka.errors as kafka_errors
from aiokafka import AIOKafkaProducer
from aiokafka.client import CoordinationType
from aiokafka.producer.sender import TxnOffsetCommitHandler
from aiokafka.producer.transaction_manager import TransactionState
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactString, Int16, Int32, Int64, Schema, TaggedFields
from aiokafka.structs import TopicPartition

from ..errors import ProducerFencedError

log = logging.getLogger(__name__)

NO_LEADER_EPOCH = -1


@dataclass(frozen=True, slots=True)
class GroupMetadata:
    """A consumer's group membership: what the coordinator checks an offset commit against."""

    group_id: str
    generation: int
    member_id: str
    instance_id: str | None = None

    @property
    def joined(self) -> bool:
        """Whether this is a membership at all (an expelled aiokafka consumer resets both)."""
        return self.generation >= 0 and bool(self.member_id)


class StaleMembershipError(ProducerFencedError):
    """The coordinator refused an offset commit: the group moved on from this member (KIP-447)."""


class TxnOffsetCommitResponse_v3(Response):  # type: ignore[misc]  # noqa: N801 - Kafka's naming
    """``TxnOffsetCommitResponse`` version 3 (flexible)."""

    API_KEY = 28
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(("partition_index", Int32), ("error_code", Int16), ("tags", TaggedFields)),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class TxnOffsetCommitRequest_v3(RequestStruct):  # type: ignore[misc]  # noqa: N801 - Kafka's naming
    """``TxnOffsetCommitRequest`` version 3 (flexible): adds generation, member and instance ids."""

    FLEXIBLE_VERSION = True
    API_KEY = 28
    API_VERSION = 3
    RESPONSE_TYPE = TxnOffsetCommitResponse_v3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("group_id", CompactString("utf-8")),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", CompactString("utf-8")),
        ("group_instance_id", CompactString("utf-8")),
        (
            "topics",
            CompactArray(
                ("name", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition_index", Int32),
                        ("committed_offset", Int64),
                        ("committed_leader_epoch", Int32),
                        ("committed_metadata", CompactString("utf-8")),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class TxnOffsetCommitV3(Request[TxnOffsetCommitRequest_v3]):  # type: ignore[misc]
    """Builds a v3 request; the broker must support version 3 (Kafka 2.5+)."""

    API_KEY = 28

    def __init__(self, **fields: Any) -> None:  # noqa: ANN401
        self._fields = fields

    def build(self, request_struct_class: type[TxnOffsetCommitRequest_v3]) -> TxnOffsetCommitRequest_v3:
        """The request struct of the negotiated version (only 3 here)."""
        f = self._fields
        return request_struct_class(
            f["transactional_id"],
            f["group_id"],
            f["producer_id"],
            f["producer_epoch"],
            f["generation_id"],
            f["member_id"],
            f["group_instance_id"],
            f["topics"],
            {},
        )


_FENCING_CODES = {22: "ILLEGAL_GENERATION", 25: "UNKNOWN_MEMBER_ID", 82: "FENCED_INSTANCE_ID"}
"""Error codes by which the coordinator refuses a member the group moved on from (aiokafka
0.14 has no class for FENCED_INSTANCE_ID)."""


def _refuse(txn_manager: Any, exc: BaseException) -> None:  # noqa: ANN401 - aiokafka is untyped
    """Fail the transaction's offset commit: it can only abort now.

    Not aiokafka's ``error_transaction``: that also forgets the partitions and group the
    transaction added, so the abort that follows ends it locally without an ``EndTxn``, and the
    broker keeps it open (holding back the last stable offset of its partitions) until the
    transaction timeout, then bumps the producer's epoch.
    """
    txn_manager._transition_to(TransactionState.ABORTABLE_ERROR)
    txn_manager._pending_txn_partitions.clear()  # never added: nothing to end on the broker
    for _, _, fut in txn_manager._pending_txn_offsets:
        if not fut.done():
            fut.set_exception(exc)
    txn_manager._pending_txn_offsets.clear()
    waiter = txn_manager._transaction_waiter
    if not waiter.done():
        waiter.set_exception(exc)
        waiter.exception()  # seen: the abort replaces this waiter without reading it


class _FencedOffsetCommit(TxnOffsetCommitHandler):  # type: ignore[misc]  # aiokafka is untyped
    """aiokafka's offset-commit handler, speaking v3 with the membership of the moment."""

    def __init__(self, sender: Any, offsets: Any, group_id: str, membership: GroupMetadata) -> None:  # noqa: ANN401
        super().__init__(sender, offsets, group_id)
        self._membership = membership

    def create_request(self) -> TxnOffsetCommitV3:
        txn_manager = self._sender._txn_manager
        topics: dict[str, list[tuple[int, int, int, str, dict[int, bytes]]]] = collections.defaultdict(list)
        for tp, offset in sorted(self._offsets.items()):
            topics[tp.topic].append((tp.partition, offset.offset, NO_LEADER_EPOCH, offset.metadata, {}))
        m = self._membership
        return TxnOffsetCommitV3(
            transactional_id=txn_manager.transactional_id,
            group_id=self._group_id,
            producer_id=txn_manager.producer_id,
            producer_epoch=txn_manager.producer_epoch,
            generation_id=m.generation,
            member_id=m.member_id,
            group_instance_id=m.instance_id,
            topics=[(topic, parts, {}) for topic, parts in topics.items()],
        )

    def handle_response(self, resp: Any) -> float | None:  # noqa: ANN401
        txn_manager = self._sender._txn_manager
        for topic, partitions, _ in resp.topics:
            for partition, error_code, _ in partitions:
                tp = TopicPartition(topic, partition)
                error_type = kafka_errors.for_code(error_code)
                if error_type is kafka_errors.NoError:
                    txn_manager.offset_committed(tp, self._offsets[tp].offset, self._group_id)
                elif error_code in _FENCING_CODES:
                    _refuse(
                        txn_manager,
                        StaleMembershipError(
                            f"offset commit refused: {_FENCING_CODES[error_code]} (group {self._group_id!r}, "
                            f"generation {self._membership.generation})"
                        ),
                    )
                    return None
                elif error_type in (
                    kafka_errors.CoordinatorNotAvailableError,
                    kafka_errors.NotCoordinatorError,
                    kafka_errors.RequestTimedOutError,
                ):
                    self._sender._coordinator_dead(CoordinationType.GROUP)
                    return float(self._default_backoff)
                elif error_type in (
                    kafka_errors.CoordinatorLoadInProgressError,
                    kafka_errors.UnknownTopicOrPartitionError,
                    kafka_errors.RebalanceInProgressError,
                ):
                    return float(self._default_backoff)
                elif error_type is kafka_errors.InvalidProducerEpoch:
                    raise kafka_errors.ProducerFenced()
                elif error_type is kafka_errors.GroupAuthorizationFailedError:
                    _refuse(txn_manager, error_type(self._group_id))
                    return None
                elif getattr(error_type, "retriable", False):
                    return float(self._default_backoff)
                else:
                    # Not raised here: an exception ends aiokafka's sender task, and with it the
                    # producer, leaving the transaction open on the broker.
                    log.error("offset commit of %s failed: %s", tp, error_type)
                    _refuse(txn_manager, error_type())
                    return None
        return None


def install(producer: AIOKafkaProducer, membership: Callable[[], GroupMetadata]) -> None:
    """Make `producer` (transactional, not started or started) commit offsets with v3 and `membership`.

    Raises:
        AttributeError: this aiokafka's sender has no ``_do_txn_offset_commit`` to replace.
    """
    sender = producer._sender
    if not hasattr(sender, "_do_txn_offset_commit"):
        raise AttributeError("aiokafka's sender has no _do_txn_offset_commit: KIP-447 cannot be installed")

    async def do_txn_offset_commit(self: Any, offsets: Any, group_id: str) -> None:  # noqa: ANN401
        if not offsets:
            return None
        current = membership()
        if not current.joined or current.group_id != group_id:
            # The coordinator accepts a transactional commit that names no member and
            # generation -1 (v0 compatibility): a consumer that lost its membership must not
            # send one.
            _refuse(self._txn_manager, StaleMembershipError(f"not a member of group {group_id!r} now ({current})"))
            return None
        try:
            node_id = await self._find_coordinator(CoordinationType.GROUP, group_id)
        except kafka_errors.GroupAuthorizationFailedError as exc:
            _refuse(self._txn_manager, exc)
            return None
        handler = _FencedOffsetCommit(self, offsets, group_id, current)
        await handler.do(node_id)  # a failed attempt leaves the offsets pending: the sender retries
        return None

    sender._do_txn_offset_commit = types.MethodType(do_txn_offset_commit, sender)
