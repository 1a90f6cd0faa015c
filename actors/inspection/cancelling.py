"""Cancelling an invocation as an operator: which one, checked against the log, then the cancel.

What `tether sessions cancel` and the web console both do. The cancellation itself is the
rejection of the invocation's cancel awakeable (`actors.protocol.awakeables`): recorded,
restored and first-wins; the runtime delivers it at the invocation's next wait or new step.

An invocation that has journaled nothing yet (it just started: no step, no wait) is not in the
log. Then the cancellation goes to the session's processor as a *live* one
(`actors.runtime.cancels`): the processor picks what runs (or waits, or is queued) on the key
and records the same rejection for it, or answers that nothing is open.
"""

from __future__ import annotations

import uuid

from eventstore.errors import UsageError

from ..client import Client
from ..errors import SessionNotFoundError
from ..protocol.awakeables import cancel_awakeable_id
from ..protocol.inbox import RESOLVE_HANDLER
from ..settings import Settings
from .listing import SessionSummary, session_summary

__all__ = ["cancel_invocation", "cancel_live"]


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

    The log is asked first; what it does not show open (an invocation that just started, a
    session with no record yet) is asked of the session's processor, so a worker must answer.
    Returns the message id cancelled and whether this was its first cancellation.

    Raises:
        UsageError: nothing is open in the session, or `invocation` is not open there (the
            message says what is open).
        NamespaceNotFoundError, SessionNotFoundError: no such namespace, or no such session
            in the log nor in its processor.
        CallTimeoutError: the log shows nothing open and no worker answered.
    """
    summary: SessionSummary | None
    try:
        summary = await session_summary(settings, object_name, key)
    except SessionNotFoundError as exc:
        summary, unknown = None, exc
    open_ids = summary.open_invocations if summary is not None else []
    if invocation is None and open_ids:
        invocation = open_ids[0][0]
    async with Client.connect(settings) as client:
        if invocation is not None and invocation in {mid for mid, _ in open_ids}:
            accepted = await client.reject(
                cancel_awakeable_id(object_name, key, invocation), reason, timeout=timeout, by=by
            )
            return invocation, accepted
        target, accepted = await cancel_live(
            client, object_name, key, invocation, reason=reason, by=by, timeout=timeout
        )
    if target is not None:
        return target, accepted
    if summary is None:
        raise unknown
    if invocation is None:
        raise UsageError(f"{object_name}/{key} has nothing running or waiting to cancel (status {summary.status})")
    listed = ", ".join(f"{mid} ({what})" for mid, what in open_ids) or "none"
    raise UsageError(f"{object_name}/{key} has no open invocation {invocation!r}; open: {listed}")


async def cancel_live(
    client: Client,
    object_name: str,
    key: str,
    invocation: str | None = None,
    *,
    reason: str,
    by: str,
    handler: str | None = None,
    timeout: float = 30.0,
) -> tuple[str | None, bool]:
    """Cancel what the session's processor holds open: `invocation`, or the current one.

    The current one (`invocation` None) is the waiting or running invocation, else the first
    queued message; `invocation` must be one of those; with `handler`, it must be an
    invocation of that handler. Returns the message id cancelled (None
    when nothing matched) and whether this was its first cancellation. Recorded as every
    cancellation is (who, why; the caller gets `InvocationCancelledError`).
    """
    awk_id = cancel_awakeable_id(object_name, key, invocation or "")
    payload = {"id": awk_id, "err": {"type": "Rejected", "message": reason}, "by": by, "live": True}
    if handler is not None:
        payload["handler"] = handler
    answer = await client.call_raw(
        object_name,
        key,
        RESOLVE_HANDLER,
        payload,
        timeout=timeout,
        idempotency_key=f"{awk_id}:live:{uuid.uuid4().hex}",
    )
    if not isinstance(answer, dict):
        return None, False
    target = answer.get("invocation")
    if "invocation" not in answer:  # a worker older than live cancellations completed the id as given
        target = invocation
    return (str(target) if target else None), bool(answer.get("accepted"))
