"""`SyncClient`: the blocking client for scripts, a `Client` on its own event loop thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from ..definitions import Handler
from ..protocol.streams import StreamChunk
from ..settings import Settings
from .async_client import Client
from .streams import InvocationStream, StreamPosition

O = TypeVar("O", bound=BaseModel)  # noqa: E741
T = TypeVar("T")


class SyncClient:
    """A blocking wrapper around `Client` (runs its own event loop in a thread)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="tether-sync-client")
        self._thread.start()
        self._client = Client(settings)
        self._run(self._client.start())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def call(self, handler: Handler[Any, Any, O], key: str, payload: BaseModel, **kwargs: Any) -> O:
        """See `Client.call`."""
        return self._run(self._client.call(handler, key, payload, **kwargs))

    def send(self, handler: Handler[Any, Any, Any], key: str, payload: BaseModel, **kwargs: Any) -> str:
        """See `Client.send`."""
        return self._run(self._client.send(handler, key, payload, **kwargs))

    def send_many(
        self, handler: Handler[Any, Any, Any], messages: Iterable[tuple[str, BaseModel]], **kwargs: Any
    ) -> list[str]:
        """See `Client.send_many`."""
        return self._run(self._client.send_many(handler, messages, **kwargs))

    def stream(self, handler: Handler[Any, Any, O], key: str, payload: BaseModel, **kwargs: Any) -> SyncStream[O]:
        """See `Client.stream`: ``for chunk in client.stream(...)``, then ``.result()``."""
        return SyncStream(self, self._client.stream(handler, key, payload, **kwargs))

    def stream_of(self, handler: Handler[Any, Any, O], key: str, message_id: str, **kwargs: Any) -> SyncStream[O]:
        """See `Client.stream_of`."""
        return SyncStream(self, self._client.stream_of(handler, key, message_id, **kwargs))

    def state(self, object_name: str, key: str) -> dict[str, Any]:
        """See `Client.state`."""
        return self._run(self._client.state(object_name, key))

    def close(self) -> None:
        """Close the client and stop its loop."""
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncStream(Generic[O]):
    """A blocking reader of an `InvocationStream` (see `SyncClient.stream`)."""

    def __init__(self, client: SyncClient, stream: InvocationStream[O]) -> None:
        self._client = client
        self._stream = stream

    def __iter__(self) -> Iterator[StreamChunk]:
        while True:
            try:
                yield self._client._run(self._stream.__anext__())
            except StopAsyncIteration:
                return

    @property
    def position(self) -> StreamPosition:
        """See `InvocationStream.position`."""
        return self._stream.position

    def result(self) -> O | Any:  # noqa: ANN401 - the handler's reply
        """See `InvocationStream.result`."""
        return self._stream.result()

    def close(self) -> None:
        """See `InvocationStream.aclose`."""
        self._client._run(self._stream.aclose())
