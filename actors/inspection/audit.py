"""Who acts: the ``user@host`` that operator commands record beside what they changed."""

from __future__ import annotations

import getpass
import socket

__all__ = ["operator"]


def operator() -> str:
    """``user@host``: who acts, for the audit trail."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in a bare container: still record the host
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
