"""A session's place in its partition: state, dedupe window, queue, and lazy rehydration."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from eventstore.codec import unpack

from .definitions import VirtualObject
from .messages import Message


@dataclass
class Session:
    """One session of one partition processor.

    A session is decoded lazily: after a restore it holds its snapshot and the raw entries that
    came after it, and becomes a typed state on its first message. Passivated sessions drop the
    decoded state again and keep only the snapshot they were last written with.
    """

    key: bytes
    object_name: str
    snapshot: bytes | None = None
    """The last snapshot (msgpack of `snapshot_value`), if any; decoded only on load."""
    tail: list[dict[str, Any]] = field(default_factory=list)
    tail_from: float = float("inf")
    """Events-topic offset of the first tail entry (where a restore must start to see it)."""
    state: BaseModel | None = None
    version: int = 0
    recent: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    queue: deque[tuple[int, Message, Any]] = field(default_factory=deque)
    running: bool = False
    blocked_by: str | None = None
    """Id of the suspended invocation that later messages wait behind."""
    dirty: bool = False
    last_used: float = 0.0

    @property
    def loaded(self) -> bool:
        """Whether `state` is decoded and current."""
        return self.state is not None

    def load(self, obj: VirtualObject[Any], recent_limit: int) -> BaseModel:
        """Decode snapshot + tail into `state` (once) and return it."""
        if self.state is not None:
            return self.state
        if self.snapshot is not None:
            snapshot = unpack(self.snapshot)
            state: BaseModel = obj.state_type.model_validate(snapshot["s"])
            self.version = int(snapshot["sv"])
            self.recent = OrderedDict((str(k), v) for k, v in snapshot.get("rc", ()))
        else:
            state = obj.initial_state()
        for entry in self.tail:
            for envelope in entry.get("ev", ()):
                state = obj.fold(state, obj.codec.decode_envelope(envelope))
            self.version = int(entry["sv"])
            if entry["k"] == "done":
                self.remember(entry["i"], reply_of(entry), recent_limit)
        self.tail.clear()
        self.state = state
        return self.state

    def remember(self, message_id: str, reply: dict[str, Any], limit: int) -> None:
        """Keep the reply of a finished message for deduplication (bounded window)."""
        self.recent[message_id] = reply
        while len(self.recent) > limit:
            self.recent.popitem(last=False)

    def snapshot_value(self) -> dict[str, Any]:
        """What a snapshot of this (loaded) session stores."""
        assert self.state is not None
        return {
            "s": self.state.model_dump(mode="json"),
            "sv": self.version,
            "rc": [[k, v] for k, v in self.recent.items()],
        }

    def passivate(self, snapshot: bytes) -> None:
        """Drop the decoded state; `snapshot` (packed `snapshot_value`) must describe it exactly."""
        self.snapshot = snapshot
        self.state = None
        self.recent = OrderedDict()


def reply_of(entry: dict[str, Any]) -> dict[str, Any]:
    """The reply part of a ``done`` entry, as stored for deduplication."""
    if "err" in entry:
        return {"err": entry["err"]}
    return {"ok": entry.get("r")}
