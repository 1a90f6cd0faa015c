"""What a partition does with streamed chunks: append them at once, end each stream at its commit.

Chunks (`actors.protocol.streams.StreamChunk`) are appended to the streams topic outside any
transaction as `ctx.stream` produces them, so a reader sees them while the handler runs: one
append in flight per partition, carrying every chunk queued meanwhile (in order), so a handler
never waits for the broker per token. The end (`StreamEnd`), naming the attempt that committed
and its chunk count, goes into the transaction that commits (or fails) the invocation, after
the partition's chunks queued until then are appended: exactly one end becomes visible, after
every chunk of that attempt.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from eventstore import EventLog, OutRecord, Topics

from ..errors import RecordTooLargeError
from ..protocol.inbox import Message
from ..protocol.streams import StreamChunk, StreamEnd

log = logging.getLogger(__name__)


class StreamTracker:
    """The streams of one partition's open invocations: the last attempt of each that streamed."""

    __slots__ = (
        "_log",
        "_topics",
        "_partition",
        "_limit",
        "_latest",
        "_last_end",
        "_queued",
        "_queued_done",
        "_flusher",
        "_in_flight",
    )

    def __init__(self, log: EventLog, topics: Topics, partition: int, max_message_bytes: int) -> None:
        self._log = log
        self._topics = topics
        self._partition = partition
        self._limit = max_message_bytes
        self._latest: dict[str, tuple[int, int, int]] = {}
        """invocation id -> (run, attempt, chunks) of its latest attempt that streamed."""
        self._last_end: tuple[str, tuple[int, int, int]] | None = None
        """The stream last ended as a success: an oversize reply then ends it as a failure."""
        self._queued: list[OutRecord] = []
        """Chunks waiting for the next append."""
        self._queued_done: asyncio.Future[None] | None = None
        """Set once the queued chunks are appended."""
        self._in_flight: asyncio.Future[None] | None = None
        """Set once the append in flight is done."""
        self._flusher: asyncio.Task[None] | None = None

    async def publish(self, message: Message, chunk: StreamChunk) -> None:
        """Queue `chunk` for the next append. Raises `RecordTooLargeError` for an oversize chunk."""
        key = message.session.encode()
        value = chunk.encode()
        size = len(key) + len(value)
        if size > self._limit:
            raise RecordTooLargeError(
                f"a streamed chunk of {message.session} is {size} bytes, over max_message_bytes "
                f"({self._limit}): stream smaller chunks",
                size=size,
                limit=self._limit,
            )
        if self._queued_done is None:
            self._queued_done = asyncio.get_running_loop().create_future()
        self._queued.append(OutRecord(self._topics.streams, self._partition, key, value))
        self._latest[chunk.invocation_id] = (chunk.run, chunk.attempt, chunk.seq + 1)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=f"tether-streams-{self._partition}")

    async def _flush(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            done, self._queued_done = self._queued_done, None
            self._in_flight = done
            try:
                await self._log.append(batch)
            except Exception as exc:  # the chunks are lost; the invocation and its end go on
                log.warning(
                    "%d streamed chunks of partition %d were not appended: %r", len(batch), self._partition, exc
                )
            finally:
                if done is not None and not done.done():
                    done.set_result(None)

    async def flush(self) -> None:
        """Wait until every chunk queued so far is appended (before an invocation commits)."""
        waiting = self._queued_done if self._queued else self._in_flight
        if waiting is not None and not waiting.done():
            await asyncio.shield(waiting)

    def end(
        self,
        message: Message,
        result: Any,
        error: dict[str, Any] | None,
        attempt: tuple[int, int, int] | None = None,
        result_blob: str | None = None,
    ) -> list[OutRecord]:
        """The end record of `message`'s stream (none if it never streamed), for its commit.

        `attempt` is the committing attempt's (run, attempt, chunks) when it is known (a
        success); a failure ends the stream of the last attempt that streamed.
        """
        latest = self._latest.pop(message.invocation_id, None)
        if latest is None and self._last_end is not None and self._last_end[0] == message.invocation_id:
            latest = self._last_end[1]  # its success record was refused (oversize): it fails now
        if attempt is None:  # a failure: end the stream of the last attempt that streamed
            if latest is None:
                return []
            attempt = latest
        elif attempt[2] == 0 and latest is None:  # no attempt streamed anything
            return []
        self._last_end = (message.invocation_id, attempt)
        run, number, chunks = attempt
        end = StreamEnd(message.invocation_id, run, number, chunks, result, error, result_blob)
        return [OutRecord(self._topics.streams, self._partition, message.session.encode(), end.encode())]
