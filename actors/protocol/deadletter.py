"""Dead-letter headers: what went wrong with a message, beside its original bytes.

Header names follow Spring Kafka's ``kafka_dlt-*`` where the meaning is the same; Tether's own
live under ``tether.*``. Header names are API: the `dlq` package, operators and other Kafka
tools read them. Values are UTF-8 text; a header whose value is None is not written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

ORIGINAL_TOPIC = "kafka_dlt-original-topic"
ORIGINAL_PARTITION = "kafka_dlt-original-partition"
ORIGINAL_OFFSET = "kafka_dlt-original-offset"
ORIGINAL_TIMESTAMP = "kafka_dlt-original-timestamp"
ORIGINAL_CONSUMER_GROUP = "kafka_dlt-original-consumer-group"
EXCEPTION_FQCN = "kafka_dlt-exception-fqcn"
EXCEPTION_CAUSE_FQCN = "kafka_dlt-exception-cause-fqcn"
EXCEPTION_MESSAGE = "kafka_dlt-exception-message"
EXCEPTION_STACKTRACE = "kafka_dlt-exception-stacktrace"
OBJECT = "tether.object"
KEY = "tether.key"
HANDLER = "tether.handler"
MESSAGE_ID = "tether.message-id"
ATTEMPTS = "tether.attempts"
FIRST_FAILURE = "tether.first-failure-ms"
LAST_FAILURE = "tether.last-failure-ms"
ERROR_CLASS = "tether.error-class"
CATEGORY = "tether.category"
SCHEMA_VERSION = "tether.schema-version"
PARK_AWAKEABLE = "tether.park-awakeable"
"""Set when the session is parked behind this dead letter: resolving it unparks the session."""

HEADERS_VERSION = 1
"""The value of `SCHEMA_VERSION` this code writes."""

#: Why a message became a dead letter.
CATEGORIES = ("terminal", "exhausted", "poison", "oversize")


def _text(value: bytes | None) -> str | None:
    return value.decode(errors="replace") if value is not None else None


def _int(value: bytes | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class DeadLetterHeaders:
    """The headers a dead letter adds to its original record's, in the order they are written."""

    original_topic: str | None = None
    original_partition: int | None = None
    original_offset: int | None = None
    original_timestamp_ms: int | None = None
    consumer_group: str | None = None
    exception_fqcn: str | None = None
    exception_cause_fqcn: str | None = None
    exception_message: str | None = None
    stacktrace: str | None = None
    object_name: str | None = None
    key: str | None = None
    handler: str | None = None
    message_id: str | None = None
    attempts: int | None = None
    first_failure_ms: int | None = None
    last_failure_ms: int | None = None
    error_class: str | None = None
    category: str | None = None
    schema_version: int | None = HEADERS_VERSION
    park_awakeable: str | None = None

    def encode(self) -> list[tuple[str, bytes]]:
        """The headers to write (those that are not None)."""
        return [(name, str(v).encode()) for name, v in zip(_NAMES, self._values(), strict=True) if v is not None]

    def _values(self) -> list[object]:
        return [getattr(self, f.name) for f in fields(self)]

    @classmethod
    def decode(cls, header: Callable[[str], bytes | None]) -> DeadLetterHeaders:
        """Read them back through `header(name)` (the last value of a name; None if absent)."""
        values: list[object] = []
        for name, f in zip(_NAMES, fields(cls), strict=True):
            raw = header(name)
            values.append(_int(raw) if f.name in _INTS else _text(raw))
        return cls(*values)  # type: ignore[arg-type]  # one value per field, in order


_INTS = frozenset(
    {
        "original_partition",
        "original_offset",
        "original_timestamp_ms",
        "attempts",
        "first_failure_ms",
        "last_failure_ms",
        "schema_version",
    }
)
"""Fields whose header is a decimal integer."""

_NAMES = (
    ORIGINAL_TOPIC,
    ORIGINAL_PARTITION,
    ORIGINAL_OFFSET,
    ORIGINAL_TIMESTAMP,
    ORIGINAL_CONSUMER_GROUP,
    EXCEPTION_FQCN,
    EXCEPTION_CAUSE_FQCN,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    OBJECT,
    KEY,
    HANDLER,
    MESSAGE_ID,
    ATTEMPTS,
    FIRST_FAILURE,
    LAST_FAILURE,
    ERROR_CLASS,
    CATEGORY,
    SCHEMA_VERSION,
    PARK_AWAKEABLE,
)
"""Header names, in field order."""
