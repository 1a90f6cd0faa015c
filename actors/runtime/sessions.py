"""A session's place in its partition: state, dedupe window, queue, and lazy rehydration."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from eventstore.records import Record

from ..clock import now_ms
from ..definitions import VirtualObject
from ..protocol import entries
from ..protocol.entries import Done, Suspend
from ..protocol.inbox import Message
from ..protocol.snapshot import Remembered, Snapshot


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
    """The last snapshot (an encoded `Snapshot`), if any; decoded only on load."""
    tail: list[bytes] = field(default_factory=list)
    """Entries with events (`Done`, `Suspend`) that the snapshot or `state` misses, in log
    order, as the events topic holds them (decoded and folded on load: encoded, they take a
    fraction of the memory)."""
    tail_bytes: int = 0
    """Bytes of `tail`."""
    tail_from: float = float("inf")
    """Events-topic offset of the first tail entry (where a restore must start to see it)."""
    state: BaseModel | None = None
    version: int = 0
    recent: OrderedDict[str, tuple[int, dict[str, Any]]] = field(default_factory=OrderedDict)
    """Finished message ids of the retention period: id -> (finished at ms, reply), oldest first."""
    queue: deque[tuple[int, Message, Record]] = field(default_factory=deque)
    """Messages to run, in order: (inbox offset or `NO_OFFSET`, message, its inbox record)."""
    running: bool = False
    current: Message | None = None
    """The exclusive invocation running now (between its attempts too), if any."""
    blocked_by: str | None = None
    """Id of the suspended invocation that later messages wait behind."""
    dirty: bool = False
    uncovered_from: int | None = None
    """Events offset a restore must start at to see this session's events that no snapshot
    covers (set while its snapshot is too large to write)."""
    last_used: float = 0.0

    @property
    def loaded(self) -> bool:
        """Whether `state` is decoded and current (no entries left to fold onto it)."""
        return self.state is not None and not self.tail

    def load(self, obj: VirtualObject[Any], retention_ms: int) -> BaseModel:
        """Decode snapshot + tail into `state` (once) and return it.

        A restore may fold a session early (to bound its memory) and go on adding to its tail:
        the tail is then folded onto that state.
        """
        if self.state is not None and not self.tail:
            return self.state
        now = now_ms()
        if self.state is not None:
            state: BaseModel = self.state
        elif self.snapshot is not None:
            snapshot = Snapshot.decode(self.snapshot)
            state = obj.state_type.model_validate(snapshot.state)
            self.version = snapshot.version
            self.recent = OrderedDict(_remembered(item, now) for item in snapshot.recent)
        else:
            state = obj.initial_state()
        for value in self.tail:
            entry = entries.decode(value)
            assert isinstance(entry, Done | Suspend), "a session's tail holds done and suspend entries only"
            for envelope in entry.events:
                state = obj.fold(state, obj.codec.decode_envelope(envelope))
            self.version = entry.version
            if isinstance(entry, Done):
                self.remember(entry.message_id, entry.recorded_reply(), int(entry.ended_ms or now), retention_ms)
        self.tail.clear()
        self.tail_bytes = 0
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

    def to_snapshot(self, state_blob: str | None = None) -> Snapshot:
        """A snapshot of this (loaded) session; with `state_blob`, its state is that blob."""
        assert self.state is not None
        return Snapshot(
            self.state.model_dump(mode="json") if state_blob is None else None,
            self.version,
            [Remembered(k, reply, at) for k, (at, reply) in self.recent.items()],
            state_blob,
        )

    def add_tail(self, value: bytes, version: int, offset: int) -> None:
        """Keep an entry with events that the snapshot misses, to fold when the session loads.

        `value` is the events-topic record of an entry that brings the session to `version`.

        The session is dirty until a checkpoint covers the entry, loaded or not, or the next
        checkpoint would move the restore start past it.
        """
        self.tail.append(value)
        self.tail_bytes += len(value)
        self.version = version
        self.dirty = True
        self.tail_from = min(self.tail_from, offset)

    def passivate(self, snapshot: bytes) -> None:
        """Drop the decoded state; `snapshot` (an encoded `to_snapshot()`) must describe it exactly."""
        self.snapshot = snapshot
        self.state = None
        self.recent = OrderedDict()


def session_of(sessions: dict[bytes, Session], key: bytes) -> Session:
    """The session of record key `key` in `sessions` (added, empty, if new)."""
    session = sessions.get(key)
    if session is None:
        object_name = key.decode(errors="replace").split("/", 1)[0]
        session = sessions[key] = Session(key=key, object_name=object_name)
    return session


def _remembered(item: Remembered, now: int) -> tuple[str, tuple[int, dict[str, Any]]]:
    """One remembered message as the dedupe window keeps it.

    Snapshots written before idempotency became a retention period (Tether 0.1) hold no finish
    time: those ids are kept for a full retention period from the upgrade.
    """
    finished = item.finished_ms if item.finished_ms is not None else now
    return item.message_id, (finished, item.reply)
