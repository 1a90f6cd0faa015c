"""`Client`: call handlers, send messages and read session state from asyncio code.

`actors.client.sync_client.SyncClient` wraps it for scripts. A call's message is durable before the
client waits for the reply, so a timeout loses nothing: the message is still processed, and the
same idempotency key fetches the recorded reply later.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar, cast

from pydantic import BaseModel

from eventstore import EventLog, OutRecord, Topics, UsageError, open_log, partition_for, unpack
from eventstore.lifecycle import AsyncResource, cancel_and_wait
from eventstore.log import LogConsumer

from ..clock import now_ms
from ..definitions import Handler
from ..errors import (
    CallTimeoutError,
    InvalidPayloadError,
    InvocationError,
    SendTimeoutError,
    UnknownHandlerError,
    UnknownObjectError,
)
from ..observability import tracing
from ..protocol.awakeables import parse_awakeable_id
from ..protocol.inbox import RESOLVE_HANDLER, STATE_HANDLER, Message, inbox_record, invocation_id, session_key
from ..protocol.large_values import LargeValues, by_reference, load_value
from ..settings import Settings
from .streams import InvocationStream, StreamPosition

log = logging.getLogger(__name__)
SEND_DEADLINE_CHECK = 0.25
"""Seconds between two checks of the sends in flight against their deadlines."""
O = TypeVar("O", bound=BaseModel)  # noqa: E741
R = TypeVar("R", bound=BaseModel | None)
"""A call's reply: the handler's output model, or None for a handler that returns none."""
T = TypeVar("T")

_ERRORS: dict[str, type[InvocationError]] = {
    "UnknownObjectError": UnknownObjectError,
    "UnknownHandlerError": UnknownHandlerError,
    "InvalidPayloadError": InvalidPayloadError,
}


class Client(AsyncResource):
    """Talks to sessions through the log. Use as ``async with Client.connect() as client``."""

    def __init__(self, settings: Settings | None = None, *, log: EventLog | None = None) -> None:
        self.settings = settings or Settings()
        self.topics = Topics(self.settings.namespace)
        self._log = log or open_log(self.settings)
        self._owns_log = log is None
        self._waiting: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        """Replies awaited, by (session, message id): ids are scoped to their session."""
        self._callers: dict[tuple[str, str], int] = {}
        """Calls awaiting each reply: concurrent calls with one idempotency key share a reply."""
        self._replies: LogConsumer | None = None
        self._listener: asyncio.Task[None] | None = None
        self._partitions = 0
        self._reply_partition = 0
        self._in_flight: dict[asyncio.Task[Any], float] = {}
        """Tasks in a send, and when their send is due (see `_expire_sends`)."""
        self._expired: set[asyncio.Task[Any]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._large = LargeValues.of(self.settings.runtime)
        """Where payloads over `blob_threshold_bytes` go, and replies by reference come from."""
        self.send_timeout = 30.0
        """Seconds a send waits for the log to confirm a message (a broker outage ends it with
        `SendTimeoutError`, retryable); `call` spends its own timeout on the send and the reply."""

    @classmethod
    def connect(cls, settings: Settings | None = None, *, log: EventLog | None = None) -> Client:
        """A client to use as an async context manager (it starts on enter)."""
        return cls(settings, log=log)

    async def start(self) -> None:
        """Connect, create the namespace's topics if needed, and start listening for replies."""
        if self._listener is not None:
            return
        if self._owns_log:
            await self._log.start()
        await self._log.create_topics(self.topics.specs(self.settings.partitions))
        self._partitions = await self._log.partition_count(self.topics.inbox)
        self.settings.check_partitions(self.topics.inbox, self._partitions)
        replies = await self._log.partition_count(self.topics.replies)
        self._reply_partition = random.randrange(replies)
        self._replies = await self._log.consumer(self.topics.replies, partitions={self._reply_partition: -1})
        self._listener = asyncio.create_task(self._listen(), name="tether-client-replies")

    async def close(self) -> None:
        """Stop listening and disconnect; pending calls fail with `CallTimeoutError`."""
        await cancel_and_wait(self._watchdog)
        self._watchdog = None
        await cancel_and_wait(self._listener)
        self._listener = None
        if self._replies is not None:
            await self._replies.close()
            self._replies = None
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(CallTimeoutError("client closed before the reply arrived"))
        self._waiting.clear()
        if self._owns_log:
            await self._log.close()

    async def _listen(self) -> None:
        assert self._replies is not None
        while True:
            try:
                records = await self._replies.fetch(0.5)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("reading replies failed; retrying", exc_info=True)
                await asyncio.sleep(0.5)
                continue
            for record in records:
                self._deliver(record.value, record.offset)

    @property
    def awaiting(self) -> list[tuple[str, str]]:
        """The calls waiting for their reply now: (session, message id) each."""
        return list(self._waiting)

    def _deliver(self, value: bytes | None, offset: int) -> None:
        """Hand one reply record to the call waiting for it; a malformed record is skipped."""
        try:
            reply = unpack(value) if value is not None else None
            if not isinstance(reply, dict) or not isinstance(reply.get("id"), str):
                raise ValueError("not a reply map with an id")
        except Exception as exc:
            log.warning("skipped a malformed reply record at offset %d of %s: %s", offset, self.topics.replies, exc)
            return
        session = reply.get("s")
        if isinstance(session, str):
            future = self._waiting.pop((session, reply["id"]), None)
        else:  # written by Tether 0.1, before replies named their session: only an unambiguous id
            matches = [waiting for waiting in self._waiting if waiting[1] == reply["id"]]
            future = self._waiting.pop(matches[0]) if len(matches) == 1 else None
        if future is not None and not future.done():
            future.set_result(reply)

    # -- sending ---------------------------------------------------------------------------
    def _message(
        self,
        object_name: str,
        key: str,
        handler: str,
        payload: Any,
        message_id: str | None,
        reply: bool,
        delay: float | None = None,
    ) -> Message:
        now = now_ms()
        return Message(
            nb=now + int(delay * 1000) if delay else None,
            id=message_id or uuid.uuid4().hex,
            o=object_name,
            k=key,
            h=handler,
            p=payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload,
            rp=self._reply_partition if reply else None,
            ts=now,
            tp=tracing.current_traceparent(),
        )

    def _record(self, message: Message) -> OutRecord:
        return inbox_record(message, self.topics.inbox, self._partitions, self.settings.runtime.max_message_bytes)

    async def send_messages(self, *messages: Message, timeout: float | None = None) -> None:
        """Make prepared inbox `messages` durable, within `timeout` s (default: `send_timeout`).

        For tools that build a `Message` themselves (`tether sessions restart` seeds a journal);
        applications use `send`/`call`, which build and check the message.
        """
        await self._append(*messages, timeout=timeout)

    async def _append(self, *messages: Message, timeout: float | None = None) -> None:
        """Make `messages` durable, within `timeout` s (default: `send_timeout`)."""
        if self._listener is None:
            await self.start()
        if self._large is not None and self._large.threshold is not None:
            messages = tuple([await by_reference(self._large, m) for m in messages])
        records = [self._record(m) for m in messages]  # every size is checked before any is sent
        limit = self.send_timeout if timeout is None else timeout
        # One watchdog for every send in flight, not a timer each: `asyncio.timeout` per send
        # cost ~7 us and a cancelled timer left in the loop's heap, a quarter of W4's send rate.
        task = asyncio.current_task()
        assert task is not None
        self._in_flight[task] = time.monotonic() + limit
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._expire_sends(), name="tether-client-send-deadlines")
        try:
            await self._log.append(records)
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            task.uncancel()
            ids = ", ".join(m.id for m in messages[:3]) + (" ..." if len(messages) > 3 else "")
            raise SendTimeoutError(
                f"the log did not confirm {len(messages)} message(s) ({ids}) within {limit} s (is the broker "
                "up?); they may or may not be durable: retry with the same idempotency key, which applies once"
            ) from None
        finally:
            self._in_flight.pop(task, None)
            self._expired.discard(task)

    async def _expire_sends(self) -> None:
        """Cancel the sends that passed their deadline (checked four times a second)."""
        while self._in_flight:
            await asyncio.sleep(SEND_DEADLINE_CHECK)
            now = time.monotonic()
            for task, deadline in list(self._in_flight.items()):
                if deadline <= now and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()

    async def send(
        self,
        handler: Handler[Any, Any, Any],
        key: str,
        payload: BaseModel,
        *,
        idempotency_key: str | None = None,
        delay: float | None = None,
        timeout: float | None = None,
    ) -> str:
        """Send one-way; returns the message id once the message is durable.

        With `delay` (seconds) the message is delivered no earlier than that, even if every
        worker is down when it falls due (it is delivered when one is back).

        Raises:
            SendTimeoutError: the log did not confirm the message within `timeout` s (default
                `send_timeout`, 30 s); retry with the same idempotency key.
        """
        return await self.send_raw(
            handler.object_name,
            key,
            handler.name,
            payload,
            idempotency_key=idempotency_key,
            delay=delay,
            timeout=timeout,
        )

    async def send_raw(
        self,
        object_name: str,
        key: str,
        handler: str,
        payload: Any,
        *,
        idempotency_key: str | None = None,
        delay: float | None = None,
        timeout: float | None = None,
    ) -> str:
        """`send` by names, with a JSON-like payload (for tools and dynamic callers)."""
        attributes = _span_attributes(object_name, key, handler)
        with tracing.client_span(f"send {object_name}.{handler}", one_way=True, attributes=attributes) as at_end:
            message = self._message(object_name, key, handler, payload, idempotency_key, reply=False, delay=delay)
            await self._append(message, timeout=timeout)
            at_end["tether.message_id"] = message.id
        return message.id

    async def send_many(
        self,
        handler: Handler[Any, Any, Any],
        messages: Iterable[tuple[str, BaseModel]],
        *,
        idempotency_keys: Sequence[str] | None = None,
        timeout: float | None = None,
    ) -> list[str]:
        """Send one-way to many sessions at once; returns the message ids once all are durable.

        One append for the whole batch instead of one per message (a fan-out to thousands of
        sessions, a bulk import). Each session receives its messages in the order given, as if
        they were sent one by one.

        Args:
            handler: The handler every message goes to.
            messages: ``(key, payload)`` pairs.
            idempotency_keys: One per message; sending the batch again with the same keys
                delivers each message once. The batch is not atomic: after an error, some
                messages may be durable, so retry with the same keys.
            timeout: Seconds to wait for the log to confirm the batch (default `send_timeout`).

        Raises:
            MessageTooLargeError: a message is over ``max_message_bytes`` (nothing is sent).
            UsageError: `idempotency_keys` does not have one key per message.
            SendTimeoutError: the log did not confirm the batch within `timeout` s.
        """
        items = list(messages)
        if idempotency_keys is not None and len(idempotency_keys) != len(items):
            raise UsageError(f"{len(idempotency_keys)} idempotency keys for {len(items)} messages; give one each")
        attributes = {**_span_attributes(handler.object_name, None, handler.name), "tether.batch_size": len(items)}
        with tracing.client_span(f"send {handler.object_name}.{handler.name}", one_way=True, attributes=attributes):
            return await self._send_batch(handler, items, idempotency_keys, timeout)

    async def _send_batch(
        self,
        handler: Handler[Any, Any, Any],
        items: list[tuple[str, BaseModel]],
        idempotency_keys: Sequence[str] | None,
        timeout: float | None,
    ) -> list[str]:
        batch = [
            self._message(
                handler.object_name,
                key,
                handler.name,
                payload,
                idempotency_keys[n] if idempotency_keys is not None else None,
                reply=False,
            )
            for n, (key, payload) in enumerate(items)
        ]
        await self._append(*batch, timeout=timeout)
        return [m.id for m in batch]

    async def call(
        self,
        handler: Handler[Any, Any, R],
        key: str,
        payload: BaseModel,
        *,
        timeout: float = 30.0,
        idempotency_key: str | None = None,
    ) -> R:
        """Call a handler and return its typed result.

        Raises:
            InvocationError: the handler failed for good (or a subclass: unknown object or
                handler, invalid payload).
            CallTimeoutError: no reply in `timeout` s; the message is still processed.
            SendTimeoutError: the log did not confirm the message within `timeout` s (a
                broker outage); retry with the same idempotency key.
        """
        result = await self.call_raw(
            handler.object_name, key, handler.name, payload, timeout=timeout, idempotency_key=idempotency_key
        )
        output = cast("type[BaseModel] | None", handler.output_type)  # R is a model here, or None
        return cast(R, result if output is None or result is None else output.model_validate(result))

    async def call_raw(
        self,
        object_name: str,
        key: str,
        handler: str,
        payload: Any,
        *,
        timeout: float = 30.0,
        idempotency_key: str | None = None,
    ) -> Any:
        """`call` by names; returns the JSON-like result."""
        attributes = _span_attributes(object_name, key, handler)
        with tracing.client_span(f"call {object_name}.{handler}", one_way=False, attributes=attributes):
            return await self._call_raw(
                object_name, key, handler, payload, timeout=timeout, idempotency_key=idempotency_key
            )

    async def _call_raw(
        self,
        object_name: str,
        key: str,
        handler: str,
        payload: Any,
        *,
        timeout: float,
        idempotency_key: str | None,
    ) -> Any:
        message = self._message(object_name, key, handler, payload, idempotency_key, reply=True)
        waiting = (message.session, message.id)
        future = self._waiting.get(waiting)
        if future is None or future.done():
            future = self._waiting[waiting] = asyncio.get_running_loop().create_future()
        self._callers[waiting] = self._callers.get(waiting, 0) + 1
        deadline = time.monotonic() + timeout
        try:
            await self._append(message, timeout=timeout)  # a broker outage ends the call in time too
            reply = await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise CallTimeoutError(
                f"no reply from {object_name}/{key}.{handler} within {timeout} s (message "
                f"{message.id} is durable and will be processed; is a worker running?)"
            ) from None
        finally:
            left = self._callers.pop(waiting) - 1
            if left:
                self._callers[waiting] = left
            elif self._waiting.get(waiting) is future:
                del self._waiting[waiting]
        if "err" in reply:
            err = reply["err"]
            cls = _ERRORS.get(err.get("type", ""), InvocationError)
            raise cls(
                err.get("message", ""),
                error_type=err.get("type", "Error"),
                object_name=object_name,
                key=key,
                handler=handler,
                attempts=err.get("attempts"),
            )
        if "okb" in reply:  # a result too large for its record: in the blob store
            return await load_value(self._large, str(reply["okb"]), f"the reply of {object_name}/{key}.{handler}")
        return reply.get("ok")

    def stream(
        self,
        handler: Handler[Any, Any, O],
        key: str,
        payload: BaseModel,
        *,
        timeout: float = 300.0,
        idempotency_key: str | None = None,
    ) -> InvocationStream[O]:
        """Call a handler and read what it streams: ``async for chunk in client.stream(...)``.

        The call is sent when the loop starts; the stream yields each chunk the handler
        publishes with `ctx.stream` (a chunk with ``seq == 0`` after others: a retried attempt
        starts over) and ends with the reply, which ``stream.result()`` then gives (or raises
        the typed error). ``stream.position`` resumes a reader that left (`stream_of`).
        """
        message_id = idempotency_key or uuid.uuid4().hex
        session = session_key(handler.object_name, key).decode()
        stream: InvocationStream[O]

        async def open_call() -> tuple[int, asyncio.Task[Any] | None]:
            await self.start()
            offset = await self._log.end_offset(self.topics.streams, stream.position.partition)
            reply = asyncio.create_task(
                self.call_raw(
                    handler.object_name, key, handler.name, payload, timeout=timeout, idempotency_key=message_id
                )
            )
            return offset, reply

        position = StreamPosition(invocation_id(session, message_id), self._stream_partition(session), 0)
        stream = InvocationStream(
            self._log,
            self.topics,
            position,
            names=(handler.object_name, key, handler.name),
            output_type=handler.output_type,
            timeout=timeout,
            opener=open_call,
            large=self._large,
        )
        return stream

    def stream_of(
        self,
        handler: Handler[Any, Any, O],
        key: str,
        message_id: str,
        *,
        after: StreamPosition | None = None,
        timeout: float = 300.0,
    ) -> InvocationStream[O]:
        """Read the stream of the invocation of `message_id` (as `send` returned it) on `key`.

        With `after` (a reader's `position`) it goes on after the last chunk that reader saw;
        without, it reads the stream from its start. It ends with the invocation's end record: a
        handler that streamed nothing has none (the read then ends with `CallTimeoutError`).
        """
        session = session_key(handler.object_name, key).decode()
        inv = invocation_id(session, message_id)
        if after is not None and after.invocation_id != inv:
            raise UsageError(f"position {after.invocation_id} is not of the invocation {inv}")
        position = after or StreamPosition(inv, self._stream_partition(session), 0)
        return InvocationStream(
            self._log,
            self.topics,
            position,
            names=(handler.object_name, key, handler.name),
            output_type=handler.output_type,
            timeout=timeout,
            large=self._large,
        )

    def _stream_partition(self, session: str) -> int:
        """The streams partition of `session`: its inbox partition, as the worker writes it."""
        return partition_for(session.encode(), self._partitions or self.settings.partitions)

    async def resolve(
        self, awakeable_id: str, value: Any = None, *, timeout: float = 30.0, by: str | None = None
    ) -> bool:
        """Resolve an awakeable; the waiting handler resumes with `value` (JSON-like or model).

        `by` (who resolved it) is recorded with the completion. Returns False if it was
        already completed (the first resolution wins).
        """
        plain = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        return await self._complete(awakeable_id, {"id": awakeable_id, "ok": plain}, timeout, by)

    async def reject(self, awakeable_id: str, reason: str, *, timeout: float = 30.0, by: str | None = None) -> bool:
        """Reject an awakeable; the waiting handler gets a `TerminalError` with `reason`."""
        error = {"type": "Rejected", "message": reason}
        return await self._complete(awakeable_id, {"id": awakeable_id, "err": error}, timeout, by)

    async def _complete(self, awakeable_id: str, payload: dict[str, Any], timeout: float, by: str | None) -> bool:
        if by is not None:
            payload["by"] = by
        try:
            object_name, key, _ = parse_awakeable_id(awakeable_id)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        result = await self.call_raw(
            object_name,
            key,
            RESOLVE_HANDLER,
            payload,
            timeout=timeout,
            idempotency_key=f"{awakeable_id}:complete",
        )
        return bool(result and result.get("accepted"))

    async def state(self, object_name: str, key: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """The session's current state and version: ``{"state": {...}, "version": n}``."""
        result = await self.call_raw(object_name, key, STATE_HANDLER, None, timeout=timeout)
        assert isinstance(result, dict)
        return result


def _span_attributes(object_name: str, key: str | None, handler: str) -> dict[str, Any]:
    out: dict[str, Any] = {"tether.object": object_name, "tether.handler": handler}
    if key is not None:
        out["tether.key"] = key
    return out
