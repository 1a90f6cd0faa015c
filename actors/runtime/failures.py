"""How a message fails: refused (a caller's mistake), dead-lettered, cancelled or parked.

A failure that ends an invocation is part of its session's history (a failed done entry, so a
retried send does not run again) and, unless an operator cancelled it, a dead letter with the
original bytes. With ``on_failure="park"`` the session then waits behind its dead letter until
an operator replays or discards it.
"""

from __future__ import annotations

import logging
from typing import Any

import pydantic

from eventstore.records import OutRecord, Record

from ..clock import now_ms
from ..definitions import Handler
from ..errors import InvalidPayloadError, InvocationCancelledError, error_payload
from ..observability.scope import set_outcome
from ..protocol.awakeables import awakeable_id
from ..protocol.entries import Done, Suspend
from ..protocol.inbox import Message
from .deadletters import Failure
from .partition import Partition
from .routing import caller_error
from .sessions import Session

log = logging.getLogger("actors.runtime.processor")  # one logger for the partition's lifecycle


def invalid_payload(
    handler: Handler[Any, Any, Any], message: Message, exc: pydantic.ValidationError
) -> InvalidPayloadError:
    """The caller's error for a payload that does not validate against `handler`'s input."""
    text = f"payload does not fit {handler.input_type.__qualname__}: {exc.errors(include_url=False)}"
    return caller_error(InvalidPayloadError, text, message)


class Failures:
    """The failure paths of one partition's messages."""

    def __init__(self, partition: Partition) -> None:
        self._p = partition

    def refuse(self, record: Record, message: Message, error: BaseException, offset: int) -> None:
        """A caller's mistake (unknown type or handler, invalid payload): tell the caller.

        Nobody needs to replay a caller's mistake, so a call is answered with the typed error
        and not dead-lettered; a one-way send has no caller to tell, so it is dead-lettered.
        """
        if message.reply_partition is None:
            self.fail(record, message, error, "terminal", 1, [], offset=offset)
            return
        log.info("%s.%s refused: %s", message.session, message.handler, error)
        set_outcome("error", error)
        self._p.commits.finish(offset, [self._p.outputs.reply(message, {"err": error_payload(error)})])

    def unread(self, record: Record, error: BaseException, category: str) -> None:
        """Dead-letter an inbox record as it is: too large to read ("oversize") or undecodable ("poison")."""
        self._p.commits.commit_offsets_soon()
        self._p.commits.finish(record.offset, [self._p.outputs.dead_letter(record, Failure(error, category))])

    def fail(
        self,
        record: Record,
        message: Message,
        exc: BaseException,
        category: str,
        attempts: int,
        records: list[OutRecord],
        *,
        session: Session | None = None,
        first_failure_ms: int = 0,
        last_failure_ms: int = 0,
        offset: int | None = None,
        park: bool = False,
    ) -> None:
        """`message` failed for good: its dead letter (unless cancelled), its failed done entry, its reply."""
        offset = record.offset if offset is None else offset
        cancelled = isinstance(exc, InvocationCancelledError)
        park = park and not cancelled
        park_id = awakeable_id(message.object, message.key, f"park-{message.id}", 0) if park and session else None
        inv_id = message.invocation_id
        error = error_payload(exc)
        error["attempts"] = attempts
        if cancelled:
            # An operator's decision, recorded in the session's history: no dead letter.
            log.warning("%s.%s %s", message.session, message.handler, exc)
            set_outcome("cancelled", exc)
        else:
            log.error(
                "%s.%s failed for good (%s after %d attempt(s)): %s; dead-lettered",
                message.session,
                message.handler,
                category,
                attempts,
                exc,
            )
            set_outcome("dead_lettered", exc)
            failure = Failure(
                exc,
                category,
                attempts,
                first_failure_ms,
                last_failure_ms,
                message.object,
                message.key,
                message.handler,
                message.id,
                park_id,
            )
            records.append(self._p.outputs.dead_letter(record, failure))
        self._p.commits.commit_offsets_soon()
        events_records = 0
        if session is not None and session.state is not None:
            # The failure is part of the session's history: a retried send does not run again.
            session.version += 1
            session.dirty = True
            finished = now_ms()
            session.remember(message.id, {"err": error}, finished, self._p.settings.retention_ms)
            failed = Done(
                message.id, message.handler, [], session.version, record.offset, None, error, attempts, 0, finished
            )
            records.append(self._p.outputs.session_event(session, failed.encode()))
            events_records = 1
            self._p.state.ended(inv_id)
            if park_id is not None:
                # The session waits until an operator replays or discards the dead letter,
                # which resolves the park awakeable (its id is in the dead letter's headers).
                parked = message.model_copy(update={"id": f"park-{message.id}"})
                park_wait = Suspend(parked, record.offset, None, park_id, [], 0, session.version, parked=True)
                self._p.state.waits.suspended[parked.invocation_id] = park_wait
                session.blocked_by = parked.invocation_id
                records.append(self._p.outputs.session_event(session, park_wait.encode()))
                log.warning("%s is parked until dead letter of %s is resolved", message.session, message.id)
        records.extend(self._p.streams.end(message, None, error))
        if message.reply_partition is not None:
            records.append(self._p.outputs.reply(message, {"err": error}))
        self._p.commits.finish(offset, records, events_records=events_records)
