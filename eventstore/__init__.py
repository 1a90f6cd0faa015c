"""Tether's event log: records, codec, topics and two backends (Kafka and embedded).

This package deals in bytes, offsets and schemas; it knows nothing of sessions.
"""

from __future__ import annotations

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


def open_log(settings: LogSettings) -> EventLog:
    """The log that `settings` select (not yet started): Kafka if configured, else embedded."""
    if settings.resolved_backend == "kafka":
        if not settings.kafka.bootstrap_servers:
            raise ConfigurationError(
                "backend is 'kafka' but TETHER_KAFKA__BOOTSTRAP_SERVERS is not set; "
                "start a broker with `tether kafka up` and export its address"
            )
        from .kafka import KafkaLog

        return KafkaLog(settings.kafka)
    return EmbeddedLog(settings.data_dir / "log")


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
