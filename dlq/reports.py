"""What a replay or a discard did, item by item."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .records import DeadLetter

Outcome = Literal["replayed", "would-replay", "discarded", "would-discard", "skipped", "failed"]
"""What happened to one dead letter: done, done in a dry run, left alone (with why), failed."""

OUTCOMES: tuple[Outcome, ...] = (
    "replayed",
    "would-replay",
    "discarded",
    "would-discard",
    "skipped",
    "failed",
)


class ItemResult(BaseModel):
    """The outcome for one dead letter."""

    # A payload may hold bytes that are not UTF-8 (a transform's choice): JSON shows them base64.
    model_config = ConfigDict(frozen=True, ser_json_bytes="base64")

    id: str
    """The dead letter."""
    outcome: Outcome
    """What happened to it."""
    reason: str | None = None
    """Why it was skipped or failed."""
    message_id: str | None = None
    """The inbox message id a replay sent (or would send)."""
    object_name: str | None = None
    """Where the replay went (or would go): session type..."""
    object_key: str | None = None
    """...session key..."""
    handler: str | None = None
    """...and handler."""
    payload: Any = None
    """In a dry run: the payload the replay would send (after the transform, if any)."""

    @classmethod
    def of(cls, letter: DeadLetter, outcome: Outcome, reason: str | None = None) -> ItemResult:
        """The result for `letter`, naming its session and handler."""
        return cls(
            id=letter.id,
            outcome=outcome,
            reason=reason,
            object_name=letter.object_name,
            object_key=letter.object_key,
            handler=letter.handler,
        )

    @property
    def session(self) -> str | None:
        """``type/key``, when known."""
        return None if self.object_name is None else f"{self.object_name}/{self.object_key}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return self.model_dump(mode="json", exclude_none=True)


Progress = Callable[[ItemResult, int], None]
"""Called after each item with its result and the number of items in the run."""


class Report(BaseModel):
    """Every item of one replay or discard run, in the order they were handled."""

    action: Literal["replay", "discard"]
    """What was asked."""
    dry_run: bool = False
    """Whether nothing was sent or written."""
    items: list[ItemResult] = []
    """One result per selected dead letter."""

    @property
    def counts(self) -> dict[str, int]:
        """How many items had each outcome (every outcome of the action present, zeros too)."""
        counter = Counter(item.outcome for item in self.items)
        if self.action == "replay":
            names: tuple[Outcome, ...] = ("would-replay",) if self.dry_run else ("replayed",)
        else:
            names = ("would-discard",) if self.dry_run else ("discarded",)
        return {name: counter.get(name, 0) for name in (*names, "skipped", "failed")}

    @property
    def failed(self) -> list[ItemResult]:
        """The items that failed."""
        return [item for item in self.items if item.outcome == "failed"]

    @property
    def ok(self) -> bool:
        """Whether no item failed."""
        return not self.failed

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "action": self.action,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "counts": self.counts,
            "items": [item.to_json() for item in self.items],
        }
