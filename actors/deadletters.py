"""Dead-letter records: the original bytes plus headers that existing Kafka tools understand.

Header names follow Spring Kafka's ``kafka_dlt-*`` where the meaning is the same; Tether's own
live under ``tether.*``. Header names are API: the `dlq` package and operators read them.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass

from eventstore.records import OutRecord, Record

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

#: Why a message became a dead letter.
CATEGORIES = ("terminal", "exhausted", "poison", "oversize")


@dataclass(frozen=True)
class Failure:
    """What went wrong with one message, as the processor saw it."""

    exc: BaseException
    category: str
    attempts: int = 1
    first_failure_ms: int = 0
    last_failure_ms: int = 0
    object_name: str | None = None
    key: str | None = None
    handler: str | None = None
    message_id: str | None = None
    park_awakeable: str | None = None


def dead_letter(source: Record, failure: Failure, *, dlq_topic: str, group: str) -> OutRecord:
    """A dead-letter record for `source`, keeping its key, value and headers unchanged."""
    exc = failure.exc
    cls = type(exc)
    cause = exc.__cause__ or exc.__context__
    now = int(time.time() * 1000)
    headers: list[tuple[str, bytes]] = list(source.headers)
    fields: dict[str, str | None] = {
        ORIGINAL_TOPIC: source.topic,
        ORIGINAL_PARTITION: str(source.partition),
        ORIGINAL_OFFSET: str(source.offset),
        ORIGINAL_TIMESTAMP: str(source.timestamp_ms),
        ORIGINAL_CONSUMER_GROUP: group,
        EXCEPTION_FQCN: f"{cls.__module__}.{cls.__qualname__}",
        EXCEPTION_CAUSE_FQCN: (f"{type(cause).__module__}.{type(cause).__qualname__}" if cause is not None else None),
        EXCEPTION_MESSAGE: str(exc)[:4000],
        EXCEPTION_STACKTRACE: "".join(traceback.format_exception(exc))[-16000:],
        OBJECT: failure.object_name,
        KEY: failure.key,
        HANDLER: failure.handler,
        MESSAGE_ID: failure.message_id,
        ATTEMPTS: str(failure.attempts),
        FIRST_FAILURE: str(failure.first_failure_ms or now),
        LAST_FAILURE: str(failure.last_failure_ms or now),
        ERROR_CLASS: cls.__name__,
        CATEGORY: failure.category,
        SCHEMA_VERSION: "1",
        PARK_AWAKEABLE: failure.park_awakeable,
    }
    headers.extend((k, v.encode()) for k, v in fields.items() if v is not None)
    return OutRecord(dlq_topic, 0, source.key, source.value, tuple(headers))
