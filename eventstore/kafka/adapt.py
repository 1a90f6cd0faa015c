"""aiokafka in the log's terms: its records as `Record`, its errors as typed Tether errors."""

from __future__ import annotations

from typing import Any

from aiokafka.errors import (
    InconsistentGroupProtocolError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    ProducerFenced,
    UnknownTopicOrPartitionError,
)

from ..errors import ConfigurationError, LogUnavailableError, ProducerFencedError, TetherError, TopicError
from ..records import Record

UNREACHABLE = (
    "cannot reach the Kafka broker at {servers}: {exc}. Start one with `tether kafka up`, "
    "or point TETHER_KAFKA__BOOTSTRAP_SERVERS at a running cluster"
)
FENCED = (
    "writer {tid!r} was fenced by a newer writer with the same transactional id; this process "
    "no longer owns the partition: stop writing for it and let the new owner continue"
)
OTHER_PROTOCOL = (
    "this worker cannot join its consumer group yet: the group's members assign partitions with "
    "another protocol ({exc}). Every worker of a namespace must run with the same "
    "TETHER_KAFKA__REBALANCE: `sticky` (the default) uses `tether-sticky`, `eager` and Tethers "
    "before it use `roundrobin`. This worker retries and takes partitions once the last member "
    'with the other protocol has left; restart those with the same setting (README, "Rebalances")'
)
MISSING = "topic {topic!r} does not exist; create the namespace first"


def translate(exc: BaseException, servers: str) -> TetherError | None:
    """The Tether error for an aiokafka error, or None to let `exc` through unchanged."""
    if isinstance(exc, ProducerFenced):
        return ProducerFencedError(str(exc))
    if isinstance(exc, InconsistentGroupProtocolError):
        return ConfigurationError(OTHER_PROTOCOL.format(exc=exc))
    if isinstance(exc, UnknownTopicOrPartitionError):
        return TopicError(f"unknown topic or partition: {exc}")
    if isinstance(exc, (KafkaConnectionError, KafkaTimeoutError, ConnectionError, OSError)) or (
        isinstance(exc, KafkaError) and exc.retriable
    ):
        return LogUnavailableError(UNREACHABLE.format(servers=servers, exc=exc))
    return None


def to_record(msg: Any) -> Record:
    """A `Record` from an aiokafka ``ConsumerRecord``."""
    return Record(
        msg.topic,
        msg.partition,
        msg.offset,
        msg.key,
        msg.value,
        tuple((k, bytes(v)) for k, v in (msg.headers or ())),
        msg.timestamp,
    )
