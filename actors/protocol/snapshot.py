"""Snapshot records: the state of one session, the version it covers, its recent message ids.

Key ``{object}/{key}`` in the snapshots topic (compacted); header `SNAPSHOT_VERSION_HEADER`;
value ``{"s": state, "sv": version, "rc": [[id, reply, finished_ms], ...]}``. Tether 0.1 wrote
``rc`` items as ``[id, reply]`` (a count of recent ids, not a retention period): they decode with
``finished_ms`` None. Since 0.3, a state too large for the record is in the blob store: ``s`` is
nil and ``sb`` its reference (written only then; `actors.protocol.large_values`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eventstore.codec import pack, unpack

SNAPSHOT_VERSION_HEADER = "tether.version"
"""Header of a snapshot record: the session version it covers (read without decoding it)."""


@dataclass(frozen=True, slots=True)
class Remembered:
    """A finished message of the idempotency retention."""

    message_id: str
    """Its id."""
    reply: dict[str, Any]
    """Its recorded reply: ``{"ok": result}`` or ``{"err": payload}``."""
    finished_ms: int | None
    """When it finished; None in a Tether 0.1 snapshot (the reader picks a time)."""

    def to_wire(self) -> list[Any]:
        """``[id, reply, finished_ms]``."""
        return [self.message_id, self.reply, self.finished_ms]

    @classmethod
    def from_wire(cls, item: Any) -> Remembered:  # noqa: ANN401 - an unpacked list
        """One ``rc`` item, of three elements (0.2) or two (0.1)."""
        if len(item) >= 3:
            return cls(str(item[0]), item[1], int(item[2]))
        return cls(str(item[0]), item[1], None)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One session's snapshot."""

    state: Any
    """The state as JSON-like data (``model_dump(mode="json")``)."""
    version: int
    """The session version (finished invocations and suspensions) it covers."""
    recent: list[Remembered] = field(default_factory=list)
    """The finished messages still within the idempotency retention, oldest first."""
    state_blob: str | None = None
    """The blob reference of the state when it was too large for the record (`state` is then None)."""

    def to_wire(self) -> dict[str, Any]:
        """The msgpack map of this snapshot."""
        wire = {"s": self.state, "sv": self.version, "rc": [r.to_wire() for r in self.recent]}
        if self.state_blob is not None:
            wire["sb"] = self.state_blob
        return wire

    def encode(self) -> bytes:
        """Msgpack bytes of this snapshot."""
        return pack(self.to_wire())

    def headers(self) -> tuple[tuple[str, bytes], ...]:
        """The record headers of this snapshot."""
        return ((SNAPSHOT_VERSION_HEADER, str(self.version).encode()),)

    @classmethod
    def decode(cls, value: bytes) -> Snapshot:
        """The snapshot of a snapshots-topic value (either release's)."""
        raw = unpack(value)
        blob = raw.get("sb")
        return cls(
            raw["s"],
            int(raw["sv"]),
            [Remembered.from_wire(item) for item in raw.get("rc", ())],
            str(blob) if blob is not None else None,
        )


def snapshot_version(value: bytes, header: bytes | None) -> int:
    """The version a snapshot record covers: from its header, else from its value."""
    return int(header) if header is not None else int(unpack(value)["sv"])
