"""Errors of the event log, and the root of every error Tether raises.

TetherError
├── ConfigurationError        settings that cannot work (names the variable)
│   └── KafkaSecurityError    the cluster refuses the connection's security settings
│       ├── KafkaTLSError             TLS handshake failed (untrusted or mismatched certificate)
│       ├── KafkaAuthenticationError  SASL credentials or mechanism refused
│       └── KafkaAuthorizationError   authenticated, but an ACL denies an operation
├── UsageError                a definition or call that misuses the API
│   └── PartitionCountError   partitions asked for differ from an existing namespace's
├── LogUnavailableError       the log (broker or file) cannot be reached       retriable
├── ProducerFencedError       a newer writer took over this transactional id
│   └── StaleMembershipError  the group moved on: this member's offset commit was refused (KIP-447)
├── TopicError                a topic is missing or misconfigured
├── BlobError                 a referenced blob is missing or does not match its reference
└── DecodeError               a record that cannot become a typed value
    ├── EnvelopeDecodeError   not a Tether envelope (bad msgpack, missing fields)
    ├── UnknownTypeError      an event/message type that nothing registered
    ├── UnknownSchemaVersionError  a schema version with no upcaster path
    └── PayloadValidationError     the payload failed pydantic validation
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import ClassVar


class TetherError(Exception):
    """Root of every error that Tether raises."""

    retriable: ClassVar[bool] = False
    """Whether retrying the same operation later can succeed."""


class ConfigurationError(TetherError):
    """Settings that cannot work; the message names the setting or variable."""


class KafkaSecurityError(ConfigurationError):
    """The cluster refused the connection's TLS or SASL settings; the message names the setting.

    Never retriable: the same settings fail the same way. Messages never contain a secret.
    """

    def __init__(self, message: str, *, address: str | None = None, setting: str | None = None) -> None:
        super().__init__(message)
        self.address = address
        """The broker (``host:port``) that refused the connection, when known."""
        self.setting = setting
        """The environment variable most likely to need fixing (``TETHER_KAFKA__...``)."""


class KafkaTLSError(KafkaSecurityError):
    """The TLS handshake failed, or the protocol does not match the listener.

    A broker certificate not trusted or not naming the host, a client certificate refused, or
    TLS spoken to a plain listener (and the reverse).
    """


class KafkaAuthenticationError(KafkaSecurityError):
    """SASL authentication failed.

    A wrong user or password, a mechanism the broker does not enable, or a rejected token.
    """


class KafkaAuthorizationError(KafkaSecurityError):
    """Authenticated, but an ACL denies the operation (a topic, group or transactional id)."""


class UsageError(TetherError):
    """A definition or a call that misuses the API (raised where the mistake is made)."""


class PartitionCountError(UsageError):
    """Partitions asked for differ from the count an existing namespace was created with.

    From ``--partitions``, ``TETHER_PARTITIONS`` or ``Settings(partitions=...)``: a namespace's
    partition count is fixed when it is created.
    """

    def __init__(self, namespace: str, topic: str, asked: int, found: int) -> None:
        super().__init__(
            f"namespace {namespace!r} has {found} partition(s) (topic {topic!r}), but {asked} were asked for "
            f"(--partitions / TETHER_PARTITIONS): the count is fixed when a namespace is created; drop the "
            f"option, give {found}, or use a new namespace"
        )
        self.namespace, self.topic, self.asked, self.found = namespace, topic, asked, found


class LogUnavailableError(TetherError):
    """The log cannot be reached: the broker is down or the data directory is unusable."""

    retriable = True


class ProducerFencedError(TetherError):
    """A newer writer registered the same transactional id; this one must stop writing."""


class TopicError(TetherError):
    """A topic is missing or misconfigured."""


class BlobError(TetherError):
    """A referenced blob (`eventstore.blobs`) is missing, or its bytes do not match its reference."""


@dataclass(eq=False, repr=False)  # compared and shown as exceptions are, not as records
class DecodeError(TetherError):
    """A record that cannot be decoded into a typed value.

    Carries where the record came from so an operator can find the bytes.
    """

    reason: str
    _: KW_ONLY
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    type_name: str | None = None
    schema_version: int | None = None

    def __post_init__(self) -> None:
        super().__init__(self.reason)

    def located(self, *, topic: str, partition: int, offset: int) -> DecodeError:
        """Return the same error with its record location filled in."""
        self.topic, self.partition, self.offset = topic, partition, offset
        return self

    def __str__(self) -> str:
        where = []
        if self.topic is not None:
            where.append(f"topic={self.topic}")
        if self.partition is not None:
            where.append(f"partition={self.partition}")
        if self.offset is not None:
            where.append(f"offset={self.offset}")
        if self.type_name is not None:
            where.append(f"type={self.type_name}")
        if self.schema_version is not None:
            where.append(f"schema_version={self.schema_version}")
        return f"{self.reason} ({', '.join(where)})" if where else self.reason


class EnvelopeDecodeError(DecodeError):
    """The bytes are not a Tether envelope: bad msgpack or missing envelope fields."""


class UnknownTypeError(DecodeError):
    """The envelope names a type that no codec registered."""


class UnknownSchemaVersionError(DecodeError):
    """The envelope's schema version is newer than the code, or has no upcaster path."""


class PayloadValidationError(DecodeError):
    """The payload does not validate against the registered pydantic model."""
