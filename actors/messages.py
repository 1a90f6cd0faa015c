"""What travels on the inbox, events and replies topics, as msgpack maps.

Inbox record: key ``{object}/{key}``; value `Message`.
Events record: key ``{object}/{key}``; value one of:
- ``{"k": "done", ...}``: an invocation finished: its events, its reply or error, the message id
  (the dedupe record). One record per invocation, so its events are atomic even on replay.
- ``{"k": "step", ...}``: one journaled step of an unfinished invocation.
Replies record: key = message id; value ``{"id", "s": session, "ok"?: result, "err"?: {...}}``
(``s`` since Tether 0.2: a reply is routed by session and message id, never by id alone).

Message ids (and so idempotency keys) are scoped to their session: the same id sent to two
sessions is two messages. Everything the runtime derives from a message (`invocation_id`,
journals, waits, timers, `ctx.uuid()`, `ctx.random`) starts from the pair.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from eventstore.codec import pack, unpack
from eventstore.errors import EnvelopeDecodeError

STATE_HANDLER = "__state__"
"""Handler name of the built-in read of a session's state (`Client.state`)."""
RESOLVE_HANDLER = "__resolve__"
"""Handler name of an awakeable's completion (`Client.resolve` / `reject`)."""


class Message(BaseModel):
    """A message to a session."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Unique per message; the idempotency key when the sender gave one."""
    object: str = Field(alias="o")
    """Session type."""
    key: str = Field(alias="k")
    """Session key."""
    handler: str = Field(alias="h")
    """Handler name."""
    payload: Any = Field(alias="p")
    """The handler's input as JSON-like data (validated by the handler's model)."""
    reply_partition: int | None = Field(default=None, alias="rp")
    """Where the caller listens; None for a one-way send."""
    timestamp_ms: int = Field(alias="ts")
    """When the sender created it; the invocation's logical `now`."""
    not_before_ms: int | None = Field(default=None, alias="nb")
    """Deliver no earlier than this wall-clock time (a delayed send)."""
    seed_journal: list[dict[str, Any]] | None = Field(default=None, alias="sj")
    """Steps to reuse instead of running them (`tether sessions restart --from-step`)."""

    @property
    def session(self) -> str:
        """``object/key``: the record key and the unit of ordering."""
        return f"{self.object}/{self.key}"

    @property
    def invocation_id(self) -> str:
        """The id of this message's invocation: unique per session and message id."""
        return invocation_id(self.session, self.id)

    def encode(self) -> bytes:
        """Msgpack bytes of this message."""
        return pack(self.model_dump(by_alias=True))

    @classmethod
    def decode(cls, data: bytes | None) -> Message:
        """Decode an inbox value; raises `EnvelopeDecodeError` for anything else."""
        if data is None:
            raise EnvelopeDecodeError("inbox record has no value")
        raw = unpack(data)
        try:
            return cls.model_validate(raw)
        except Exception as exc:
            raise EnvelopeDecodeError(f"not a Tether message: {exc}") from exc


def invocation_id(session: str, message_id: str) -> str:
    """``inv_`` + 26 base32 characters of a hash of (session, message id).

    Injective in practice (128 bits) whatever characters keys and ids contain, so no choice of
    key or idempotency key makes two sessions' invocations share an id.
    """
    digest = hashlib.blake2b(pack([session, message_id]), digest_size=16).digest()
    return "inv_" + base64.b32encode(digest).decode().rstrip("=").lower()


def session_key(object_name: str, key: str) -> bytes:
    """The record key of a session."""
    return f"{object_name}/{key}".encode()


def done_entry(
    message_id: str,
    handler: str,
    events: list[Any],
    *,
    reply: Any = None,
    error: dict[str, Any] | None = None,
    attempts: int = 1,
    started_ms: int = 0,
    ended_ms: int = 0,
    version: int,
    inbox_offset: int,
) -> bytes:
    """An events-topic value that completes an invocation; `version` is the session's new one."""
    entry: dict[str, Any] = {
        "k": "done",
        "sv": version,
        "o": inbox_offset,
        "i": message_id,
        "h": handler,
        "ev": events,
        "a": attempts,
        "t0": started_ms,
        "t1": ended_ms,
    }
    if error is not None:
        entry["err"] = error
    else:
        entry["r"] = reply
    return pack(entry)


def step_entry(
    message_id: str,
    index: int,
    name: str,
    *,
    result: Any = None,
    error: dict[str, Any] | None = None,
    attempts: int = 1,
    started_ms: int = 0,
    ended_ms: int = 0,
) -> bytes:
    """An events-topic value that journals one step."""
    entry: dict[str, Any] = {
        "k": "step",
        "i": message_id,
        "n": index,
        "name": name,
        "a": attempts,
        "t0": started_ms,
        "t1": ended_ms,
    }
    if error is not None:
        entry["err"] = error
    else:
        entry["r"] = result
    return pack(entry)


def reply_value(message_id: str, session: str, *, result: Any = None, error: dict[str, Any] | None = None) -> bytes:
    """A replies-topic value: routed to its caller by (session, message id)."""
    if error is not None:
        return pack({"id": message_id, "s": session, "err": error})
    return pack({"id": message_id, "s": session, "ok": result})
