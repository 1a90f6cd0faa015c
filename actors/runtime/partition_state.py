"""The state of one partition: the tables a restore rebuilds and the processor then changes.

Sessions, open journals, waits and inbox offsets, with the few operations more than one part of
the processor needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol.checkpoint import Journal
from ..protocol.entries import Step
from ..protocol.inbox import Message
from .offsets import OffsetTracker
from .sessions import Session, session_of
from .waits import WaitTable


@dataclass(eq=False)
class PartitionState:
    """The state of one partition, as a restore rebuilds it and the processor then changes it."""

    sessions: dict[bytes, Session]
    journals: dict[str, Journal]
    """Open invocations' journals by invocation id (session-scoped, see `Message.invocation_id`)."""
    legacy_journals: dict[str, Journal]
    """Journals of a checkpoint written before journals were session-scoped (Tether 0.1), by
    message id; an invocation adopts its legacy journal on its first run after the upgrade."""
    waits: WaitTable
    """Suspended invocations, delayed messages, awakeable completions and their timers."""
    offsets: OffsetTracker
    """The inbox offsets fetched and finished."""

    def session(self, key: bytes) -> Session:
        """The session of record key `key` (added, empty, if new)."""
        return session_of(self.sessions, key)

    def journal(self, message: Message) -> Journal:
        """The journal of `message`'s invocation, with what a legacy checkpoint or a seed holds."""
        journal = self.journals.setdefault(message.invocation_id, {})
        legacy = self.legacy_journals.pop(message.id, None) if self.legacy_journals else None
        for n, entry in (legacy or {}).items():
            journal.setdefault(n, entry)
        if message.seed_journal and not journal:
            journal.update({int(e["n"]): Step.from_wire(e) for e in message.seed_journal})
        return journal

    def journaled(self, message: Message, step: Step) -> None:
        """Add `step` to the journal of `message`'s invocation."""
        self.journals.setdefault(message.invocation_id, {})[step.index] = step

    def ended(self, invocation_id: str) -> None:
        """The invocation ended (done or failed): drop its journal and its wait."""
        self.journals.pop(invocation_id, None)
        self.waits.forget(invocation_id)
