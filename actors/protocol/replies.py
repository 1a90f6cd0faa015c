"""Replies records: key = message id; value ``{"id", "s": session, "ok" | "err"}``.

``s`` since Tether 0.2: a reply is routed by session and message id, never by id alone; a
Tether 0.1 reply has no ``s`` (`Reply.session` is None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventstore.codec import pack


@dataclass(slots=True)  # not frozen: a frozen __init__ doubles the cost of the hot path
class Reply:
    """The outcome of one call, for its caller."""

    message_id: str
    """The call's message id."""
    session: str | None
    """``object/key`` of the session that answered (None in a Tether 0.1 reply)."""
    result: Any = None
    """The handler's result as plain data (when `error` is None)."""
    error: dict[str, Any] | None = None
    """The error payload (`actors.errors.error_payload`), if the call failed."""

    def to_wire(self) -> dict[str, Any]:
        """The msgpack map of this reply."""
        if self.error is not None:
            return {"id": self.message_id, "s": self.session, "err": self.error}
        return {"id": self.message_id, "s": self.session, "ok": self.result}

    def encode(self) -> bytes:
        """Msgpack bytes of this reply."""
        return pack(self.to_wire())

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Reply:
        """The reply of an unpacked replies-topic value (either release's)."""
        session = raw.get("s")
        return cls(
            str(raw["id"]),
            str(session) if session is not None else None,
            raw.get("ok"),
            raw["err"] if "err" in raw else None,
        )
