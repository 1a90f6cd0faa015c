"""Discarding dead letters: resolved without replay, with an audit record. Nothing is deleted."""

from __future__ import annotations

from collections.abc import Sequence

from actors.inspection.audit import operator
from actors.inspection.times import iso

from .errors import InvalidFilterError
from .records import DeadLetter
from .reports import ItemResult, Progress, Report
from .status import StatusStore, resolve

CHUNK = 1000
"""Status records per append."""


async def discard(
    letters: Sequence[DeadLetter],
    statuses: StatusStore,
    *,
    reason: str,
    by: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> Report:
    """Mark `letters` discarded with `reason`; already resolved ones are skipped.

    The dead letters stay on the dead-letter topic; a ``discarded`` status record (who, when,
    why) is appended to the control topic. A discarded dead letter can still be shown, and
    replayed with ``include_discarded``.

    Raises:
        InvalidFilterError: `reason` is empty.
    """
    if not reason or not reason.strip():
        raise InvalidFilterError("a discard needs a reason (--reason TEXT) for the audit trail")
    by = by or operator()
    report = Report(action="discard", dry_run=dry_run)
    total = len(letters)
    for first in range(0, total, CHUNK):
        chunk = letters[first : first + CHUNK]
        todo = [letter for letter in chunk if letter.status == "pending"]
        if not dry_run:
            await statuses.write(
                resolve(letter.id, letter.resolution, "discarded", by=by, reason=reason.strip()) for letter in todo
            )
        for letter in chunk:
            if letter.status == "pending":
                item = ItemResult.of(letter, "would-discard" if dry_run else "discarded")
            else:
                r = letter.resolution
                assert r is not None
                why = f": {r.reason}" if r.reason else ""
                item = ItemResult.of(letter, "skipped", f"already {r.status} at {iso(r.at_ms)} by {r.by}{why}")
            report.items.append(item)
            if progress is not None:
                progress(item, total)
    return report
