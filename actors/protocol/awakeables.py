"""Awakeable ids: ``awk:{object}/{key}#{message id}#{n}``, naming the session that owns one.

The form is stored (in ``sus`` entries, park headers of dead letters) and handed to whoever
resolves the awakeable, so it must not change: a waiting invocation recomputes its awakeable's
id on replay. A resolution is routed to the session the id names, and the runtime refuses one
that arrives at another session.
"""

from __future__ import annotations

__all__ = ["awakeable_id", "parse_awakeable_id"]


def awakeable_id(object_name: str, key: str, invocation_id: str, n: int) -> str:
    """An awakeable's id: it names the session, so a resolution can be routed to it."""
    return f"awk:{object_name}/{key}#{invocation_id}#{n}"


def parse_awakeable_id(awk_id: str) -> tuple[str, str, str]:
    """(object, key, invocation id) of an awakeable id; ValueError if malformed."""
    if not awk_id.startswith("awk:"):
        raise ValueError(f"{awk_id!r} is not an awakeable id (they start with 'awk:')")
    session, invocation, _ = awk_id[4:].rsplit("#", 2)
    object_name, key = session.split("/", 1)
    return object_name, key, invocation
