"""Text from records made safe for an operator's terminal: control characters shown, never sent.

Whoever can write to a topic chooses the bytes of its records, and an ESC in a payload that a
command prints raw drives the operator's terminal (ESC[2J clears the screen, ESC]0;...BEL sets
the title, U+202E reverses the text after it). Every command prints record data through
`printable` (plain strings) or `plain` (rich renderables, never read as markup).
"""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text

_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str, *, multiline: bool = False) -> str:
    r"""`text` with every character `str.isprintable` refuses written as a visible escape.

    That is C0 and C1 controls, DEL, bidi overrides and other format characters, line and
    paragraph separators, unassigned and private-use code points: ESC becomes ``\x1b``, U+202E
    ``\u202e``, a tab ``\t``. Backslashes are left as they are (Windows paths stay readable),
    so `--json` is the exact form when it matters.

    Args:
        text: What a record holds.
        multiline: Keep newlines (a stack trace); otherwise they are shown as ``\n`` too.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or (multiline and c == "\n") else _escape(c) for c in text)


def plain(value: object, *, multiline: bool = False, style: str = "", limit: int | None = None) -> Text:
    """`value` as rich text: printable (see `printable`) and never interpreted as markup.

    Args:
        value: A string, or anything `str` turns into one (None is shown as nothing).
        multiline: Keep newlines.
        style: A rich style for the whole text.
        limit: Cut the text to this many characters first (before escaping).
    """
    text = "" if value is None else str(value)
    if limit is not None:
        text = text[:limit]
    return Text(printable(text, multiline=multiline), style=style)


def data_text(value: Any, *, indent: int | None = 2, limit: int | None = None) -> Text:
    """JSON-like data as readable JSON text: letters as they are, control characters escaped."""
    text = json.dumps(value, indent=indent, ensure_ascii=False, default=str)
    if limit is not None:
        text = text[:limit]
    return Text(printable(text, multiline=indent is not None))
