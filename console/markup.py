"""HTML built from record data that whoever writes to a topic chose: every value escaped.

Pages are plain Python strings. `render` fills a template whose placeholders are escaped
(`html.escape`, quotes too) unless the value is `Safe`, HTML this package built itself. Record
text is shown in element bodies and attributes only, never inside a script or a style: the
console serves no inline script at all (its content security policy forbids them), so a payload
such as ``</script><script>...`` stays text. Control characters are shown as escapes, as in the
terminal (`actors.inspection.terminal.printable`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode

from actors.inspection.terminal import printable

__all__ = ["Safe", "data", "esc", "join", "query", "render", "text", "url_part"]


class Safe(str):
    """HTML this package built: inserted into templates as it is."""

    __slots__ = ()


def text(value: object, *, multiline: bool = False, limit: int | None = None) -> str:
    """`value` as display text: None is empty, control characters are visible escapes."""
    out = "" if value is None else str(value)
    if limit is not None and len(out) > limit:
        out = out[:limit] + "…"
    return printable(out, multiline=multiline)


def esc(value: object, *, multiline: bool = False, limit: int | None = None) -> Safe:
    """`value` as HTML-escaped display text (`Safe` values pass through)."""
    if isinstance(value, Safe):
        return value
    return Safe(html.escape(text(value, multiline=multiline, limit=limit), quote=True))


def data(value: Any, *, limit: int | None = None) -> Safe:
    """JSON-like data pretty-printed in a ``<pre>``, escaped."""
    dumped = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return Safe(f'<pre class="data">{esc(dumped, multiline=True, limit=limit)}</pre>')


def render(template: str, **values: object) -> Safe:
    """`template` with ``{name}`` placeholders filled by escaped `values`."""
    return Safe(template.format(**{name: esc(value) for name, value in values.items()}))


def join(parts: Iterable[Safe], sep: str = "") -> Safe:
    """Several pieces of built HTML as one."""
    return Safe(sep.join(parts))


def url_part(value: str) -> str:
    """One path segment of a URL (a session key may hold ``/``, ``?`` or anything)."""
    return quote(value, safe="")


def query(**params: object) -> str:
    """A query string of the non-empty `params` (``?a=1&b=2``, or empty)."""
    kept = {k: v for k, v in params.items() if v not in (None, "", ())}
    return "?" + urlencode(kept, doseq=True) if kept else ""
