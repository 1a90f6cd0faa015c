"""Old home of the inbox message and its ids; they live in `actors.protocol.inbox` now.

Kept so that code importing ``actors.messages`` (applications, tests, the client and the `dlq`
package) goes on working. The events-topic entries are `actors.protocol.entries`, the replies
`actors.protocol.replies`.
"""

from __future__ import annotations

from .protocol.inbox import RESOLVE_HANDLER, STATE_HANDLER, Message, invocation_id, session_key

__all__ = ["RESOLVE_HANDLER", "STATE_HANDLER", "Message", "invocation_id", "session_key"]
