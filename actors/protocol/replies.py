"""Replies records: key = message id; value ``{"id", "s": session, "ok" | "okb" | "err"}``.

``s`` since Tether 0.2: a reply is routed by session and message id, never by id alone; a
Tether 0.1 reply has no ``s`` (`Reply.session` is None). ``okb`` since 0.3: the blob reference
of a result too large for the record (`actors.protocol.large_values`), instead of ``ok``.
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
    result_blob: str | None = None
    """The blob reference of the result, when it was too large for the record."""

    def to_wire(self) -> dict[str, Any]:
        """The msgpack map of this reply."""
        if self.error is not None:
            return {"id": self.message_id, "s": self.session, "err": self.error}
        if self.result_blob is not None:
            return {"id": self.message_id, "s": self.session, "okb": self.result_blob}
        return {"id": self.message_id, "s": self.session, "ok": self.result}

    @classmethod
    def of_outcome(cls, message_id: str, session: str | None, outcome: dict[str, Any]) -> Reply:
        """The reply of a recorded outcome: ``{"ok": r}``, ``{"okb": ref}`` or ``{"err": e}``."""
        blob = outcome.get("okb")
        return cls(message_id, session, outcome.get("ok"), outcome.get("err"), str(blob) if blob is not None else None)

    def encode(self) -> bytes:
        """Msgpack bytes of this reply."""
        return pack(self.to_wire())

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Reply:
        """The reply of an unpacked replies-topic value (either release's)."""
        session = raw.get("s")
        blob = raw.get("okb")
        return cls(
            str(raw["id"]),
            str(session) if session is not None else None,
            raw.get("ok"),
            raw["err"] if "err" in raw else None,
            str(blob) if blob is not None else None,
        )
