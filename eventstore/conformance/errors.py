"""Errors of the conformance tests.

TetherError
└── AbortError       raised by a contract test inside a transaction to abort it
"""

from __future__ import annotations

from ..errors import TetherError


class AbortError(TetherError):
    """Raised inside a transaction to abort it."""
