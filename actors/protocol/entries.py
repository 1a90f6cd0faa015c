"""Events-topic entries: one typed model per kind, each with one encode and one decode.

Key ``{object}/{key}``; value a msgpack map whose ``k`` names the kind:

- ``done`` (`Done`): an invocation finished: its events, its reply or error, the session's new
  version, its inbox offset. One record per invocation, so its events are atomic on replay.
- ``step`` (`Step`): one journaled step of an unfinished invocation.
- ``sus`` (`Suspend`): an invocation waits on a timer or an awakeable (or a session is parked
  behind its dead letter); the events it emitted so far commit with it.
- ``q`` (`Queued`): a message waits behind a suspended invocation of its session.
- ``dly`` (`Delayed`): a message to deliver at a later time.
- ``awk`` (`Completion`): an awakeable was resolved or rejected.

The keys on the wire are short and stable; the same key means different things in different
kinds (``a`` is the attempts of a ``done`` or ``step`` entry but the awakeable of a ``sus``
entry), which is why only this module reads them. The entries carry no version field (adding
one would change every stored byte): `FORMAT_VERSION` names the revision, and each `from_wire`
upcasts the older ones by their shape (missing keys take the values older releases meant).
An entry of a kind not in `KINDS` (a newer Tether wrote it) decodes as `Unknown`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from eventstore.codec import pack, unpack
from eventstore.errors import DecodeError, EnvelopeDecodeError

from .inbox import Message

FORMAT_VERSION = 2
"""Revision of the events, snapshots and replies formats: 1 is Tether 0.1, 2 since 0.2
(session-scoped journals in checkpoints, ``rc`` items with their finish time, replies naming
their session). Older revisions decode; only the current one is written."""

DONE = "done"
STEP = "step"
SUSPENDED = "sus"
QUEUED = "q"
DELAYED = "dly"
COMPLETION = "awk"

KINDS: dict[str, str] = {
    DONE: "an invocation finished: its events, its reply or error, the session's new version",
    STEP: "one journaled step of an unfinished invocation",
    SUSPENDED: "an invocation waits on a timer or an awakeable; the events it emitted so far",
    QUEUED: "a message waits behind a suspended invocation of its session",
    DELAYED: "a message to deliver at a later time",
    COMPLETION: "an awakeable was resolved or rejected",
}
"""Every kind the runtime writes, with what it means."""

VERSIONED = frozenset({DONE, SUSPENDED})
"""Kinds that carry events and the session's version after them."""

_NOT_IN_CHECKPOINTS = frozenset({"i", "ev", "sv", "evb"})
"""Keys of a wait's entry that its checkpoint form leaves out (its message names the id)."""


class _Encoded:
    """An entry's one encoding: msgpack of its `to_wire` map."""

    __slots__ = ()

    def to_wire(self) -> dict[str, Any]:
        """The msgpack map of this entry."""
        raise NotImplementedError

    def encode(self) -> bytes:
        """Msgpack bytes of this entry."""
        return pack(self.to_wire())


class _OpenWait(_Encoded):
    """A wait that holds its message whole (`Suspend`, `Queued`, `Delayed`)."""

    __slots__ = ()
    message: Message

    @property
    def message_id(self) -> str:
        """The waiting message's id."""
        return self.message.id

    def to_checkpoint(self) -> dict[str, Any]:
        """The open wait as a checkpoint keeps it.

        That is the entry without its id, events and version, with its session's key.
        """
        checkpoint = {k: v for k, v in self.to_wire().items() if k not in _NOT_IN_CHECKPOINTS}
        checkpoint["key"] = self.message.session
        return checkpoint


def _optional_str(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return str(value) if value is not None else None


def _error(raw: dict[str, Any]) -> dict[str, Any] | None:
    error = raw.get("err")
    return error if isinstance(error, dict) else None


def _put_outcome(entry: dict[str, Any], result: Any, error: dict[str, Any] | None, blob: str | None) -> None:  # noqa: ANN401 - plain data
    """The outcome of a ``done`` or ``step`` entry on the wire: ``err``, else ``rb`` (a blob reference), else ``r``."""
    if error is not None:
        entry["err"] = error
    elif blob is not None:
        entry["rb"] = blob
    else:
        entry["r"] = result


def _run_of(raw: dict[str, Any]) -> tuple[Any, dict[str, Any] | None, int, Any, Any, str | None]:
    """``r``, ``err``, ``a``, ``t0``, ``t1`` and ``rb`` of a ``done`` or ``step`` entry of any release.

    Its result, error, attempts (1 when not recorded), start and end times and result blob, in
    the order both dataclasses declare them.
    """
    return raw.get("r"), _error(raw), int(raw.get("a") or 1), raw.get("t0"), raw.get("t1"), _optional_str(raw, "rb")


def _shown(result: Any, error: dict[str, Any] | None, blob: str | None) -> tuple[Any, dict[str, Any] | None]:  # noqa: ANN401 - plain data
    """``(result, error)`` of a ``done`` or ``step`` entry; a result in the blob store as ``{"blob": ref}``."""
    if blob is not None and error is None:
        return {"blob": blob}, None
    return result, error


@dataclass(slots=True)  # not frozen: a frozen __init__ doubles the cost of the hot path
class Done(_Encoded):
    """``done``: an invocation finished."""

    kind: ClassVar[str] = DONE
    message_id: str
    """The message's id (its invocation id is derived with the session)."""
    handler: str
    """The handler that ran."""
    events: list[Any]
    """The events it emitted, as codec envelopes."""
    version: int
    """The session's version after this invocation."""
    inbox_offset: int
    """The inbox offset of its message (-1 in entries written before 0.1 recorded it)."""
    reply: Any = None
    """Its result as plain data (when `error` is None)."""
    error: dict[str, Any] | None = None
    """Its error payload, if it failed for good."""
    attempts: int = 1
    """How many times the handler ran."""
    started_ms: int | None = 0
    """When its first attempt started (None if not recorded)."""
    ended_ms: int | None = 0
    """When it finished (None if not recorded)."""
    reply_blob: str | None = None
    """The blob store reference of its result, when the result was too large for the record
    (``rb`` on the wire since Tether 0.3, instead of ``r``; older entries have none)."""
    events_blob: str | None = None
    """The blob store reference of its events (a list of envelopes), when they were too large
    for the record (``evb`` since Tether 0.3; ``ev`` is then empty). Readers replace `events`
    with the blob's content before they fold them (`actors.protocol.large_values`)."""

    def to_wire(self) -> dict[str, Any]:
        """The msgpack map of this entry."""
        entry: dict[str, Any] = {
            "k": DONE,
            "sv": self.version,
            "o": self.inbox_offset,
            "i": self.message_id,
            "h": self.handler,
            "ev": self.events,
            "a": self.attempts,
            "t0": self.started_ms,
            "t1": self.ended_ms,
        }
        _put_outcome(entry, self.reply, self.error, self.reply_blob)
        if self.events_blob is not None:
            entry["evb"] = self.events_blob
        return entry

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Done:
        """Decode an unpacked ``done`` entry of any release."""
        return cls(
            str(raw["i"]),
            str(raw.get("h") or ""),
            list(raw.get("ev") or ()),
            int(raw["sv"]),
            int(raw.get("o", -1)),
            *_run_of(raw),
            _optional_str(raw, "evb"),
        )

    def recorded_reply(self) -> dict[str, Any]:
        """The reply as a session keeps it for deduplication: ``{"ok": r}``, ``{"okb": ref}`` or ``{"err": e}``."""
        if self.error is not None:
            return {"err": self.error}
        if self.reply_blob is not None:
            return {"okb": self.reply_blob}
        return {"ok": self.reply}

    @property
    def outcome(self) -> tuple[Any, dict[str, Any] | None]:
        """``(result, error)``; a result in the blob store is shown as ``{"blob": ref}``."""
        return _shown(self.reply, self.error, self.reply_blob)


@dataclass(slots=True)  # not frozen: a frozen __init__ doubles the cost of the hot path
class Step(_Encoded):
    """``step``: one journaled step of an unfinished invocation."""

    kind: ClassVar[str] = STEP
    message_id: str
    """The message whose invocation ran the step."""
    index: int
    """Its position in the invocation (0, 1, ...)."""
    name: str
    """The step's name (a replay checks it)."""
    result: Any = None
    """Its result as plain data (when `error` is None)."""
    error: dict[str, Any] | None = None
    """Its error payload, if it failed for good."""
    attempts: int = 1
    """How many times it ran."""
    started_ms: int | None = 0
    """When its first attempt started (None in a seed, which records no times)."""
    ended_ms: int | None = 0
    """When it was journaled (None in a seed)."""
    blob: str | None = None
    """The blob store reference of its result, when the result was too large for the record
    (``rb`` on the wire since Tether 0.3, instead of ``r``; older entries have none)."""

    def to_wire(self) -> dict[str, Any]:
        """The msgpack map of this entry."""
        entry: dict[str, Any] = {
            "k": STEP,
            "i": self.message_id,
            "n": self.index,
            "name": self.name,
            "a": self.attempts,
        }
        if self.started_ms is not None:
            entry["t0"] = self.started_ms
        if self.ended_ms is not None:
            entry["t1"] = self.ended_ms
        _put_outcome(entry, self.result, self.error, self.blob)
        return entry

    def to_seed(self) -> dict[str, Any]:
        """The form ``tether sessions restart --from-step`` puts in a message's seed journal."""
        seed = {
            "k": STEP,
            "i": self.message_id,
            "n": self.index,
            "name": self.name,
            "r": self.result,
            "a": self.attempts,
        }
        if self.blob is not None:
            seed["rb"] = self.blob
        return seed

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Step:
        """Decode an unpacked ``step`` entry (or seed) of any release."""
        return cls(
            str(raw["i"]),
            int(raw["n"]),
            str(raw["name"]),
            *_run_of(raw),
        )

    @property
    def outcome(self) -> tuple[Any, dict[str, Any] | None]:
        """``(result, error)``; a result in the blob store is shown as ``{"blob": ref}``."""
        return _shown(self.result, self.error, self.blob)


@dataclass(frozen=True, slots=True)
class Suspend(_OpenWait):
    """``sus``: an invocation waits (or a session is parked behind its dead letter)."""

    kind: ClassVar[str] = SUSPENDED
    message: Message
    """The waiting message, whole: the inbox offset moves on without it."""
    inbox_offset: int
    """The inbox offset of the message (of its first run)."""
    wake_ms: int | None = None
    """The timer's due time, if any."""
    awakeable: str | None = None
    """The awakeable it waits for, if any."""
    events: list[Any] = field(default_factory=list)
    """Events emitted since its last suspension (they commit with this entry)."""
    emitted: int = 0
    """Events emitted so far in all: a resumed run skips that many `emit` calls."""
    version: int = 0
    """The session's version after `events`."""
    parked: bool = False
    """A session parked behind its dead letter (resolving the dead letter unparks it)."""
    events_blob: str | None = None
    """The blob store reference of `events` when they were too large for the record (``evb``
    since Tether 0.3, as in `Done`)."""

    def to_wire(self) -> dict[str, Any]:
        """The msgpack map of this entry."""
        wire = {
            "k": SUSPENDED,
            "i": self.message.id,
            "m": self.message.to_wire(),
            "o": self.inbox_offset,
            "t": self.wake_ms,
            "a": self.awakeable,
            "ev": self.events,
            "ne": self.emitted,
            "sv": self.version,
            "pk": self.parked,
        }
        if self.events_blob is not None:
            wire["evb"] = self.events_blob
        return wire

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Suspend:
        """Decode an unpacked ``sus`` entry or checkpoint wait (``ne``, ``pk`` are newer than 0.1's first form)."""
        due, awakeable = raw.get("t"), raw.get("a")
        return cls(
            Message.from_wire(raw["m"]),
            int(raw["o"]),
            int(due) if due is not None else None,
            str(awakeable) if awakeable is not None else None,
            list(raw.get("ev") or ()),
            int(raw.get("ne") or 0),
            int(raw.get("sv") or 0),
            bool(raw.get("pk")),
            _optional_str(raw, "evb"),
        )


@dataclass(frozen=True, slots=True)
class Queued(_OpenWait):
    """``q``: a message waits behind a suspended invocation of its session."""

    kind: ClassVar[str] = QUEUED
    message: Message
    """The queued message, whole."""
    inbox_offset: int
    """Its inbox offset."""

    def to_wire(self) -> dict[str, Any]:
        """The msgpack map of this entry."""
        return {"k": QUEUED, "i": self.message.id, "m": self.message.to_wire(), "o": self.inbox_offset}

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Queued:
        """Decode an unpacked ``q`` entry or checkpoint wait."""
        return cls(Message.from_wire(raw["m"]), int(raw["o"]))


@dataclass(frozen=True, slots=True)
class Delayed(_OpenWait):
    """``dly``: a message to deliver at `due_ms`."""

    kind: ClassVar[str] = DELAYED
    message: Message
    """The delayed message, whole."""
    inbox_offset: int
    """Its inbox offset."""
    due_ms: int
    """When to deliver it (wall clock)."""

    def to_wire(self) -> dict[str, Any]:
        """The msgpack map of this entry."""
        return {
            "k": DELAYED,
            "i": self.message.id,
            "m": self.message.to_wire(),
            "o": self.inbox_offset,
            "t": self.due_ms,
        }

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Delayed:
        """Decode an unpacked ``dly`` entry or checkpoint wait."""
        return cls(Message.from_wire(raw["m"]), int(raw["o"]), int(raw["t"]))


@dataclass(frozen=True, slots=True)
class Completion(_Encoded):
    """``awk``: an awakeable was resolved (`result`) or rejected (`error`)."""

    kind: ClassVar[str] = COMPLETION
    message_id: str
    """The id of the message whose invocation created the awakeable ("" when not recorded)."""
    awakeable: str
    """The awakeable's id."""
    result: Any = None
    """The resolution (when `error` is None)."""
    error: dict[str, Any] | None = None
    """The rejection."""
    by: str | None = None
    """Who completed it, when the resolution said (``tether awakeable`` records ``user@host``;
    ``b`` on the wire, since Tether 0.3; absent before)."""

    def outcome_wire(self) -> dict[str, Any]:
        """``{"ok": result}`` or ``{"err": error}``: the outcome as entries and checkpoints hold it."""
        if self.error is not None:
            return {"err": self.error}
        return {"ok": self.result}

    def to_wire(self) -> dict[str, Any]:
        """The msgpack map of this entry."""
        entry = {"k": COMPLETION, "i": self.message_id, "id": self.awakeable, **self.outcome_wire()}
        if self.by is not None:
            entry["b"] = self.by
        return entry

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Completion:
        """Decode an unpacked ``awk`` entry."""
        by = raw.get("b")
        return cls(
            str(raw.get("i", "")), str(raw["id"]), raw.get("ok"), _error(raw), str(by) if by is not None else None
        )

    @classmethod
    def from_outcome(cls, awakeable: str, outcome: dict[str, Any], message_id: str = "") -> Completion:
        """The completion of `awakeable` from an outcome map (a resolution's payload, a checkpoint's ``c``)."""
        by = outcome.get("by")
        return cls(message_id, awakeable, outcome.get("ok"), _error(outcome), str(by)[:200] if by is not None else None)

    @property
    def outcome(self) -> tuple[Any, dict[str, Any] | None]:
        """``(result, error)``."""
        return self.result, self.error


@dataclass(frozen=True, slots=True)
class Unknown:
    """An entry this code cannot read: a kind from a newer Tether, or not an entry at all."""

    kind: str
    """Its kind (`UNDECODABLE` when it has none)."""
    message_id: str = ""
    """Its ``i``, if it has one."""


UNDECODABLE = "(undecodable)"
"""The kind of an events-topic value that is no entry (not msgpack, or malformed)."""

Entry = Done | Step | Suspend | Queued | Delayed | Completion
"""Every kind the runtime writes."""
WaitEntry = Suspend | Queued | Delayed
"""The kinds that open a wait."""

_DECODERS: dict[str, Any] = {
    DONE: Done.from_wire,
    STEP: Step.from_wire,
    SUSPENDED: Suspend.from_wire,
    QUEUED: Queued.from_wire,
    DELAYED: Delayed.from_wire,
    COMPLETION: Completion.from_wire,
}


def from_wire(raw: Any) -> Entry:  # noqa: ANN401 - any unpacked value
    """The typed entry of an unpacked events-topic value.

    Raises:
        EnvelopeDecodeError: it is no entry, of a kind this code does not know, or malformed.
    """
    kind = raw.get("k") if isinstance(raw, dict) else None
    decoder = _DECODERS.get(kind) if isinstance(kind, str) else None
    if decoder is None:
        raise EnvelopeDecodeError(f"not an events-topic entry of a known kind: {kind!r}")
    try:
        entry: Entry = decoder(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise EnvelopeDecodeError(f"malformed {kind!r} entry: {exc!r}") from exc
    return entry


def decode(value: bytes) -> Entry:
    """The typed entry of an events-topic value (the runtime's reader: it raises on anything else).

    Raises:
        DecodeError: not msgpack, or not an entry of a known kind.
    """
    return from_wire(unpack(value))


def read(value: bytes | None) -> Entry | Unknown:
    """The typed entry of an events-topic value, or `Unknown` (operator tools: they skip it)."""
    if value is None:
        return Unknown(UNDECODABLE)
    try:
        raw = unpack(value)
    except DecodeError:
        return Unknown(UNDECODABLE)
    try:
        return from_wire(raw)
    except DecodeError:
        kind = raw.get("k") if isinstance(raw, dict) else None
        message_id = raw.get("i", "") if isinstance(raw, dict) else ""
        future = isinstance(kind, str) and kind not in KINDS
        return Unknown(str(kind) if future else UNDECODABLE, str(message_id))


def attempts_of(entry: Entry | Unknown) -> int | None:
    """How often the invocation or step ran; None for kinds that do not count attempts."""
    return entry.attempts if isinstance(entry, Done | Step) else None


def handler_of(entry: Entry | Unknown) -> str:
    """The handler an entry is about ("" when it names none)."""
    if isinstance(entry, Done):
        return entry.handler
    if isinstance(entry, Suspend | Queued | Delayed):
        return entry.message.handler
    return ""


def outcome_of(entry: Entry | Unknown) -> tuple[Any, dict[str, Any] | None]:
    """``(result, error)`` of a ``done``, ``step`` or ``awk`` entry; ``(None, None)`` for others."""
    if isinstance(entry, Done | Step | Completion):
        return entry.outcome
    return None, None


@dataclass(frozen=True)
class Wait:
    """What a ``sus``, ``q`` or ``dly`` entry waits for; the ``done`` entry of `invocation` ends it."""

    kind: str
    """The entry's kind."""
    invocation: str
    """The message id of the waiting invocation or message."""
    handler: str
    """Its handler."""
    until_ms: int | None = None
    """The timer's due time (a sleep, a backoff, a delayed message), if any."""
    awakeable: str | None = None
    """The awakeable it waits for, if any."""
    parked: bool = False
    """A session parked behind its dead letter (resolving the dead letter unparks it)."""

    @property
    def label(self) -> str:
        """What an operator calls this wait."""
        if self.kind == QUEUED:
            return "queued message"
        if self.kind == DELAYED:
            return "delayed message"
        return "parked session" if self.parked else "suspended invocation"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "kind": self.label,
            "handler": self.handler,
            "until_ms": self.until_ms,
            "awakeable": self.awakeable,
        }


def wait_of(entry: Entry | Unknown) -> Wait | None:
    """The wait a ``sus``, ``q`` or ``dly`` entry opens; None for other kinds."""
    if isinstance(entry, Suspend):
        return Wait(SUSPENDED, entry.message.id, entry.message.handler, entry.wake_ms, entry.awakeable, entry.parked)
    if isinstance(entry, Delayed):
        return Wait(DELAYED, entry.message.id, entry.message.handler, entry.due_ms)
    if isinstance(entry, Queued):
        return Wait(QUEUED, entry.message.id, entry.message.handler)
    return None


class OpenWaits:
    """The waits of one session still open after the entries seen so far, in log order.

    A ``done`` entry ends every wait of its message id. A queued message that had finished
    before (a retried send with the same id) is answered from the dedupe window without a
    ``done`` entry of its own: it counts as waiting only while the session is still blocked.
    """

    def __init__(self) -> None:
        self._waits: dict[tuple[str, str], Wait] = {}
        self._done: set[str] = set()
        self._completed: set[str] = set()

    def see(self, entry: Entry | Unknown) -> None:
        """Take the next entry of the session into account (any kind)."""
        wait = wait_of(entry)
        if wait is not None:
            self._waits[(wait.kind, wait.invocation)] = wait
        elif isinstance(entry, Done):
            self._done.add(entry.message_id)
            for k in [k for k in self._waits if k[1] == entry.message_id]:
                del self._waits[k]
        elif isinstance(entry, Completion):
            self._completed.add(entry.awakeable)

    @property
    def open(self) -> list[Wait]:
        """The open waits."""
        blocked = any(w.kind == SUSPENDED for w in self._waits.values())
        return [w for w in self._waits.values() if blocked or w.kind != QUEUED or w.invocation not in self._done]

    def completed(self, wait: Wait) -> bool:
        """Whether the awakeable `wait` waits for was resolved or rejected (it resumes soon)."""
        return wait.awakeable is not None and wait.awakeable in self._completed
