"""Streams records: what a handler streams (`ctx.stream`) while it runs, and how its stream ends.

Topic ``{ns}.streams``, keyed and partitioned like the inbox (by session), so one invocation's
records are in one partition, in order. Values are msgpack maps:

- a chunk ``{"k": "chunk", "i": invocation id, "r": run, "a": attempt, "n": sequence, "d": data}``,
  appended outside any transaction as the handler produces it (a reader sees it at once);
- an end ``{"k": "end", "i", "r", "a", "c": chunks, "ok" | "okb" | "err"}``, written in the
  transaction that commits the invocation, so exactly one end per invocation becomes visible
  (``okb``: the blob reference of a reply too large for the record, `large_values`).

``r`` is when the attempt started (epoch ms; attempts order by ``(r, a)``), ``n`` counts from 0
within the attempt. A retried attempt, on this worker or on the one that replaced a dead one,
starts again at ``n = 0`` with a later ``r``: its chunks supersede the earlier attempt's, and the
end names the attempt whose chunks are the stream. Since Tether 0.3 (no older form).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventstore.codec import pack, unpack
from eventstore.errors import EnvelopeDecodeError

__all__ = ["StreamChunk", "StreamEnd", "decode_stream_record"]


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """One chunk a handler streamed (a token, a progress note): plain data."""

    invocation_id: str
    run: int
    """When the attempt that streamed it started (epoch ms)."""
    attempt: int
    """The attempt number on the worker that ran it (1 = first; it restarts at 1 on a new worker)."""
    seq: int
    """Its position within the attempt, from 0."""
    data: Any

    @property
    def run_key(self) -> tuple[int, int]:
        """The attempt's order: a later attempt's chunks supersede an earlier one's."""
        return (self.run, self.attempt)

    def to_wire(self) -> dict[str, Any]:
        """The msgpack map of this chunk."""
        return {"k": "chunk", "i": self.invocation_id, "r": self.run, "a": self.attempt, "n": self.seq, "d": self.data}

    def encode(self) -> bytes:
        """Msgpack bytes of this chunk."""
        return pack(self.to_wire())


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The end of an invocation's stream: the attempt that committed, its chunk count, the outcome."""

    invocation_id: str
    run: int
    attempt: int
    chunks: int
    """How many chunks (``seq`` 0 to ``chunks - 1``) the committed attempt streamed."""
    result: Any = None
    """The handler's reply as plain data (when `error` is None)."""
    error: dict[str, Any] | None = None
    """The error payload, if the invocation failed for good."""
    result_blob: str | None = None
    """The blob reference of the reply when it was too large for the record (``okb``, since
    Tether 0.3, instead of ``ok``)."""

    @property
    def run_key(self) -> tuple[int, int]:
        """The committed attempt's order (see `StreamChunk.run_key`)."""
        return (self.run, self.attempt)

    def to_wire(self) -> dict[str, Any]:
        """The msgpack map of this end."""
        wire: dict[str, Any] = {"k": "end", "i": self.invocation_id, "r": self.run, "a": self.attempt, "c": self.chunks}
        if self.error is not None:
            wire["err"] = self.error
        elif self.result_blob is not None:
            wire["okb"] = self.result_blob
        else:
            wire["ok"] = self.result
        return wire

    def encode(self) -> bytes:
        """Msgpack bytes of this end."""
        return pack(self.to_wire())


def decode_stream_record(value: bytes) -> StreamChunk | StreamEnd | None:
    """The typed streams record of `value`; None for a kind a later release added (skip it).

    Raises:
        DecodeError: not msgpack, not a map, or a chunk or end with missing or mistyped fields.
    """
    raw = unpack(value)
    if not isinstance(raw, dict):
        raise EnvelopeDecodeError(f"a streams record is a map, not {type(raw).__name__}")
    kind = raw.get("k")
    try:
        if kind == "chunk":
            return StreamChunk(_str(raw["i"]), _int(raw["r"]), _int(raw["a"]), _int(raw["n"]), raw.get("d"))
        if kind == "end":
            error = raw.get("err")
            if error is not None and not isinstance(error, dict):
                raise TypeError(f"err is {type(error).__name__}")
            blob = raw.get("okb")
            return StreamEnd(
                _str(raw["i"]),
                _int(raw["r"]),
                _int(raw["a"]),
                _int(raw["c"]),
                raw.get("ok"),
                error,
                _str(blob) if blob is not None else None,
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise EnvelopeDecodeError(f"malformed streams {kind!r} record: {exc!r}") from exc
    if isinstance(kind, str):
        return None
    raise EnvelopeDecodeError(f"not a streams record: kind {kind!r}")


def _int(value: Any) -> int:  # noqa: ANN401 - an unpacked field
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _str(value: Any) -> str:  # noqa: ANN401 - an unpacked field
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value
