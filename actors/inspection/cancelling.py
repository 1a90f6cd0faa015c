"""Cancelling an invocation as an operator: which one, checked against the log, then the cancel.

What `tether sessions cancel` and the web console both do. The cancellation itself is the
rejection of the invocation's cancel awakeable (`actors.protocol.awakeables`): recorded,
restored and first-wins; the runtime delivers it at the invocation's next wait or new step.
"""

from __future__ import annotations

from eventstore.errors import UsageError

from ..client import Client
from ..protocol.awakeables import cancel_awakeable_id
from ..settings import Settings
from .listing import session_summary

__all__ = ["cancel_invocation"]


async def cancel_invocation(
    settings: Settings,
    object_name: str,
    key: str,
    *,
    invocation: str | None,
    reason: str,
    by: str,
    timeout: float = 30.0,
) -> tuple[str, bool]:
    """Cancel `invocation` of session TYPE KEY (default: the one running or waiting).

    Returns the message id cancelled and whether this was its first cancellation.

    Raises:
        UsageError: nothing is open in the session, or `invocation` is not open there (the
            message says what is open).
        NamespaceNotFoundError, SessionNotFoundError: no such namespace or session.
    """
    summary = await session_summary(settings, object_name, key)
    open_ids = summary.open_invocations
    if invocation is None:
        if not open_ids:
            raise UsageError(f"{object_name}/{key} has nothing running or waiting to cancel (status {summary.status})")
        invocation = open_ids[0][0]
    elif invocation not in {mid for mid, _ in open_ids}:
        listed = ", ".join(f"{mid} ({what})" for mid, what in open_ids) or "none"
        raise UsageError(f"{object_name}/{key} has no open invocation {invocation!r}; open: {listed}")
    async with Client.connect(settings) as client:
        accepted = await client.reject(
            cancel_awakeable_id(object_name, key, invocation), reason, timeout=timeout, by=by
        )
    return invocation, accepted
