"""Inbox records: a message to a session, and the ids derived from it.

Key ``{object}/{key}``; value `Message` as a msgpack map with short keys (``id``, ``o``, ``k``,
``h``, ``p``, ``rp``, ``ts``, ``nb``, ``sj``, ``tp``, ``pb``). Messages written before ``nb`` and
``sj`` existed decode with their defaults. ``tp`` (since 0.3: the sender's W3C ``traceparent``) is
written only when the sender traced the message, so an untraced message has the bytes it had
before; messages without it decode with None. ``pb`` (since 0.3) is the blob reference of a
payload too large for the record (``p`` is then nil, see `actors.protocol.large_values`); it is
written only then.

Message ids (and so idempotency keys) are scoped to their session: the same id sent to two
sessions is two messages. Everything the runtime derives from a message (`invocation_id`,
journals, waits, timers, `ctx.uuid()`, `ctx.random`) starts from the pair.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from eventstore.codec import pack, unpack
from eventstore.errors import EnvelopeDecodeError
from eventstore.records import OutRecord
from eventstore.topics import partition_for

from ..errors import MessageTooLargeError

STATE_HANDLER = "__state__"
"""Handler name of the built-in read of a session's state (`Client.state`)."""
RESOLVE_HANDLER = "__resolve__"
"""Handler name of an awakeable's completion (`Client.resolve` / `reject`)."""
RESERVED_HANDLERS = frozenset({STATE_HANDLER, RESOLVE_HANDLER})
"""Handler names the runtime answers itself; no session type may define them."""


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
    """Steps to reuse instead of running them (`tether sessions restart --from-step`), in the
    seed form of `actors.protocol.entries.Step.to_seed`."""
    trace_parent: str | None = Field(default=None, alias="tp", max_length=128)
    """The W3C ``traceparent`` of the span that sent it (None when the sender traced nothing)."""
    payload_blob: str | None = Field(default=None, alias="pb", max_length=128)
    """The blob store reference of the payload when it was too large for the record (`payload`
    is then None); None for a payload in the record."""

    @property
    def session(self) -> str:
        """``object/key``: the record key and the unit of ordering."""
        return f"{self.object}/{self.key}"

    @property
    def invocation_id(self) -> str:
        """The id of this message's invocation: unique per session and message id."""
        return invocation_id(self.session, self.id)

    def to_wire(self) -> dict[str, Any]:
        """The msgpack map of this message (also embedded in wait entries).

        ``tp`` and ``pb`` are left out when None: such a message keeps the bytes of earlier releases.
        """
        wire = self.model_dump(by_alias=True)
        if wire["tp"] is None:
            del wire["tp"]
        if wire["pb"] is None:
            del wire["pb"]
        return wire

    @classmethod
    def from_wire(cls, raw: Any) -> Message:  # noqa: ANN401 - any unpacked value
        """The message of a map written by `to_wire` (of any release)."""
        return cls.model_validate(raw)

    def encode(self) -> bytes:
        """Msgpack bytes of this message."""
        return pack(self.to_wire())

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


_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
_BASE32_PAIRS = [a + b for a in _BASE32 for b in _BASE32]
"""Two base32 digits per 10 bits: `base64.b32encode` is pure Python and took 4 of the 6 us an
invocation id cost (a W4 profile: several per message)."""


@functools.lru_cache(maxsize=8192)
def invocation_id(session: str, message_id: str) -> str:
    """``inv_`` + 26 base32 characters (lower case) of a blake2b-128 of (session, message id).

    Injective in practice (128 bits) whatever characters keys and ids contain, so no choice of
    key or idempotency key makes two sessions' invocations share an id. Cached: the runtime asks
    for one message's id several times while it handles it.
    """
    digest = hashlib.blake2b(pack([session, message_id]), digest_size=16).digest()
    bits = int.from_bytes(digest, "big") << 2  # 130 bits: base32's zero padding of the last digit
    return "inv_" + "".join([_BASE32_PAIRS[(bits >> shift) & 1023] for shift in range(120, -1, -10)])


def session_key(object_name: str, key: str) -> bytes:
    """The record key of a session."""
    return f"{object_name}/{key}".encode()


def inbox_record(message: Message, inbox: str, partitions: int, limit: int) -> OutRecord:
    """The inbox record of `message`; `MessageTooLargeError` if it is over `limit` bytes."""
    key = session_key(message.object, message.key)
    value = message.encode()
    if len(value) + len(key) > limit:
        raise MessageTooLargeError(
            f"message to {message.session}.{message.handler} is {len(value) + len(key)} bytes, "
            f"over max_message_bytes={limit}; store large inputs elsewhere and send a reference"
        )
    return OutRecord(inbox, partition_for(key, partitions), key, value)
