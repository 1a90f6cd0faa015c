"""The console's own settings (``TETHER_CONSOLE__*``): who may act, and whether anyone may."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ConsoleConfig"]


class ConsoleConfig(BaseSettings):
    """How the console serves and who may change anything through it.

    Without a `token` the console is read-only: every page shows, no action runs.
    """

    model_config = SettingsConfigDict(env_prefix="TETHER_CONSOLE__", frozen=True, extra="ignore")

    token: SecretStr | None = None
    """The secret an operator types to act (replay, discard, restart, retry); none: read-only."""
    token_holder: str = "console-operator"
    """Who holds the token: recorded with every action, beside the console's ``user@host``."""
    read_only: bool = False
    """Refuse every action even with a token (``--read-only``)."""
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
    """Host names requests may name (a DNS-rebinding page gets 400); add the name a proxy uses."""
    page_size: int = Field(default=100, ge=1, le=5000)
    """Rows per page of a list or a timeline."""
    poll_seconds: float = Field(default=3.0, gt=0)
    """How often live parts of a page (new dead letters, a session's progress) refresh."""

    @property
    def actions_off_reason(self) -> str | None:
        """Why no action can run, or None when a token is configured and actions are allowed."""
        if self.read_only:
            return "this console was started read-only (--read-only): no action can run"
        if self.token is None or not self.token.get_secret_value():
            return (
                "no token is configured, so this console is read-only: set TETHER_CONSOLE__TOKEN "
                "(and TETHER_CONSOLE__TOKEN_HOLDER) where the console starts to allow actions"
            )
        return None
