"""The replay writer: a chunk's inbox messages and their status records in one transaction.

A replay run opens one transactional writer with the id ``{namespace}-dlq-replayer``. Each
chunk of replays is one transaction holding every inbox message of the chunk and the
``replayed`` status record of each of its dead letters, so a dead letter's message and its
status become durable together or not at all, whatever stops the replayer (Ctrl-C, SIGKILL, a
broker outage) and wherever.

All replays of a namespace share that transactional id, so a replay that starts fences every
older one: a zombie replayer (a killed process whose transaction is still open) is aborted at
once instead of holding the inbox partitions it wrote to for the transaction timeout, and two
operators replaying at the same time cannot both send a dead letter that both saw pending. The
older replay stops at its next chunk with `ReplayTakenOverError`. Replays of one namespace
therefore run one at a time, even for disjoint selections: that is the price of exactly-once,
and replays are short.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from actors import Settings
from actors.observability import tracing
from actors.protocol.awakeables import parse_awakeable_id
from actors.protocol.inbox import RESOLVE_HANDLER, Message, inbox_record
from eventstore import EventLog, OutRecord, ProducerFencedError, Topics
from eventstore.log import TransactionalWriter

from .errors import ReplayTakenOverError
from .records import DeadLetter
from .status import Resolution, StatusStore

WRITER_ID = "{namespace}-dlq-replayer"
"""Transactional id of a namespace's replayer; one replay of a namespace runs at a time."""
UNPARKED = "resolved by an operator"
"""The resolution of a park whose dead letter is replayed to another session."""


def replay_message(letter: DeadLetter, object_name: str, key: str, handler: str, payload: Any) -> Message:
    """The inbox message that replays `letter` (its id is ``dlq-replay:{dead letter id}``).

    It carries the trace context of the message that failed, so the replayed invocation joins
    the trace it failed in (the replayer's own, when the original had none). A payload that the
    failed message kept in the blob store (``pb``) and a replay does not change (None) is sent
    as the same reference: the replay needs that blob. A new payload (a transform's) is in the
    message; the replayer then stores it by reference when it is over the threshold, as a
    client's send does (`actors.protocol.large_values.by_reference`).
    """
    original = letter.message.trace_parent if letter.message is not None else None
    blob = letter.message.payload_blob if letter.message is not None and payload is None else None
    return Message(
        id=letter.replay_message_id,
        o=object_name,
        k=key,
        h=handler,
        p=payload,
        ts=int(time.time() * 1000),
        tp=original or tracing.current_traceparent(),
        pb=blob,
    )


class ReplaySender:
    """One replay run's transactional writer on the inbox and control topics.

    `open` fences every older replayer of the namespace; read the statuses to act on after it,
    so that they include everything a fenced replayer committed.
    """

    def __init__(self, log: EventLog, settings: Settings, statuses: StatusStore) -> None:
        self._log = log
        self._settings = settings
        self._topics = Topics(settings.namespace)
        self._statuses = statuses
        self._writer: TransactionalWriter | None = None
        self._partitions = 0

    @property
    def is_open(self) -> bool:
        """Whether `open` was called (and `close` not yet)."""
        return self._writer is not None

    async def open(self) -> None:
        """Create the namespace's topics if needed and open the writer, fencing older replayers.

        Raises:
            LogUnavailableError: the log cannot be reached.
        """
        if self._writer is not None:
            return
        await self._log.create_topics(self._topics.specs(self._settings.partitions))
        self._partitions = await self._log.partition_count(self._topics.inbox)
        await self._statuses.ensure_topic()
        self._writer = await self._log.writer(WRITER_ID.format(namespace=self._settings.namespace))

    async def close(self) -> None:
        """Release the writer (an open transaction is aborted); idempotent."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await writer.close()

    def _record(self, message: Message) -> OutRecord:
        """The inbox record of `message`, refused like the client refuses an oversize one."""
        return inbox_record(message, self._topics.inbox, self._partitions, self._settings.runtime.max_message_bytes)

    def records(self, letter: DeadLetter, message: Message) -> list[OutRecord]:
        """The inbox records that replay `letter` as `message`.

        One record, unless the session is parked behind `letter`. Then the first record
        resolves the park, carrying the replay when it goes to the parked session, so that it
        runs before the messages that queued behind the park; the second is the replay as a
        plain message, for a park that was resolved before (a discard unparks): the runtime
        answers it as a duplicate when the carried replay ran. Nothing waits for a reply, so the
        whole chunk stays one transaction.

        Raises:
            MessageTooLargeError: the message is over ``max_message_bytes``.
        """
        plain = self._record(message)
        if not letter.park_awakeable:
            return [plain]
        awakeable = letter.park_awakeable
        object_name, key, _ = parse_awakeable_id(awakeable)
        same_session = (message.object, message.key) == (object_name, key)
        value: Any = {"replay": message.model_dump(by_alias=True)} if same_session else UNPARKED
        resolve = Message(
            id=f"{awakeable}:complete",  # the id a client's resolve uses: the first one counts
            o=object_name,
            k=key,
            h=RESOLVE_HANDLER,
            p={"id": awakeable, "ok": value},
            ts=message.timestamp_ms,
        )
        return [self._record(resolve), plain]

    async def commit(self, records: Sequence[OutRecord], resolutions: Sequence[Resolution]) -> None:
        """Append `records` and the status records of `resolutions` in one transaction.

        Durable on return; on any error (or a cancellation) nothing of it is visible.

        Raises:
            ReplayTakenOverError: a newer replay of the namespace fenced this one.
            LogUnavailableError: the log became unreachable.
        """
        if not records and not resolutions:
            return
        if self._writer is None:
            await self.open()
        assert self._writer is not None
        try:
            await self._writer.commit([*records, *self._statuses.records(resolutions)])
        except ProducerFencedError as exc:
            await self.close()
            raise ReplayTakenOverError(namespace=self._settings.namespace) from exc
