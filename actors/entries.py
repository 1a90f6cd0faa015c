"""The kinds of entry the runtime writes to the events topic, as operator tools read them back.

The writers are `actors.messages` (``done``, ``step``) and `actors.waits` (``sus``, ``q``,
``dly``, ``awk``). Readers go through the functions here instead of indexing one-letter keys:
the same key means different things in different kinds (``a`` is the attempts of a ``done`` or
``step`` entry but the awakeable of a ``sus`` entry). An entry of a kind not listed in `KINDS`
(a newer Tether wrote it) is skipped by every reader, and the reader says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
"""Kinds that carry events (``ev``) and the session's version after them (``sv``)."""


def kind_of(entry: Any) -> str | None:
    """The kind of an unpacked events-topic value; None when it is no entry at all."""
    if isinstance(entry, dict) and isinstance(entry.get("k"), str):
        return str(entry["k"])
    return None


def known(entry: Any) -> bool:
    """Whether this code can read `entry` (its kind is one of `KINDS`)."""
    return kind_of(entry) in KINDS


def attempts_of(entry: dict[str, Any]) -> int | None:
    """How often the invocation or step ran; None for kinds that do not count attempts."""
    if entry.get("k") in (DONE, STEP) and entry.get("a") is not None:
        return int(entry["a"])
    return None


def handler_of(entry: dict[str, Any]) -> str:
    """The handler an entry is about ("" when it names none)."""
    if entry.get("k") == DONE:
        return str(entry.get("h") or "")
    message = entry.get("m")
    if isinstance(message, dict):
        return str(message.get("h") or "")
    return ""


def outcome_of(entry: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    """``(result, error)`` of a ``done``, ``step`` or ``awk`` entry (error None on success)."""
    error = entry.get("err")
    if isinstance(error, dict):
        return None, error
    if entry.get("k") == COMPLETION:
        return entry.get("ok"), None
    return entry.get("r"), None


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


def wait_of(entry: dict[str, Any]) -> Wait | None:
    """The wait a ``sus``, ``q`` or ``dly`` entry opens; None for other kinds."""
    kind = entry.get("k")
    if kind not in (SUSPENDED, QUEUED, DELAYED):
        return None
    due = entry.get("t")
    awakeable = entry.get("a") if kind == SUSPENDED else None
    return Wait(
        kind=str(kind),
        invocation=str(entry.get("i")),
        handler=handler_of(entry),
        until_ms=int(due) if due is not None else None,
        awakeable=str(awakeable) if awakeable is not None else None,
        parked=bool(entry.get("pk")),
    )


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

    def see(self, entry: dict[str, Any]) -> None:
        """Take the next entry of the session into account (any kind)."""
        wait = wait_of(entry)
        if wait is not None:
            self._waits[(wait.kind, wait.invocation)] = wait
        elif entry.get("k") == DONE:
            invocation = str(entry.get("i"))
            self._done.add(invocation)
            for k in [k for k in self._waits if k[1] == invocation]:
                del self._waits[k]
        elif entry.get("k") == COMPLETION:
            self._completed.add(str(entry.get("id")))

    @property
    def open(self) -> list[Wait]:
        """The open waits."""
        blocked = any(w.kind == SUSPENDED for w in self._waits.values())
        return [w for w in self._waits.values() if blocked or w.kind != QUEUED or w.invocation not in self._done]

    def completed(self, wait: Wait) -> bool:
        """Whether the awakeable `wait` waits for was resolved or rejected (it resumes soon)."""
        return wait.awakeable is not None and wait.awakeable in self._completed
