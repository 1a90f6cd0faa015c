"""Actions need the token; each one is audited with who held it and where the console ran."""

from __future__ import annotations

import hmac
import logging

from actors.inspection.audit import operator

from .config import ConsoleConfig
from .errors import ActionRefusedError

__all__ = ["audit", "authorize"]

audit_log = logging.getLogger("tether.console.audit")


def authorize(config: ConsoleConfig, token: str | None, action: str) -> str:
    """Check `token` for `action`; return who acts, for the audit trail.

    Who acts is ``{token holder} via console {user@host}``: the holder of the token, and the
    account the console runs as (what the CLI records as `actors.inspection.audit.operator`).

    Raises:
        ActionRefusedError: actions are off, or `token` is not the configured one.
    """
    reason = config.actions_off_reason
    if reason is not None:
        audit_log.warning("refused %s: actions are off", action)
        raise ActionRefusedError(f"{action} refused: {reason}")
    assert config.token is not None
    expected = config.token.get_secret_value().encode()
    if not token or not hmac.compare_digest(token.encode(), expected):
        audit_log.warning("refused %s: %s token", action, "no" if not token else "a wrong")
        raise ActionRefusedError(
            f"{action} refused: {'no token was given' if not token else 'the token is wrong'}; "
            "type the console's token (TETHER_CONSOLE__TOKEN) in the token field"
        )
    return f"{config.token_holder} via console {operator()}"


def audit(who: str, action: str, detail: str) -> None:
    """Log an action that ran (the dead-letter statuses keep their own audit records too)."""
    audit_log.info("%s: %s %s", who, action, detail)
