"""Which invocation a cancellation sent to a session key reaches, as its processor sees it.

`tether sessions cancel` finds what to cancel in the log; an invocation that has journaled
nothing yet (no step, no wait) is not there. A *live* cancellation (``"live": true`` in the
resolution's payload) names the session and, optionally, a message id; the processor picks
the invocation from what it holds for the session, and records the cancellation as every
other one (the rejection of ``cancel-{message id}``), so nothing new is stored.
"""

from __future__ import annotations

from ..protocol.inbox import Message
from .sessions import Session
from .waits import WaitTable

__all__ = ["live_invocation", "open_messages"]


def open_messages(session: Session, waits: WaitTable) -> list[Message]:
    """The session's exclusive invocations not yet finished, in the order they run.

    The suspended one (not a parked dead letter's), else the one running; then the queued
    messages. A message being retried between attempts is the running one.
    """
    found: list[Message] = []
    if session.blocked_by is not None:
        waiting = waits.suspended.get(session.blocked_by)
        if waiting is not None and not waiting.parked:
            found.append(waiting.message)
    elif session.current is not None:
        found.append(session.current)
    found.extend(message for _, message, _ in session.queue)
    return found


def live_invocation(session: Session, waits: WaitTable, message_id: str, handler: str = "") -> str | None:
    """The message id a live cancellation reaches; None when nothing matches.

    That is `message_id` if it is open in the session, or the current invocation's when
    `message_id` is empty; with `handler`, only an invocation of that handler (a saga's
    cancellation interrupts its coordinator's ``advance``, never the cancel queued behind it).
    """
    found = open_messages(session, waits)
    if message_id:
        found = [m for m in found if m.id == message_id]
    if not found or handler and found[0].handler != handler:
        return None
    return found[0].id
