"""`tether console`: serve the web console (uvicorn) on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import click
from pydantic import ValidationError

from actors import Settings
from actors.cli.main import settings_options
from eventstore.errors import UsageError

from .config import ConsoleConfig

__all__ = ["console"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (keep it local; see README).")
@click.option("--port", default=8088, show_default=True, type=int, help="Port to listen on.")
@click.option("--read-only", is_flag=True, help="Refuse every action, even with the token.")
@settings_options
def console(settings: Settings, host: str, port: int, read_only: bool) -> None:
    """Serve the web console: sessions, dead letters and sagas in a browser.

    Actions (replay, discard, restart, retry) need TETHER_CONSOLE__TOKEN; without it, or with
    --read-only, the console only reads.
    """
    import uvicorn

    from .app import create_app

    try:
        config = ConsoleConfig()
    except ValidationError as exc:
        raise UsageError(f"a TETHER_CONSOLE__* setting is wrong: {exc}") from None
    if read_only:
        config = config.model_copy(update={"read_only": True})
    if host not in config.allowed_hosts and host not in ("0.0.0.0", "::"):
        config = config.model_copy(update={"allowed_hosts": (*config.allowed_hosts, host)})
    app = create_app(settings, config)
    mode = config.actions_off_reason or f"actions need the token (held by {config.token_holder})"
    click.echo(f"tether console on http://{host}:{port}/ (namespace {settings.namespace}); {mode}", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
