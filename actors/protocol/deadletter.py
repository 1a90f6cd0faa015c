"""Dead-letter headers: what went wrong with a message, beside its original bytes.

Header names and encodings follow Spring Kafka's ``DeadLetterPublishingRecoverer``
(``kafka_dlt-*``) where the meaning is the same, so Spring consumers and tools decode them:
``kafka_dlt-original-partition`` is a 4-byte big-endian int, ``-original-offset`` and
``-original-timestamp`` 8-byte big-endian longs, ``-original-timestamp-type`` the text
``CreateTime`` or ``LogAppendTime``; the other ``kafka_dlt-*`` headers are UTF-8 text. Tether's
own headers live under ``tether.*`` (UTF-8 text, integers in decimal). Header names are API: the
`dlq` package, operators and other Kafka tools read them. A header whose value is None is not
written.

Reading takes every form that exists in topics: the headers this code writes (schema version
2), Tether 0.1/0.2's (schema version 1: the three Spring numbers written as decimal text),
Spring Kafka's, and Kafka Connect's ``__connect.errors.*`` (numbers in decimal text). Kafka
Connect's headers can also be written beside Spring's (`connect_headers`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

ORIGINAL_TOPIC = "kafka_dlt-original-topic"
ORIGINAL_PARTITION = "kafka_dlt-original-partition"
ORIGINAL_OFFSET = "kafka_dlt-original-offset"
ORIGINAL_TIMESTAMP = "kafka_dlt-original-timestamp"
ORIGINAL_TIMESTAMP_TYPE = "kafka_dlt-original-timestamp-type"
ORIGINAL_CONSUMER_GROUP = "kafka_dlt-original-consumer-group"
EXCEPTION_FQCN = "kafka_dlt-exception-fqcn"
EXCEPTION_CAUSE_FQCN = "kafka_dlt-exception-cause-fqcn"
EXCEPTION_MESSAGE = "kafka_dlt-exception-message"
EXCEPTION_STACKTRACE = "kafka_dlt-exception-stacktrace"
KEY_EXCEPTION_FQCN = "kafka_dlt-key-exception-fqcn"
"""Spring only (a key that failed to deserialize); read, never written."""
KEY_EXCEPTION_MESSAGE = "kafka_dlt-key-exception-message"
KEY_EXCEPTION_STACKTRACE = "kafka_dlt-key-exception-stacktrace"
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

CONNECT_PREFIX = "__connect.errors."
CONNECT_TOPIC = CONNECT_PREFIX + "topic"
CONNECT_PARTITION = CONNECT_PREFIX + "partition"
CONNECT_OFFSET = CONNECT_PREFIX + "offset"
CONNECT_CONNECTOR = CONNECT_PREFIX + "connector.name"
CONNECT_TASK_ID = CONNECT_PREFIX + "task.id"
CONNECT_STAGE = CONNECT_PREFIX + "stage"
CONNECT_EXECUTING_CLASS = CONNECT_PREFIX + "class.name"
CONNECT_EXCEPTION = CONNECT_PREFIX + "exception.class.name"
CONNECT_EXCEPTION_MESSAGE = CONNECT_PREFIX + "exception.message"
CONNECT_EXCEPTION_STACKTRACE = CONNECT_PREFIX + "exception.stacktrace"

HEADERS_VERSION = 2
"""The value of `SCHEMA_VERSION` this code writes (1: Tether 0.1/0.2, numbers as decimal text)."""

#: Why a message became a dead letter.
CATEGORIES = ("terminal", "exhausted", "poison", "oversize")

Producer = Literal["tether", "spring", "connect", "unknown"]
"""Who wrote a dead letter, judged from its headers."""

_DECIMAL = re.compile(rb"-?[0-9]+")


def _text(value: bytes | None) -> str | None:
    return value.decode(errors="replace") if value is not None else None


def _decimal(value: bytes | None) -> int | None:
    if value is None or not _DECIMAL.fullmatch(value.strip()):
        return None
    return int(value)


def _number(value: bytes | None) -> int | None:
    """A Spring number: a big-endian int or long, or (Tether 0.1/0.2, others) decimal text.

    Decimal text is told apart by its bytes: a 4- or 8-byte big-endian number whose every byte
    is an ASCII digit would be above 808 million (a partition) or 3.4e18 (an offset, a time).
    """
    if value is None:
        return None
    if _DECIMAL.fullmatch(value):
        return int(value)
    if len(value) in (4, 8):
        return int.from_bytes(value, "big", signed=True)
    return None


def int32(value: int) -> bytes:
    """`value` as Spring (Java's ``ByteBuffer.putInt``) writes an int: 4 bytes, big-endian."""
    return value.to_bytes(4, "big", signed=True)


def int64(value: int) -> bytes:
    """`value` as Spring (Java's ``ByteBuffer.putLong``) writes a long: 8 bytes, big-endian."""
    return value.to_bytes(8, "big", signed=True)


@dataclass(frozen=True, slots=True)
class DeadLetterHeaders:
    """The headers a dead letter adds to its original record's, in the order they are written."""

    original_topic: str | None = None
    original_partition: int | None = None
    original_offset: int | None = None
    original_timestamp_ms: int | None = None
    original_timestamp_type: str | None = None
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
    connect_connector: str | None = None
    """Kafka Connect only: the connector that gave up (read; written as the consumer group)."""
    connect_task_id: str | None = None
    """Kafka Connect only: its task."""
    connect_stage: str | None = None
    """Kafka Connect only: the stage that failed (``VALUE_CONVERTER``, ``TASK_PUT``, ...)."""
    connect_executing_class: str | None = None
    """Kafka Connect only: the class that was running."""
    producer: Producer = "tether"
    """Who wrote the dead letter (not a header of its own: judged from the others)."""

    def encode(self, *, connect_headers: bool = False) -> list[tuple[str, bytes]]:
        """The headers to write (those that are not None), Spring's encoding for its numbers.

        With `connect_headers`, Kafka Connect's ``__connect.errors.*`` follow Tether's, so
        tools made for Connect's dead-letter queues read them too.
        """
        out: list[tuple[str, bytes]] = []

        def text(name: str, value: object) -> None:
            if value is not None:
                out.append((name, str(value).encode()))

        def binary(name: str, value: int | None, encode: Callable[[int], bytes]) -> None:
            if value is not None:
                out.append((name, encode(value)))

        text(ORIGINAL_TOPIC, self.original_topic)
        binary(ORIGINAL_PARTITION, self.original_partition, int32)
        binary(ORIGINAL_OFFSET, self.original_offset, int64)
        binary(ORIGINAL_TIMESTAMP, self.original_timestamp_ms, int64)
        text(ORIGINAL_TIMESTAMP_TYPE, self.original_timestamp_type)
        text(ORIGINAL_CONSUMER_GROUP, self.consumer_group)
        text(EXCEPTION_FQCN, self.exception_fqcn)
        text(EXCEPTION_CAUSE_FQCN, self.exception_cause_fqcn)
        text(EXCEPTION_MESSAGE, self.exception_message)
        text(EXCEPTION_STACKTRACE, self.stacktrace)
        text(OBJECT, self.object_name)
        text(KEY, self.key)
        text(HANDLER, self.handler)
        text(MESSAGE_ID, self.message_id)
        text(ATTEMPTS, self.attempts)
        text(FIRST_FAILURE, self.first_failure_ms)
        text(LAST_FAILURE, self.last_failure_ms)
        text(ERROR_CLASS, self.error_class)
        text(CATEGORY, self.category)
        text(SCHEMA_VERSION, self.schema_version)
        text(PARK_AWAKEABLE, self.park_awakeable)
        if connect_headers:
            text(CONNECT_TOPIC, self.original_topic)
            text(CONNECT_PARTITION, self.original_partition)
            text(CONNECT_OFFSET, self.original_offset)
            text(CONNECT_CONNECTOR, self.connect_connector or self.consumer_group)
            text(CONNECT_TASK_ID, self.connect_task_id)
            text(CONNECT_STAGE, self.connect_stage)
            text(CONNECT_EXECUTING_CLASS, self.connect_executing_class)
            text(CONNECT_EXCEPTION, self.exception_fqcn)
            text(CONNECT_EXCEPTION_MESSAGE, self.exception_message)
            text(CONNECT_EXCEPTION_STACKTRACE, self.stacktrace)
        return out

    @classmethod
    def decode(cls, header: Callable[[str], bytes | None]) -> DeadLetterHeaders:
        """Read them back through `header(name)` (the last value of a name; None if absent).

        Spring's, Tether's (any version) and Kafka Connect's headers all decode; where Spring's
        and Connect's say the same, Spring's win. A value that does not parse is None.
        """

        def text(*names: str) -> str | None:
            for name in names:
                value = header(name)
                if value is not None:
                    return _text(value)
            return None

        def number(spring: str, connect: str | None = None) -> int | None:
            value = _number(header(spring))
            if value is None and connect is not None:
                value = _decimal(header(connect))
            return value

        schema_version = _decimal(header(SCHEMA_VERSION))
        producer: Producer
        if schema_version is not None or header(OBJECT) is not None or header(CATEGORY) is not None:
            producer = "tether"
        elif header(ORIGINAL_TOPIC) is not None or header(EXCEPTION_FQCN) is not None:
            producer = "spring"
        elif header(CONNECT_TOPIC) is not None or header(CONNECT_EXCEPTION) is not None:
            producer = "connect"
        else:
            producer = "unknown"
        return cls(
            original_topic=text(ORIGINAL_TOPIC, CONNECT_TOPIC),
            original_partition=number(ORIGINAL_PARTITION, CONNECT_PARTITION),
            original_offset=number(ORIGINAL_OFFSET, CONNECT_OFFSET),
            original_timestamp_ms=number(ORIGINAL_TIMESTAMP),
            original_timestamp_type=text(ORIGINAL_TIMESTAMP_TYPE),
            consumer_group=text(ORIGINAL_CONSUMER_GROUP),
            exception_fqcn=text(EXCEPTION_FQCN, KEY_EXCEPTION_FQCN, CONNECT_EXCEPTION),
            exception_cause_fqcn=text(EXCEPTION_CAUSE_FQCN),
            exception_message=text(EXCEPTION_MESSAGE, KEY_EXCEPTION_MESSAGE, CONNECT_EXCEPTION_MESSAGE),
            stacktrace=text(EXCEPTION_STACKTRACE, KEY_EXCEPTION_STACKTRACE, CONNECT_EXCEPTION_STACKTRACE),
            object_name=text(OBJECT),
            key=text(KEY),
            handler=text(HANDLER),
            message_id=text(MESSAGE_ID),
            attempts=_decimal(header(ATTEMPTS)),
            first_failure_ms=_decimal(header(FIRST_FAILURE)),
            last_failure_ms=_decimal(header(LAST_FAILURE)),
            error_class=text(ERROR_CLASS),
            category=text(CATEGORY),
            schema_version=schema_version,
            park_awakeable=text(PARK_AWAKEABLE),
            connect_connector=text(CONNECT_CONNECTOR),
            connect_task_id=text(CONNECT_TASK_ID),
            connect_stage=text(CONNECT_STAGE),
            connect_executing_class=text(CONNECT_EXECUTING_CLASS),
            producer=producer,
        )


@dataclass(frozen=True, slots=True)
class DeadLetterSummary:
    """The headers that list and group a dead letter, read alone (the dead-letter index's rows).

    Each field reads as in `DeadLetterHeaders.decode`; reading these 9 instead of all of them
    (stack traces included) is most of what indexing a dead letter costs.
    """

    object_name: str | None
    key: str | None
    handler: str | None
    category: str | None
    exception_fqcn: str | None
    exception_message: str | None
    error_class: str | None
    first_failure_ms: int | None
    last_failure_ms: int | None

    @classmethod
    def decode(cls, header: Callable[[str], bytes | None]) -> DeadLetterSummary:
        """Read them through `header(name)`, as `DeadLetterHeaders.decode` does."""
        fqcn = header(EXCEPTION_FQCN)
        if fqcn is None:
            fqcn = header(KEY_EXCEPTION_FQCN)
            if fqcn is None:
                fqcn = header(CONNECT_EXCEPTION)
        message = header(EXCEPTION_MESSAGE)
        if message is None:
            message = header(KEY_EXCEPTION_MESSAGE)
            if message is None:
                message = header(CONNECT_EXCEPTION_MESSAGE)
        return cls(
            _text(header(OBJECT)),
            _text(header(KEY)),
            _text(header(HANDLER)),
            _text(header(CATEGORY)),
            _text(fqcn),
            _text(message),
            _text(header(ERROR_CLASS)),
            _decimal(header(FIRST_FAILURE)),
            _decimal(header(LAST_FAILURE)),
        )


DEAD_LETTER_HEADER_NAMES = frozenset(
    {
        ORIGINAL_TOPIC,
        ORIGINAL_PARTITION,
        ORIGINAL_OFFSET,
        ORIGINAL_TIMESTAMP,
        ORIGINAL_TIMESTAMP_TYPE,
        ORIGINAL_CONSUMER_GROUP,
        EXCEPTION_FQCN,
        EXCEPTION_CAUSE_FQCN,
        EXCEPTION_MESSAGE,
        EXCEPTION_STACKTRACE,
        KEY_EXCEPTION_FQCN,
        KEY_EXCEPTION_MESSAGE,
        KEY_EXCEPTION_STACKTRACE,
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
        CONNECT_TOPIC,
        CONNECT_PARTITION,
        CONNECT_OFFSET,
        CONNECT_CONNECTOR,
        CONNECT_TASK_ID,
        CONNECT_STAGE,
        CONNECT_EXECUTING_CLASS,
        CONNECT_EXCEPTION,
        CONNECT_EXCEPTION_MESSAGE,
        CONNECT_EXCEPTION_STACKTRACE,
    }
)
"""Every header a dead letter may add (Tether's, Spring's, Connect's); the rest are the original's."""
