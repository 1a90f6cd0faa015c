"""Reading what an invocation streams (`ctx.stream`): `InvocationStream` and `StreamPosition`.

A reader follows one invocation's records in the streams topic partition of its session. It
yields each chunk once, in order; when a retried attempt starts streaming (its chunks have a
later ``(run, attempt)`` and start again at ``seq`` 0), the reader follows it and ignores the
earlier attempt from then on: a chunk with ``seq == 0`` means "start over". The stream ends with
the committed attempt's end record (the reply, or the typed error), or, for `Client.stream`, with
the call's reply when the handler streamed nothing. `position` says where the reader is; a new
reader given it (`Client.stream_of(..., after=position)`) goes on from there, missing nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from eventstore import EventLog, Topics
from eventstore.errors import DecodeError
from eventstore.log import LogConsumer

from ..errors import CallTimeoutError, InvalidPayloadError, InvocationError, UnknownHandlerError, UnknownObjectError
from ..protocol.large_values import LargeValues, load_value
from ..protocol.streams import StreamChunk, StreamEnd, decode_stream_record

__all__ = ["InvocationStream", "StreamPosition"]

log = logging.getLogger(__name__)
O = TypeVar("O", bound=BaseModel)  # noqa: E741
_POLL = 0.2
"""Seconds one fetch of the streams partition waits for records."""
_ERRORS: dict[str, type[InvocationError]] = {
    "UnknownObjectError": UnknownObjectError,
    "UnknownHandlerError": UnknownHandlerError,
    "InvalidPayloadError": InvalidPayloadError,
}


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """Where a reader of one invocation's stream is; a new reader given it resumes there."""

    invocation_id: str
    partition: int
    """The streams topic partition (the session's partition)."""
    offset: int
    """The next offset of that partition to read."""
    run: tuple[int, int] | None = None
    """``(run, attempt)`` of the attempt the reader follows (None before its first chunk)."""
    seq: int = 0
    """How many chunks of that attempt the reader has seen."""


class InvocationStream(Generic[O]):
    """The chunks one invocation streams, then its reply: ``async for chunk in stream``.

    After the loop ends, `result()` gives the typed reply or raises the invocation's typed
    error (`InvocationError`). Close a reader you leave early (``await stream.aclose()``, or use
    it as ``async with``); its `position` resumes it later.
    """

    def __init__(
        self,
        log: EventLog,
        topics: Topics,
        position: StreamPosition,
        *,
        names: tuple[str, str, str],
        output_type: type[O] | None,
        timeout: float,
        opener: Callable[[], Awaitable[tuple[int, asyncio.Task[Any] | None]]] | None = None,
        large: LargeValues | None = None,
    ) -> None:
        self._log = log
        self._topics = topics
        self._position = position
        self._opener = opener
        self._names = names
        self._output_type = output_type
        self._deadline = time.monotonic() + timeout
        self._timeout = timeout
        self._reply: asyncio.Task[Any] | None = None
        self._consumer: LogConsumer | None = None
        self._buffer: list[tuple[StreamChunk, int]] = []
        """Chunks read but not handed out yet, with their offsets."""
        self._end: StreamEnd | None = None
        self._large = large
        self._end_result: Any = None
        """The end's reply, read from the blob store when the end carries a reference."""
        self._done = False

    @property
    def invocation_id(self) -> str:
        """The invocation whose stream this is."""
        return self._position.invocation_id

    @property
    def position(self) -> StreamPosition:
        """Where this reader is: after the last chunk it gave out."""
        return self._position

    @property
    def end(self) -> StreamEnd | None:
        """The stream's end record, once read (None if the stream ended with the call's reply)."""
        return self._end

    def __aiter__(self) -> InvocationStream[O]:
        return self

    async def __anext__(self) -> StreamChunk:
        while not self._buffer:
            if self._done:
                await self.aclose()
                raise StopAsyncIteration
            await self._fetch()
        return self._take()

    def _take(self) -> StreamChunk:
        chunk, offset = self._buffer.pop(0)
        self._position = StreamPosition(
            chunk.invocation_id, self._position.partition, offset + 1, chunk.run_key, chunk.seq + 1
        )
        return chunk

    async def _fetch(self) -> None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            await self.aclose()
            raise CallTimeoutError(f"the stream of {self.invocation_id} did not end within {self._timeout} s")
        if self._opener is not None:  # `Client.stream`: send the call once the reader starts
            opener, self._opener = self._opener, None
            offset, self._reply = await opener()
            self._position = StreamPosition(self.invocation_id, self._position.partition, offset)
        if self._consumer is None:
            self._consumer = await self._log.consumer(
                self._topics.streams, partitions={self._position.partition: self._position.offset}
            )
        records = await self._consumer.fetch(min(_POLL, remaining))
        run, seq, offset = self._position.run, self._position.seq, self._position.offset
        for record in records:
            offset = record.offset + 1
            if self._done or record.value is None:
                continue
            try:
                item = decode_stream_record(record.value)
            except DecodeError as exc:
                log.warning("skipped an undecodable streams record at offset %d: %s", record.offset, exc)
                continue
            if item is None or item.invocation_id != self.invocation_id:
                continue
            if isinstance(item, StreamEnd):
                self._end = item
                self._done = True
                self._end_result = item.result
                if item.result_blob is not None and item.error is None:
                    what = f"the reply of {self.invocation_id}"
                    self._end_result = await load_value(self._large, item.result_blob, what)
                continue
            if run is not None and item.run_key < run:
                continue  # an attempt a later one superseded (or a zombie's)
            if item.run_key != run:
                run, seq = item.run_key, 0
            if item.seq < seq:
                continue  # seen already
            seq = item.seq + 1
            self._buffer.append((item, record.offset))
        if not self._buffer:  # else the position moves as the buffered chunks are handed out
            self._position = StreamPosition(
                self.invocation_id, self._position.partition, offset, self._position.run, self._position.seq
            )
        if not records and not self._done and self._reply is not None and self._reply.done():
            # The reply commits with the stream's end: once the reply is in and the partition
            # holds nothing more, a handler that streamed nothing has no end to wait for.
            end = await self._log.end_offset(self._topics.streams, self._position.partition)
            if self._position.offset >= end:
                self._done = True

    def result(self) -> O | Any:  # noqa: ANN401 - the handler's reply
        """The typed reply, once the stream ended; raises the invocation's typed error."""
        if not self._done:
            raise RuntimeError("the stream has not ended yet: read it to its end first")
        if self._end is not None:
            if self._end.error is not None:
                raise _error(self._end.error, self._names)
            value = self._end_result
        else:
            assert self._reply is not None
            value = self._reply.result()  # raises the call's typed error
        if self._output_type is None or value is None or isinstance(value, BaseModel):
            return value
        return self._output_type.model_validate(value)

    async def aclose(self) -> None:
        """Stop reading (the invocation goes on); `position` resumes a later reader."""
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.close()
        if self._reply is not None and self._done:
            await asyncio.gather(self._reply, return_exceptions=True)

    async def __aenter__(self) -> InvocationStream[O]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _error(err: dict[str, Any], names: tuple[str, str, str]) -> InvocationError:
    object_name, key, handler = names
    cls = _ERRORS.get(str(err.get("type", "")), InvocationError)
    return cls(
        str(err.get("message", "")),
        error_type=str(err.get("type", "Error")),
        object_name=object_name,
        key=key,
        handler=handler,
        attempts=err.get("attempts"),
    )
