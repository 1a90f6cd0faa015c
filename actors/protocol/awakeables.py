"""Awakeable ids: ``awk:{object}/{key}#{message id}#{n}``, naming the session that owns one.

The form is stored (in ``sus`` entries, park headers of dead letters) and handed to whoever
resolves the awakeable, so it must not change: a waiting invocation recomputes its awakeable's
id on replay. A resolution is routed to the session the id names, and the runtime refuses one
that arrives at another session.
"""

from __future__ import annotations

__all__ = ["CANCEL_PREFIX", "awakeable_id", "cancel_awakeable_id", "cancelled_message", "parse_awakeable_id"]

CANCEL_PREFIX = "cancel-"
"""An invocation's cancellation is the rejection of its cancel awakeable,
``awk:{object}/{key}#cancel-{message id}#0`` (as a park is ``#park-{message id}#0``): recorded,
restored and routed as every completion is, and first-wins."""


def awakeable_id(object_name: str, key: str, invocation_id: str, n: int) -> str:
    """An awakeable's id: it names the session, so a resolution can be routed to it."""
    return f"awk:{object_name}/{key}#{invocation_id}#{n}"


def cancel_awakeable_id(object_name: str, key: str, message_id: str) -> str:
    """The awakeable whose rejection cancels the invocation of message `message_id`."""
    return awakeable_id(object_name, key, f"{CANCEL_PREFIX}{message_id}", 0)


def cancelled_message(awk_id: str) -> str | None:
    """The message id a cancel awakeable cancels; None for any other awakeable id."""
    try:
        _, _, invocation = parse_awakeable_id(awk_id)
    except ValueError:
        return None
    return invocation.removeprefix(CANCEL_PREFIX) if invocation.startswith(CANCEL_PREFIX) else None


def parse_awakeable_id(awk_id: str) -> tuple[str, str, str]:
    """(object, key, invocation id) of an awakeable id; ValueError if malformed."""
    if not awk_id.startswith("awk:"):
        raise ValueError(f"{awk_id!r} is not an awakeable id (they start with 'awk:')")
    session, invocation, _ = awk_id[4:].rsplit("#", 2)
    object_name, key = session.split("/", 1)
    return object_name, key, invocation
