"""The `tether` command line: serve workers, run the demo, inspect sessions.

Other layers add their groups (``tether kafka``, ``tether dlq``, ``tether saga``) through the
``tether.commands`` entry points, so this module never imports the packages built on it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from eventstore.errors import TetherError

from ..errors import NamespaceNotFoundError, SessionNotFoundError
from ..hosting.logs import configure_logging
from ..inspection.terminal import printable
from ..observability import redaction
from ..settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def settings_options(fn: F) -> F:
    """Options every command shares: where the log is, which namespace, how chatty."""

    @click.option("--namespace", "-n", default=None, help="Topic namespace (TETHER_NAMESPACE).")
    @click.option(
        "--bootstrap-servers",
        "-b",
        "bootstrap",
        default=None,
        metavar="HOST:PORT",
        help="Kafka bootstrap servers (TETHER_KAFKA__BOOTSTRAP_SERVERS); default: embedded log.",
    )
    @click.option(
        "--data-dir", type=click.Path(path_type=Path), default=None, help="Embedded log directory (TETHER_DATA_DIR)."
    )
    @click.option("--partitions", type=int, default=None, help="Partitions of a new namespace (TETHER_PARTITIONS).")
    @click.option("-v", "--verbose", count=True, help="-v for lifecycle logs, -vv for debug.")
    @click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default=None,
        help="Log lines as text or one JSON object each (TETHER_RUNTIME__LOG_FORMAT; default text).",
    )
    @functools.wraps(fn)
    def wrapper(
        namespace: str | None,
        bootstrap: str | None,
        data_dir: Path | None,
        partitions: int | None,
        verbose: int,
        log_format: str | None,
        **kwargs: Any,
    ) -> Any:
        try:
            base = Settings()
        except ValidationError as exc:
            configure_logging(verbose)
            click.secho(f"error: invalid settings: {printable(str(exc))}", fg="red", err=True)
            sys.exit(EXIT_USAGE)
        if log_format is not None:
            base = base.model_copy(update={"runtime": base.runtime.model_copy(update={"log_format": log_format})})
        try:
            redaction.install(redaction.load_redactor(base.runtime.redact))
        except TetherError as exc:
            configure_logging(verbose)
            click.secho(f"error: {printable(str(exc))}", fg="red", err=True)
            sys.exit(EXIT_USAGE)
        configure_logging(verbose, log_format=base.runtime.log_format)
        overrides: dict[str, Any] = {}
        if namespace:
            overrides["namespace"] = namespace
        if data_dir:
            overrides["data_dir"] = data_dir
        if partitions:
            overrides["partitions"] = partitions
        if bootstrap:
            overrides["kafka"] = base.kafka.model_copy(update={"bootstrap_servers": bootstrap})
            overrides["backend"] = "kafka"
        settings = base.model_copy(update=overrides)
        try:
            return fn(settings=settings, **kwargs)
        except (NamespaceNotFoundError, SessionNotFoundError) as exc:
            click.secho(f"error: {printable(str(exc))}", fg="red", err=True)
            sys.exit(EXIT_USAGE)
        except TetherError as exc:
            click.secho(f"error: {printable(str(exc))}", fg="red", err=True)
            sys.exit(EXIT_UNAVAILABLE if getattr(exc, "retriable", False) else EXIT_FAILURE)

    return wrapper  # type: ignore[return-value]


@click.command()
@click.argument("target", metavar="MODULE:OBJECT")
@click.option("--ray", "use_ray", is_flag=True, help="Run the workers as Ray actors.")
@click.option("--workers", type=int, default=1, show_default=True, help="Workers (with --ray).")
@click.option("--ray-address", default=None, help="An existing Ray cluster (default: start a local one).")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on this port (TETHER_RUNTIME__METRICS_PORT); Ray workers use PORT + index.",
)
@settings_options
def serve(
    settings: Settings, target: str, use_ray: bool, workers: int, ray_address: str | None, metrics_port: int | None
) -> None:
    """Serve the session types in MODULE:OBJECT until SIGTERM or Ctrl-C."""
    from ..hosting.worker import load_objects
    from ..hosting.worker import serve as serve_worker

    if metrics_port is not None:
        runtime = settings.runtime.model_copy(update={"metrics_port": metrics_port})
        settings = settings.model_copy(update={"runtime": runtime})

    sys.path.insert(0, ".")
    objects = load_objects(target)
    if use_ray:
        from ..hosting.ray import serve_on_ray

        serve_on_ray(target, settings, workers=workers, address=ray_address)
        return
    asyncio.run(serve_worker(objects, settings))


@click.command()
@click.option(
    "--kafka",
    is_flag=True,
    help="Run on Kafka: the broker at --bootstrap-servers, else a local one (`tether kafka up`).",
)
@settings_options
def demo(settings: Settings, kafka: bool) -> None:
    """A research agent that survives a kill -9 of its worker mid-task."""
    from .demo import run_demo

    sys.exit(run_demo(settings, use_kafka=kafka))


@click.group()
def sessions() -> None:
    """Inspect sessions: current state and history."""


@sessions.command("show")
@click.argument("object_name", metavar="TYPE")
@click.argument("key")
@click.option(
    "--app",
    default=None,
    metavar="MODULE:OBJECT",
    help="The session types (as for `tether serve`): fold the events since the snapshot into the state.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options
def sessions_show(settings: Settings, object_name: str, key: str, app: str | None, as_json: bool) -> None:
    """State, version, waits and in-flight steps of session TYPE KEY, read from the log.

    Writes nothing, and needs no worker. Without --app the state is the latest snapshot's and
    the events since it are listed; with --app they are folded in (the exact current state).
    """
    from ..inspection.views import session_view

    objects = None
    if app is not None:
        from ..hosting.worker import load_objects

        sys.path.insert(0, ".")
        objects = load_objects(app)
    view = asyncio.run(session_view(settings, object_name, key, objects=objects))
    if as_json:
        click.echo(json.dumps(view, indent=2, default=str))
        return
    from rich.console import Console

    from ..inspection.show import print_view

    print_view(Console(highlight=False), view, app=app)


@sessions.command("history")
@click.argument("object_name", metavar="TYPE")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@settings_options
def sessions_history(settings: Settings, object_name: str, key: str, as_json: bool) -> None:
    """Invocations, steps, waits and events of session TYPE KEY in log order (writes nothing)."""
    from ..inspection.views import session_history

    entries = asyncio.run(session_history(settings, object_name, key))
    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry, default=str))
        return
    from rich.console import Console

    from ..inspection.show import print_history

    print_history(Console(highlight=False), entries)


@sessions.command("restart")
@click.argument("object_name", metavar="TYPE")
@click.argument("key")
@click.option("--from-step", type=int, required=True, help="First step to run again; earlier ones are reused.")
@click.option("--invocation", default=None, help="Which invocation (default: the latest).")
@click.option("--payload", default=None, help="Replacement input as JSON.")
@settings_options
def sessions_restart(
    settings: Settings, object_name: str, key: str, from_step: int, invocation: str | None, payload: str | None
) -> None:
    """Re-run an invocation of TYPE KEY from step N, reusing the journaled steps before it."""
    from ..inspection.views import restart_invocation

    replacement = json.loads(payload) if payload is not None else None
    new_id = asyncio.run(
        restart_invocation(settings, object_name, key, from_step=from_step, invocation=invocation, payload=replacement)
    )
    click.echo(new_id)


@click.group()
def awakeable() -> None:
    """Complete awakeables (durable promises a handler waits on, e.g. human approval)."""


@awakeable.command("resolve")
@click.argument("awakeable_id", metavar="ID")
@click.argument("value", default="null")
@settings_options
def awakeable_resolve(settings: Settings, awakeable_id: str, value: str) -> None:
    """Resolve awakeable ID with VALUE (JSON); the waiting handler resumes with it."""
    from ..client import Client

    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"VALUE must be JSON ({exc}); quote strings: '\"yes\"'") from exc

    async def go() -> bool:
        async with Client.connect(settings) as client:
            return await client.resolve(awakeable_id, parsed)

    accepted = asyncio.run(go())
    click.echo("resolved" if accepted else "already completed; nothing changed")
    sys.exit(0 if accepted else EXIT_FAILURE)


@awakeable.command("reject")
@click.argument("awakeable_id", metavar="ID")
@click.argument("reason")
@settings_options
def awakeable_reject(settings: Settings, awakeable_id: str, reason: str) -> None:
    """Reject awakeable ID; the waiting handler fails with REASON."""
    from ..client import Client

    async def go() -> bool:
        async with Client.connect(settings) as client:
            return await client.reject(awakeable_id, reason)

    accepted = asyncio.run(go())
    click.echo("rejected" if accepted else "already completed; nothing changed")
    sys.exit(0 if accepted else EXIT_FAILURE)


def build() -> click.Group:
    """The `tether` group with its own commands and every installed `tether.commands` group."""
    group = click.Group("tether", help="Durable AI-agent sessions on Apache Kafka.")
    for command in (serve, demo, sessions, awakeable):
        group.add_command(command)
    for entry in entry_points(group="tether.commands"):
        try:
            command = entry.load()
        except ImportError as exc:
            # One broken plugin must not take the whole CLI down (say, a stale install).
            click.secho(f"warning: `tether {entry.name}` is unavailable: {exc}", fg="yellow", err=True)
            continue
        if isinstance(command, click.Command):
            group.add_command(command, entry.name)
    return group


def main() -> None:
    """Run the `tether` command line."""
    build()()
