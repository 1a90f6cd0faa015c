"""Dead-letter records: the original bytes plus headers that existing Kafka tools understand.

The headers are `actors.protocol.deadletter.DeadLetterHeaders` (their names are re-exported
here, where the `dlq` package and tests have always imported them).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from eventstore.records import OutRecord, Record

from ..clock import now_ms
from ..observability.redaction import redact
from ..protocol.deadletter import (
    ATTEMPTS,
    CATEGORIES,
    CATEGORY,
    ERROR_CLASS,
    EXCEPTION_CAUSE_FQCN,
    EXCEPTION_FQCN,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    FIRST_FAILURE,
    HANDLER,
    KEY,
    LAST_FAILURE,
    MESSAGE_ID,
    OBJECT,
    ORIGINAL_CONSUMER_GROUP,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TIMESTAMP,
    ORIGINAL_TIMESTAMP_TYPE,
    ORIGINAL_TOPIC,
    PARK_AWAKEABLE,
    SCHEMA_VERSION,
    DeadLetterHeaders,
)

__all__ = [
    "ATTEMPTS",
    "CATEGORIES",
    "CATEGORY",
    "ERROR_CLASS",
    "EXCEPTION_CAUSE_FQCN",
    "EXCEPTION_FQCN",
    "EXCEPTION_MESSAGE",
    "EXCEPTION_STACKTRACE",
    "FIRST_FAILURE",
    "HANDLER",
    "KEY",
    "LAST_FAILURE",
    "MESSAGE_ID",
    "OBJECT",
    "ORIGINAL_CONSUMER_GROUP",
    "ORIGINAL_OFFSET",
    "ORIGINAL_PARTITION",
    "ORIGINAL_TIMESTAMP",
    "ORIGINAL_TIMESTAMP_TYPE",
    "ORIGINAL_TOPIC",
    "PARK_AWAKEABLE",
    "SCHEMA_VERSION",
    "DeadLetterHeaders",
    "Failure",
    "dead_letter",
]


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


def dead_letter(
    source: Record, failure: Failure, *, dlq_topic: str, group: str, connect_headers: bool = False
) -> OutRecord:
    """A dead-letter record for `source`, keeping its key, value and headers unchanged.

    With `connect_headers`, Kafka Connect's ``__connect.errors.*`` headers are added too
    (connector name: the consumer group; task id: the partition; stage ``VALUE_CONVERTER`` for a
    poison record, else ``TASK_PUT``; class: ``{object}.{handler}``).
    """
    exc = failure.exc
    cls = type(exc)
    cause = exc.__cause__ or exc.__context__
    now = now_ms()
    fields = DeadLetterHeaders(
        original_topic=source.topic,
        original_partition=source.partition,
        original_offset=source.offset,
        original_timestamp_ms=source.timestamp_ms,
        original_timestamp_type="CreateTime",
        consumer_group=group,
        exception_fqcn=f"{cls.__module__}.{cls.__qualname__}",
        exception_cause_fqcn=f"{type(cause).__module__}.{type(cause).__qualname__}" if cause is not None else None,
        exception_message=redact(str(exc))[:4000],
        stacktrace=redact("".join(traceback.format_exception(exc)))[-16000:],
        object_name=failure.object_name,
        key=failure.key,
        handler=failure.handler,
        message_id=failure.message_id,
        attempts=failure.attempts,
        first_failure_ms=failure.first_failure_ms or now,
        last_failure_ms=failure.last_failure_ms or now,
        error_class=cls.__name__,
        category=failure.category,
        park_awakeable=failure.park_awakeable,
        connect_task_id=str(source.partition),
        connect_stage="VALUE_CONVERTER" if failure.category == "poison" else "TASK_PUT",
        connect_executing_class=(
            f"{failure.object_name}.{failure.handler}" if failure.object_name and failure.handler else None
        ),
    )
    headers = (*source.headers, *fields.encode(connect_headers=connect_headers))
    return OutRecord(dlq_topic, 0, source.key, source.value, headers)
