"""What a partition does with streamed chunks: append each at once, end each stream at its commit.

Chunks (`actors.protocol.streams.StreamChunk`) are appended to the streams topic outside any
transaction as `ctx.stream` produces them, so a reader sees them while the handler runs. The end
(`StreamEnd`), naming the attempt that committed and its chunk count, goes into the transaction
that commits (or fails) the invocation: exactly one becomes visible, after every chunk of that
attempt.
"""

from __future__ import annotations

from typing import Any

from eventstore import EventLog, OutRecord, Topics

from ..errors import RecordTooLargeError
from ..protocol.inbox import Message
from ..protocol.streams import StreamChunk, StreamEnd


class StreamTracker:
    """The streams of one partition's open invocations: the last attempt of each that streamed."""

    __slots__ = ("_log", "_topics", "_partition", "_limit", "_latest")

    def __init__(self, log: EventLog, topics: Topics, partition: int, max_message_bytes: int) -> None:
        self._log = log
        self._topics = topics
        self._partition = partition
        self._limit = max_message_bytes
        self._latest: dict[str, tuple[int, int, int]] = {}
        """invocation id -> (run, attempt, chunks) of its latest attempt that streamed."""

    async def publish(self, message: Message, chunk: StreamChunk) -> None:
        """Append `chunk`; durable on return. Raises `RecordTooLargeError` for an oversize chunk."""
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
        await self._log.append([OutRecord(self._topics.streams, self._partition, key, value)])
        self._latest[chunk.invocation_id] = (chunk.run, chunk.attempt, chunk.seq + 1)

    def end(
        self, message: Message, result: Any, error: dict[str, Any] | None, attempt: tuple[int, int, int] | None = None
    ) -> list[OutRecord]:
        """The end record of `message`'s stream (none if it never streamed), for its commit.

        `attempt` is the committing attempt's (run, attempt, chunks) when it is known (a
        success); a failure ends the stream of the last attempt that streamed.
        """
        latest = self._latest.pop(message.invocation_id, None)
        if attempt is None:  # a failure: end the stream of the last attempt that streamed
            if latest is None:
                return []
            attempt = latest
        elif attempt[2] == 0 and latest is None:  # no attempt streamed anything
            return []
        run, number, chunks = attempt
        end = StreamEnd(message.invocation_id, run, number, chunks, result, error)
        return [OutRecord(self._topics.streams, self._partition, message.session.encode(), end.encode())]
