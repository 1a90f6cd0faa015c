"""Tether's event log: records, codec, topics and two backends (Kafka and embedded).

This package deals in bytes, offsets and schemas; it knows nothing of sessions.
"""

from __future__ import annotations

from .backends import open_log
from .codec import Codec, pack, unpack
from .embedded.log import EmbeddedLog
from .errors import (
    ConfigurationError,
    DecodeError,
    EnvelopeDecodeError,
    KafkaAuthenticationError,
    KafkaAuthorizationError,
    KafkaSecurityError,
    KafkaTLSError,
    LogUnavailableError,
    PartitionCountError,
    PayloadValidationError,
    ProducerFencedError,
    TetherError,
    TopicError,
    UnknownSchemaVersionError,
    UnknownTypeError,
    UsageError,
)
from .log import EventLog, LogConsumer, PartitionListener, Transaction, TransactionalWriter
from .records import OutRecord, Record, TopicPartition
from .settings import KafkaSettings, LogSettings
from .snapshots import SnapshotStore
from .topics import Topics, TopicSpec, partition_for

__all__ = [
    "Codec",
    "ConfigurationError",
    "DecodeError",
    "EmbeddedLog",
    "EnvelopeDecodeError",
    "EventLog",
    "KafkaAuthenticationError",
    "KafkaAuthorizationError",
    "KafkaSecurityError",
    "KafkaSettings",
    "KafkaTLSError",
    "LogConsumer",
    "LogSettings",
    "LogUnavailableError",
    "OutRecord",
    "PartitionCountError",
    "PartitionListener",
    "PayloadValidationError",
    "ProducerFencedError",
    "Record",
    "SnapshotStore",
    "TetherError",
    "TopicError",
    "TopicPartition",
    "TopicSpec",
    "Topics",
    "Transaction",
    "TransactionalWriter",
    "UnknownSchemaVersionError",
    "UnknownTypeError",
    "UsageError",
    "open_log",
    "pack",
    "partition_for",
    "unpack",
]
