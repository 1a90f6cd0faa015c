"""The checkpoint record: where the snapshots before it end, and what else a restore needs.

Key `CHECKPOINT_KEY` in the snapshots topic; value ``{"x": start, "js": journals, "j": legacy
journals, "d": done offsets, "w": open waits, "c": completions}``:

- ``x``: the events offset a restore starts reading at;
- ``js``: open invocations' journals by invocation id (since 0.2), ``[[id, [[n, step], ...]], ...]``;
- ``j``: journals by message id: all of them in a Tether 0.1 checkpoint (which has no ``js``),
  else those adopted from one and not yet resumed;
- ``d``: inbox offsets above the committed one that already finished;
- ``w``: every open wait, as `Suspend`/`Queued`/`Delayed` checkpoint maps (with ``key``);
- ``c``: awakeable completions, ``[[awakeable id, {"ok" | "err"}], ...]`` (a checkpoint taken after
  a restore may hold whole ``awk`` entries there: they decode alike).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eventstore.codec import pack, unpack

from .entries import DELAYED, QUEUED, SUSPENDED, Completion, Delayed, Queued, Step, Suspend

CHECKPOINT_KEY = b"__checkpoint__"
"""Key of the record in the snapshots topic that makes the snapshots before it a checkpoint."""

Journal = dict[int, Step]
"""One invocation's journaled steps by index."""


def _journals_to_wire(journals: dict[str, Journal]) -> list[Any]:
    return [[i, [[n, step.to_wire()] for n, step in steps.items()]] for i, steps in journals.items()]


def _journals_from_wire(raw: Any) -> dict[str, Journal]:  # noqa: ANN401 - an unpacked list
    return {str(i): {int(n): Step.from_wire(e) for n, e in steps} for i, steps in raw}


def wait_from_checkpoint(raw: dict[str, Any]) -> Suspend | Queued | Delayed:
    """One ``w`` item."""
    kind = raw["k"]
    if kind == SUSPENDED:
        return Suspend.from_wire(raw)
    if kind == QUEUED:
        return Queued.from_wire(raw)
    if kind == DELAYED:
        return Delayed.from_wire(raw)
    raise ValueError(f"checkpoint wait of unknown kind {kind!r}")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One partition's checkpoint."""

    start: int
    """Events offset a restore starts reading at."""
    journals: dict[str, Journal] = field(default_factory=dict)
    """Open invocations' journals by invocation id."""
    legacy_journals: dict[str, Journal] | None = None
    """Journals by message id (Tether 0.1's form): every journal of a 0.1 checkpoint, and those
    of them a 0.2 checkpoint still carries because their invocations have not run since."""
    done_offsets: list[int] = field(default_factory=list)
    """Inbox offsets above the committed one whose effects are already in the log."""
    waits: list[Suspend | Queued | Delayed] = field(default_factory=list)
    """Every open wait."""
    completions: dict[str, Completion] = field(default_factory=dict)
    """Awakeable completions by awakeable id."""

    def to_wire(self) -> dict[str, Any]:
        """The msgpack map of this checkpoint."""
        return {
            "x": self.start,
            "js": _journals_to_wire(self.journals),
            "j": _journals_to_wire(self.legacy_journals or {}),
            "d": self.done_offsets,
            "w": [w.to_checkpoint() for w in self.waits],
            "c": [[k, c.outcome_wire()] for k, c in self.completions.items()],
        }

    def encode(self) -> bytes:
        """Msgpack bytes of this checkpoint."""
        return pack(self.to_wire())

    @classmethod
    def decode(cls, value: bytes) -> Checkpoint:
        """The checkpoint of a `CHECKPOINT_KEY` record (either release's)."""
        raw = unpack(value)
        if "js" in raw:  # 0.2 keeps 0.1's journals not yet adopted in "j" until their invocations run
            journals, legacy = _journals_from_wire(raw["js"]), _journals_from_wire(raw.get("j", ()))
        else:  # Tether 0.1: by message id; each is adopted by its invocation's next run
            journals, legacy = {}, _journals_from_wire(raw.get("j", ()))
        return cls(
            int(raw["x"]),
            journals,
            legacy,
            [int(o) for o in raw.get("d", ())],
            [wait_from_checkpoint(w) for w in raw.get("w", ())],
            {str(k): Completion.from_outcome(str(k), v, str(v.get("i", ""))) for k, v in raw.get("c", ())},
        )
