"""A session's place in its partition: state, dedupe window, queue, and lazy rehydration."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from eventstore.codec import unpack

from .definitions import VirtualObject
from .messages import Message
from .waits import now_ms


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
    recent: OrderedDict[str, tuple[int, dict[str, Any]]] = field(default_factory=OrderedDict)
    """Finished message ids of the retention period: id -> (finished at ms, reply), oldest first."""
    queue: deque[tuple[int, Message, Any]] = field(default_factory=deque)
    running: bool = False
    blocked_by: str | None = None
    """Id of the suspended invocation that later messages wait behind."""
    dirty: bool = False
    uncovered_from: int | None = None
    """Events offset a restore must start at to see this session's events that no snapshot
    covers (set while its snapshot is too large to write)."""
    last_used: float = 0.0

    @property
    def loaded(self) -> bool:
        """Whether `state` is decoded and current."""
        return self.state is not None

    def load(self, obj: VirtualObject[Any], retention_ms: int) -> BaseModel:
        """Decode snapshot + tail into `state` (once) and return it."""
        if self.state is not None:
            return self.state
        now = now_ms()
        if self.snapshot is not None:
            snapshot = unpack(self.snapshot)
            state: BaseModel = obj.state_type.model_validate(snapshot["s"])
            self.version = int(snapshot["sv"])
            self.recent = OrderedDict(_remembered(item, now) for item in snapshot.get("rc", ()))
        else:
            state = obj.initial_state()
        for entry in self.tail:
            for envelope in entry.get("ev", ()):
                state = obj.fold(state, obj.codec.decode_envelope(envelope))
            self.version = int(entry["sv"])
            if entry["k"] == "done":
                self.remember(str(entry["i"]), reply_of(entry), int(entry.get("t1") or now), retention_ms)
        self.tail.clear()
        self.state = state
        self.expire(now, retention_ms)
        return self.state

    def remember(self, message_id: str, reply: dict[str, Any], finished_ms: int, retention_ms: int) -> None:
        """Keep the reply of a finished message for deduplication, for `retention_ms`."""
        self.recent[message_id] = (finished_ms, reply)
        self.recent.move_to_end(message_id)
        self.expire(finished_ms, retention_ms)

    def recorded(self, message_id: str, now: int, retention_ms: int) -> dict[str, Any] | None:
        """The recorded reply of `message_id` if it finished within the retention period."""
        found = self.recent.get(message_id)
        if found is None or found[0] < now - retention_ms:
            return None
        return found[1]

    def expire(self, now: int, retention_ms: int) -> None:
        """Forget message ids that finished longer than `retention_ms` ago (oldest first)."""
        cutoff = now - retention_ms
        recent = self.recent
        while recent:
            oldest = next(iter(recent.values()))
            if oldest[0] >= cutoff:
                break
            recent.popitem(last=False)

    def snapshot_value(self) -> dict[str, Any]:
        """What a snapshot of this (loaded) session stores."""
        assert self.state is not None
        return {
            "s": self.state.model_dump(mode="json"),
            "sv": self.version,
            "rc": [[k, reply, at] for k, (at, reply) in self.recent.items()],
        }

    def passivate(self, snapshot: bytes) -> None:
        """Drop the decoded state; `snapshot` (packed `snapshot_value`) must describe it exactly."""
        self.snapshot = snapshot
        self.state = None
        self.recent = OrderedDict()


def _remembered(item: Any, now: int) -> tuple[str, tuple[int, dict[str, Any]]]:
    """One snapshot ``rc`` item: ``[id, reply, finished_ms]``.

    Snapshots written before idempotency became a retention period (Tether 0.1) hold
    ``[id, reply]``: those ids are kept for a full retention period from the upgrade.
    """
    if len(item) >= 3:
        return str(item[0]), (int(item[2]), item[1])
    return str(item[0]), (now, item[1])


def reply_of(entry: dict[str, Any]) -> dict[str, Any]:
    """The reply part of a ``done`` entry, as stored for deduplication."""
    if "err" in entry:
        return {"err": entry["err"]}
    return {"ok": entry.get("r")}
