"""Times as operators type and read them: ``2h`` ago, ISO 8601, epoch milliseconds; UTC."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from ..errors import InvalidTimeError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")

__all__ = ["iso", "parse_time", "when"]


def parse_time(text: str, *, now: float | None = None) -> int:
    """A time in ms since the epoch from ``2026-07-01T12:00``, ``15m``/``2h``/``3d`` ago, or ms.

    ISO times without a zone are UTC.

    Raises:
        InvalidTimeError: `text` is none of those.
    """
    value = text.strip()
    match = _RELATIVE.match(value)
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        return int(((now if now is not None else time.time()) - seconds) * 1000)
    if value.isdigit():
        return int(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidTimeError(
            f"cannot read {text!r} as a time: use ISO 8601 (2026-07-01T12:00:00, UTC unless a "
            "zone is given), a duration ago (30s, 15m, 2h, 3d, 1w) or epoch milliseconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def when(ms: int | None) -> str:
    """An epoch-ms time as UTC ``YYYY-MM-DD HH:MM:SS UTC`` (empty for None)."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(ms: int | None) -> str | None:
    """An epoch-ms time as ISO 8601 in UTC, for people and JSON (None for None)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
