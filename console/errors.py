"""Errors of the web console.

    TetherError (eventstore.errors)
    └── ActionRefusedError      an action without the right token, or on a read-only console

Everything else a page can meet is the library's own error (an unknown session or dead letter,
a filter that matches nothing, an unreachable broker), shown on the page with its message.
"""

from __future__ import annotations

from eventstore.errors import TetherError

__all__ = ["ActionRefusedError"]


class ActionRefusedError(TetherError):
    """An action was refused: actions are off, or the token is missing or wrong."""
