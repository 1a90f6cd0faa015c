"""`tether kafka`: run the real Apache Kafka broker locally, as a JVM, without Docker."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console

from eventstore.kafka.localbroker import (
    BrokerError,
    BrokerInfo,
    BrokerSetupError,
    LocalBroker,
    kafka_version,
    log_tail,
    resolve_jars,
)

EXIT_OK = 0
"""Success; for `status`, the broker is running."""
EXIT_NOT_RUNNING = 1
"""`status` only: no broker serves the data directory."""
EXIT_USAGE = 2
"""Bad arguments (click's own code)."""
EXIT_SETUP = 3
"""Java or Maven is missing, or the Kafka jars could not be resolved (nothing to run it with)."""
EXIT_BROKER = 1
"""The broker failed to start or to stop (was 4 before the one exit-code contract of `tether`)."""

DATA_DIR_ENV = "TETHER_KAFKA_DATA_DIR"
DEFAULT_DATA_DIR = Path(".tether") / "kafka"

F = TypeVar("F", bound=Callable[..., Any])


def data_dir_option(func: F) -> F:
    """Add the shared `--broker-dir` option (also `--data-dir`, as before)."""
    option = click.option(
        "--broker-dir",
        "--data-dir",  # its older name; elsewhere --data-dir is the embedded log's
        "data_dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=DATA_DIR_ENV,
        default=DEFAULT_DATA_DIR,
        show_default=True,
        show_envvar=True,
        help="The broker's data directory (topics, metadata, logs, PID file).",
    )
    return option(func)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(console: Console, exc: BrokerError, as_json: bool = False) -> NoReturn:
    code = EXIT_SETUP if isinstance(exc, BrokerSetupError) else EXIT_BROKER
    if as_json:  # the one error shape of every `tether` command's --json
        click.echo(json.dumps({"error": {"type": type(exc).__name__, "message": str(exc), "exit_code": code}}))
    console.print(f"[bold red]error:[/] {exc}", markup=True, soft_wrap=True)
    raise SystemExit(code)


def _json_option(func: F) -> F:
    option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document (errors too).")
    return option(func)


def _info_json(info: BrokerInfo) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "running": True,
        "pid": info.pid,
        "bootstrap": info.bootstrap,
        "port": info.port,
        "controller_port": info.controller_port,
        "cluster_id": info.cluster_id,
        "accepting": getattr(info, "accepting", True),  # a broker `up` just started accepts
        "log": str(info.log_path),
    }
    if info.sasl_ssl is not None:
        payload.update(
            sasl_ssl_bootstrap=info.sasl_ssl_bootstrap,
            sasl_ssl_ca_file=str(info.sasl_ssl.ca_file),
            sasl_ssl_username=info.sasl_ssl.username,
            sasl_ssl_password_file=str(info.sasl_ssl.password_file),
        )
    return payload


class _Progress:
    """Shows progress lines: in a rich spinner on a terminal, as plain lines otherwise."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._status: Any = None
        self._last = ""

    def __enter__(self) -> _Progress:
        if self._console.is_terminal:
            self._status = self._console.status("preparing the Kafka broker")
            self._status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(None, None, None)

    def __call__(self, message: str) -> None:
        if self._status is not None:
            self._status.update(message)
        elif not message.startswith(("copying ", "downloading ")) and message != self._last:
            self._console.print(message)
        self._last = message


@click.group()
def kafka() -> None:
    """Run the real Apache Kafka broker locally (a JVM on 127.0.0.1; no Docker).

    The jars are downloaded once with Maven into ~/.cache/tether (or $TETHER_KAFKA_CACHE);
    Java 17+ and Maven must be installed.
    """


@kafka.command()
@data_dir_option
@click.option("--port", type=click.IntRange(1, 65535), help="Client port (default: kept, or free).")
@click.option("--heap", default="512m", show_default=True, help="JVM heap, e.g. 512m or 1g.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for readiness.")
@click.option(
    "--sasl-ssl",
    is_flag=True,
    help="Also listen for SASL_SSL (SCRAM-SHA-512, a local CA); only for a new data directory.",
)
@_json_option
def up(data_dir: Path, port: int | None, heap: str, timeout: float, sasl_ssl: bool, as_json: bool) -> None:
    """Start the broker; print its bootstrap address (127.0.0.1:PORT) as the last line.

    With --sasl-ssl the last line is the SASL_SSL address, and the TETHER_KAFKA__* variables
    that connect to it are printed before (the password stays in its file). Running it again
    while the broker runs just prints the address. Exit codes: 0 running, 3 Java/Maven/jars
    or openssl missing, 1 the broker failed to start.
    """
    console = _stderr()
    try:
        running = LocalBroker().status(data_dir)
        if running is not None and (port is None or port == running.port) and (running.sasl_ssl or not sasl_ssl):
            if as_json:
                click.echo(json.dumps({**_info_json(running), "data_dir": str(data_dir), "started": False}))
                return
            console.print(f"Kafka broker already running (pid {running.pid}) in {data_dir}")
            _print_sasl_ssl(console, running)
            click.echo(running.sasl_ssl_bootstrap if sasl_ssl and running.sasl_ssl_bootstrap else running.bootstrap)
            return
        with _Progress(console) as progress:
            info = LocalBroker(progress=progress).start(data_dir, port, heap=heap, timeout=timeout, sasl_ssl=sasl_ssl)
    except BrokerError as exc:
        _fail(console, exc, as_json)
    if as_json:
        click.echo(json.dumps({**_info_json(info), "data_dir": str(data_dir), "started": True}))
        return
    console.print(
        f"Kafka {kafka_version()} broker running (pid {info.pid}); "
        f"log {info.log_path}; stop it with `tether kafka down`"
    )
    _print_sasl_ssl(console, info)
    click.echo(info.sasl_ssl_bootstrap if sasl_ssl and info.sasl_ssl_bootstrap else info.bootstrap)


def _print_sasl_ssl(console: Console, info: BrokerInfo) -> None:
    """How to connect to the SASL_SSL listener, as shell variables; never the password itself."""
    creds = info.sasl_ssl
    if creds is None or info.sasl_ssl_bootstrap is None:
        return
    console.print(f"SASL_SSL listener on {info.sasl_ssl_bootstrap} ({creds.mechanism}, user {creds.username}):")
    for line in (
        f"export TETHER_KAFKA__BOOTSTRAP_SERVERS={info.sasl_ssl_bootstrap}",
        "export TETHER_KAFKA__SECURITY_PROTOCOL=SASL_SSL",
        f"export TETHER_KAFKA__SASL_MECHANISM={creds.mechanism}",
        f"export TETHER_KAFKA__SASL_USERNAME={creds.username}",
        f'export TETHER_KAFKA__SASL_PASSWORD="$(cat {creds.password_file})"',
        f"export TETHER_KAFKA__SSL_CAFILE={creds.ca_file}",
    ):
        console.print(f"  {line}", markup=False)


@kafka.command()
@data_dir_option
@click.option("--kill", is_flag=True, help="SIGKILL at once instead of a clean SIGTERM shutdown.")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds before SIGKILL.")
@_json_option
def down(data_dir: Path, kill: bool, timeout: float, as_json: bool) -> None:
    """Stop the broker (exit 0 also when none was running; 1 if it would not stop)."""
    console = _stderr()
    try:
        stopped = LocalBroker().stop(data_dir, kill=kill, timeout=timeout)
    except BrokerError as exc:
        _fail(console, exc, as_json)
    if as_json:
        click.echo(json.dumps({"stopped": bool(stopped), "data_dir": str(data_dir), "kill": kill}))
    elif stopped:
        console.print(f"Kafka broker stopped ({'SIGKILL' if kill else 'SIGTERM'}) in {data_dir}")
    else:
        console.print(f"no Kafka broker was running in {data_dir}")


@kafka.command()
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def status(data_dir: Path, as_json: bool) -> None:
    """Show whether the broker runs (exit 0) or not (exit 1)."""
    info = LocalBroker().status(data_dir)
    if as_json:
        payload: dict[str, Any] = {"running": False} if info is None else _info_json(info)
        payload["data_dir"] = str(data_dir)
        click.echo(json.dumps(payload))
    elif info is None:
        click.echo(f"not running ({data_dir}); start it with `tether kafka up`")
    else:
        state = "accepting connections" if info.accepting else "not accepting connections yet"
        click.echo(f"running: pid {info.pid}, {state}, log {info.log_path}")
        click.echo(info.bootstrap)
    sys.exit(EXIT_OK if info is not None else EXIT_NOT_RUNNING)


@kafka.command()
@_json_option
def jars(as_json: bool) -> None:
    """Download the broker jars if needed (Maven); print their directory."""
    console = _stderr()
    try:
        with _Progress(console) as progress:
            libs = resolve_jars(progress=progress)
    except BrokerError as exc:
        _fail(console, exc, as_json)
    click.echo(json.dumps({"libs": str(libs), "kafka": kafka_version()}) if as_json else str(libs))


@kafka.command()
@data_dir_option
@click.option("--lines", type=click.IntRange(1), default=60, show_default=True)
@_json_option
def logs(data_dir: Path, lines: int, as_json: bool) -> None:
    """Print the last lines of the broker's output."""
    text = log_tail(data_dir, lines)
    if not text:
        if as_json:
            message = f"no broker log in {data_dir}"
            click.echo(json.dumps({"error": {"type": "NoLog", "message": message, "exit_code": EXIT_NOT_RUNNING}}))
        _stderr().print(f"no broker log in {data_dir}")
        raise SystemExit(EXIT_NOT_RUNNING)
    click.echo(json.dumps({"data_dir": str(data_dir), "lines": text.splitlines()}) if as_json else text)


if __name__ == "__main__":  # `python -m eventstore.kafka.localbroker.cli jars`, before `tether` exists
    kafka()
