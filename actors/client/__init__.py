"""The Python client: call handlers, send messages, read session state.

`Client` is async; `SyncClient` wraps it for scripts. A call's message is durable before the
client waits for the reply, so a timeout loses nothing: the message is still processed, and the
same idempotency key fetches the recorded reply later. The client loads no part of the engine
(an import-linter contract holds it to that).
"""

from ..protocol.streams import StreamChunk
from .async_client import Client
from .streams import InvocationStream, StreamPosition
from .sync_client import SyncClient, SyncStream

__all__ = ["Client", "InvocationStream", "StreamChunk", "StreamPosition", "SyncClient", "SyncStream"]
