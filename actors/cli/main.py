"""The `tether` command line: serve workers, run the demo, inspect sessions.

Other layers add their groups (``tether kafka``, ``tether dlq``, ``tether saga``) through the
``tether.commands`` entry points, so this module never imports the packages built on it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console

from eventstore import Topics
from eventstore.errors import ConfigurationError, LogUnavailableError, TetherError, UsageError

from ..hosting.logs import configure_logging
from ..inspection.terminal import printable
from ..observability import redaction
from ..protocol.inbox import RESOLVE_HANDLER
from ..settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
"""Done."""
HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
"""Every group and command takes -h as well as --help, however it is reached (click caches each
command's help option the first time it is used, so inheriting it from the root is not enough)."""

EXIT_FAILURE = 1
"""The operation ran and failed (or some of its items did)."""
EXIT_USAGE = 2
"""An operator mistake: bad arguments or settings, an unknown namespace, session, id or filter."""
EXIT_UNAVAILABLE = 3
"""The broker or data directory could not be reached, or no worker answered in time."""

EXIT_CODES_HELP = (
    "Exit codes, the same in every command: 0 done; 1 the operation failed (or some of its "
    "items did); 2 an operator mistake (bad arguments or TETHER_* settings, unknown namespace, "
    "session, id or filter); 3 the broker or data directory unreachable, or no worker answered."
)


def exit_code(exc: BaseException) -> int:
    """The exit code that `exc` means under the contract in `EXIT_CODES_HELP`."""
    from pydantic import ValidationError

    if isinstance(exc, UsageError | ConfigurationError | ValidationError | click.UsageError):
        return EXIT_USAGE
    if isinstance(exc, LogUnavailableError) or getattr(exc, "retriable", False):
        return EXIT_UNAVAILABLE
    return EXIT_FAILURE


def json_error(exc: BaseException | str, code: int) -> dict[str, Any]:
    """The one JSON shape of an error, for every command's ``--json``."""
    kind = "UsageError" if isinstance(exc, str) else type(exc).__name__
    return {"error": {"type": kind, "message": str(exc), "exit_code": code}}


def say(as_json: bool, text: str, **fields: Any) -> None:
    """Print a command's outcome: `text` for people, or one JSON document with `as_json`.

    The document holds `fields` and the text as ``message``.
    """
    if as_json:
        click.echo(json.dumps({**fields, "message": text}, ensure_ascii=True, default=str))
    else:
        click.echo(printable(text))


def fail(exc: BaseException | str, code: int) -> NoReturn:
    """Print `exc` as one line on stderr (no traceback) and exit with `code`.

    Under a command run with ``--json`` the error is also printed to stdout as JSON
    (`json_error`), so a script reads one JSON document whatever happened.
    """
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.params.get("as_json"):
        click.echo(json.dumps(json_error(exc, code), ensure_ascii=True))
    click.secho(f"error: {printable(str(exc))}", fg="red", err=True)
    sys.exit(code)


def where(settings: Settings) -> str:
    """Which log and namespace `settings` point at, for messages."""
    if settings.resolved_backend == "kafka":
        return f"Kafka at {settings.kafka.bootstrap_servers}, namespace {settings.namespace!r}"
    return f"the embedded log in {Path(settings.data_dir).resolve()}, namespace {settings.namespace!r}"


def load_settings() -> Settings:
    """`Settings()` from the ``TETHER_*`` variables; a bad value exits 2 naming the variable."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"TETHER_{'__'.join(str(part) for part in error['loc']).upper()}: {error['msg']}" for error in exc.errors()
        )
        fail(f"bad setting: {problems}", EXIT_USAGE)


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
    @click.option(
        "--partitions",
        type=click.IntRange(min=1),
        default=None,
        help="Partitions of a new namespace (TETHER_PARTITIONS); another count than an existing one's is exit 2.",
    )
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
        configure_logging(verbose)  # until the settings say which format (a bad one is reported)
        base = load_settings()
        if log_format is not None:
            base = base.model_copy(update={"runtime": base.runtime.model_copy(update={"log_format": log_format})})
        try:
            redaction.install(redaction.load_redactor(base.runtime.redact))
        except TetherError as exc:
            fail(exc, EXIT_USAGE)
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
        except UsageError as exc:  # an operator mistake: a namespace, key, time or value that is wrong
            fail(exc, EXIT_USAGE)
        except TetherError as exc:
            code = exit_code(exc)
            if code == EXIT_UNAVAILABLE:  # say where it looked: a wrong -b/--data-dir/-n is common
                fail(f"{exc} (looked at {where(settings)})", code)
            fail(exc, code)

    return wrapper  # type: ignore[return-value]


@click.command(context_settings=HELP_OPTIONS)
@click.argument("target", metavar="MODULE:OBJECT")
@click.option("--ray", "use_ray", is_flag=True, help="Run the workers as Ray actors.")
@click.option("--workers", type=int, default=1, show_default=True, help="Workers (with --ray).")
@click.option("--ray-address", default=None, help="An existing Ray cluster (default: start a local one).")
@click.option("--json", "as_json", is_flag=True, help="Print the ready line (and errors) as JSON.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on this port (TETHER_RUNTIME__METRICS_PORT); Ray workers use PORT + index.",
)
@settings_options
def serve(
    settings: Settings,
    target: str,
    use_ray: bool,
    workers: int,
    ray_address: str | None,
    as_json: bool,
    metrics_port: int | None,
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
        try:
            from ..hosting.ray import serve_on_ray
        except ModuleNotFoundError as exc:
            if exc.name != "ray" and not (exc.name or "").startswith("ray."):
                raise
            fail("--ray needs Ray, which is an extra: pip install 'tether[ray]'", EXIT_USAGE)

        serve_on_ray(target, settings, workers=workers, address=ray_address)
        return

    def ready(line: str) -> None:
        if as_json:
            inbox = Topics(settings.namespace).inbox
            click.echo(
                json.dumps(
                    {
                        "ready": True,
                        "namespace": settings.namespace,
                        "where": where(settings),
                        "inbox": inbox,
                        "pid": os.getpid(),
                        "line": line,
                    }
                )
            )
        else:
            click.echo(line)

    asyncio.run(serve_worker(objects, settings, on_ready=ready))


@click.command(context_settings=HELP_OPTIONS)
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


def _json_items(items: list[dict[str, Any]]) -> None:
    """One JSON document, ``{"total": n, "items": [...]}``, as `tether dlq list --json` prints."""
    click.echo(json.dumps({"total": len(items), "items": items}, indent=2, default=str))


def _console() -> Console:
    """A console for people (no highlighting: record text is printed as it is, escaped)."""
    from rich.console import Console

    return Console(highlight=False)


def session_arguments(fn: F) -> F:
    """The arguments that name one session: its type (TYPE) and its key (KEY)."""
    return click.argument("object_name", metavar="TYPE")(click.argument("key")(fn))


@click.group(context_settings=HELP_OPTIONS)
def sessions() -> None:
    """Inspect sessions: current state and history."""


@sessions.command("list")
@click.option("--object", "object_name", default=None, metavar="TYPE", help="Only sessions of this type.")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["parked", "suspended", "waiting", "running", "failed", "idle"]),
    help="Only sessions in this status (repeatable).",
)
@click.option("--since", default=None, metavar="TIME", help="Only sessions active since TIME (2h, ISO 8601, ms).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one document).")
@settings_options
def sessions_list(
    settings: Settings, object_name: str | None, statuses: tuple[str, ...], since: str | None, as_json: bool
) -> None:
    """The namespace's sessions, most recently active first, read from the log (no worker needed).

    Status: parked (behind a dead letter), suspended (on an awakeable), waiting (on a timer),
    running (steps journaled, not finished), failed (last invocation failed), idle.
    """
    from ..inspection.listing import list_sessions
    from ..inspection.times import iso, parse_time

    since_ms = parse_time(since) if since is not None else None
    found = asyncio.run(
        list_sessions(settings, object_name=object_name, statuses=statuses, since_ms=since_ms)  # type: ignore[arg-type]
    )
    if as_json:
        items = []
        for summary in found:
            item = summary.to_json()
            item["last_activity"] = iso(summary.last_activity_ms)
            if item["wait"] is not None:
                item["wait"]["until"] = iso(summary.wait.until_ms if summary.wait else None)
            items.append(item)
        _json_items(items)
        return
    from ..inspection.show import print_sessions

    print_sessions(_console(), found)


@sessions.command("cancel")
@session_arguments
@click.option(
    "--invocation", default=None, metavar="ID", help="Which message's invocation (default: the one running or waiting)."
)
@click.option(
    "--reason", default="cancelled by an operator", show_default=True, help="Recorded, and given to the caller."
)
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for the session.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options
def sessions_cancel(
    settings: Settings, object_name: str, key: str, invocation: str | None, reason: str, timeout: float, as_json: bool
) -> None:
    """Cancel the running or waiting invocation of TYPE KEY (or a queued message's, --invocation).

    It ends at its next wait or new step with InvocationCancelledError, which its caller gets and
    the session's history records (who, when, why); journaled steps are not run again, nothing is
    dead-lettered. Exit 2 when nothing of that id is open, 1 when it was cancelled before.
    """
    from ..inspection.audit import operator
    from ..inspection.cancelling import cancel_invocation

    by = operator()
    invocation, accepted = asyncio.run(
        cancel_invocation(settings, object_name, key, invocation=invocation, reason=reason, by=by, timeout=timeout)
    )
    fields = {"object": object_name, "key": key, "invocation": invocation, "by": by, "reason": reason}
    if not accepted:
        say(as_json, f"invocation {invocation} was cancelled before; nothing changed", cancelled=False, **fields)
        sys.exit(EXIT_FAILURE)
    say(
        as_json,
        f"cancelled invocation {invocation} of {object_name}/{key} (by {by}): {reason}",
        cancelled=True,
        **fields,
    )


@sessions.command("show")
@session_arguments
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
    from ..inspection.show import print_view

    print_view(_console(), view, app=app)


@sessions.command("history")
@session_arguments
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one document).")
@settings_options
def sessions_history(settings: Settings, object_name: str, key: str, as_json: bool) -> None:
    """Invocations, steps, waits and events of session TYPE KEY in log order (writes nothing)."""
    from ..inspection.views import session_history

    entries = asyncio.run(session_history(settings, object_name, key))
    if as_json:
        _json_items(entries)
        return
    from ..inspection.show import print_history

    print_history(_console(), entries)


@sessions.command("export")
@session_arguments
@click.option("--json", "as_json", is_flag=True, help="Accepted for the contract: the output is JSON anyway.")
@settings_options
def sessions_export(settings: Settings, object_name: str, key: str, as_json: bool) -> None:
    """Print the history of TYPE KEY as JSON (its messages and journal), for `tether replay-check`.

    Read-only. The document is versioned (``tether.session-history``, version 1).
    """
    from ..testing.history import export_session

    click.echo(asyncio.run(export_session(settings, object_name, key)).dumps(), nl=False)


@sessions.command("restart")
@session_arguments
@click.option("--from-step", type=int, required=True, help="First step to run again; earlier ones are reused.")
@click.option("--invocation", default=None, help="Which invocation (default: the latest).")
@click.option("--payload", default=None, help="Replacement input as JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options
def sessions_restart(
    settings: Settings,
    object_name: str,
    key: str,
    from_step: int,
    invocation: str | None,
    payload: str | None,
    as_json: bool,
) -> None:
    """Re-run an invocation of TYPE KEY from step N, reusing the journaled steps before it."""
    from ..inspection.views import restart_invocation

    try:
        replacement = json.loads(payload) if payload is not None else None
    except json.JSONDecodeError as exc:
        fail(f"--payload must be JSON ({exc}); quote strings: '\"text\"'", EXIT_USAGE)
    new_id = asyncio.run(
        restart_invocation(settings, object_name, key, from_step=from_step, invocation=invocation, payload=replacement)
    )
    click.echo(json.dumps({"invocation_id": new_id}) if as_json else new_id)


@click.group(context_settings=HELP_OPTIONS)
def awakeable() -> None:
    """Complete awakeables (durable promises a handler waits on, e.g. human approval)."""


def _complete_awakeable(
    settings: Settings,
    awakeable_id: str,
    outcome: dict[str, Any],
    verb: str,
    *,
    timeout: float,
    no_wait: bool,
    force: bool,
    as_json: bool = False,
) -> None:
    """Resolve or reject: check the id is open, send the completion, report; exit codes as documented.

    The keyword arguments are `_awakeable_options`, as click passes them.
    """
    from ..client import Client
    from ..inspection.audit import operator
    from ..inspection.views import awakeable_status

    if not force:
        status, completion = asyncio.run(awakeable_status(settings, awakeable_id))
        if status == "completed" and completion is not None:
            who = f" by {completion.by}" if completion.by else ""
            say(as_json, f"already completed{who}; nothing changed", id=awakeable_id, accepted=False, by=completion.by)
            sys.exit(EXIT_FAILURE)
        if status == "unknown":
            raise UsageError(
                f"no session waits on awakeable {awakeable_id!r} in namespace {settings.namespace!r} "
                "(a typo? `tether sessions list --status suspended` shows the open ones); "
                "--force sends the completion anyway"
            )
    by = operator()

    async def go() -> bool | None:
        async with Client.connect(settings) as client:
            if no_wait:
                await client.send_raw(
                    *_awakeable_session(awakeable_id),
                    RESOLVE_HANDLER,
                    {"id": awakeable_id, **outcome, "by": by},
                    idempotency_key=f"{awakeable_id}:complete",
                )
                return None
            if "err" in outcome:
                return await client.reject(awakeable_id, outcome["err"]["message"], timeout=timeout, by=by)
            return await client.resolve(awakeable_id, outcome["ok"], timeout=timeout, by=by)

    accepted = asyncio.run(go())
    if accepted is None:
        say(as_json, f"sent ({verb} by {by}); not waiting for the session", id=awakeable_id, sent=True, by=by)
        return
    text = f"{verb} by {by}" if accepted else "already completed; nothing changed"
    say(as_json, text, id=awakeable_id, accepted=bool(accepted), by=by)
    sys.exit(0 if accepted else EXIT_FAILURE)


def _awakeable_session(awakeable_id: str) -> tuple[str, str]:
    from ..protocol.awakeables import parse_awakeable_id

    object_name, key, _ = parse_awakeable_id(awakeable_id)
    return object_name, key


_AWAKEABLE_OPTIONS = [
    click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for the session."),
    click.option("--no-wait", "no_wait", is_flag=True, help="Send the completion and return at once."),
    click.option("--force", is_flag=True, help="Send even if the log shows no session waiting on ID."),
    click.option("--json", "as_json", is_flag=True, help="Print JSON."),
]


def _awakeable_options(fn: F) -> F:
    for option in reversed(_AWAKEABLE_OPTIONS):
        fn = option(fn)
    return fn


@awakeable.command("resolve")
@click.argument("awakeable_id", metavar="ID")
@click.argument("value", default="null")
@_awakeable_options
@settings_options
def awakeable_resolve(settings: Settings, awakeable_id: str, value: str, **options: Any) -> None:
    """Resolve awakeable ID with VALUE (JSON); the waiting handler resumes with it.

    Checks first that a session waits on ID (exit 2 if none does, 1 if it was completed before);
    records who resolved it (user@host) with the completion.
    """
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"VALUE must be JSON ({exc}); quote strings: '\"yes\"'") from exc
    _complete_awakeable(settings, awakeable_id, {"ok": parsed}, "resolved", **options)


@awakeable.command("reject")
@click.argument("awakeable_id", metavar="ID")
@click.argument("reason")
@_awakeable_options
@settings_options
def awakeable_reject(settings: Settings, awakeable_id: str, reason: str, **options: Any) -> None:
    """Reject awakeable ID; the waiting handler fails with REASON (checked and recorded as resolve)."""
    error = {"type": "Rejected", "message": reason}
    _complete_awakeable(settings, awakeable_id, {"err": error}, "rejected", **options)


@click.command("replay-check", context_settings=HELP_OPTIONS)
@click.argument("target", metavar="MODULE:OBJECT")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-v", "--verbose", count=True, help="-v for lifecycle logs, -vv for debug.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (errors too).")
def replay_check(target: str, files: tuple[Path, ...], verbose: int, as_json: bool) -> None:
    """Replay recorded histories (`tether sessions export`) against the current code of MODULE:OBJECT.

    Exits 0 when every history replays, 1 when one does not (each mismatch is printed with
    the recorded and the new step side by side), 2 when a file is not a history it can read
    (or a value it keeps in the blob store, TETHER_RUNTIME__BLOB_STORE, cannot be read).
    """
    from ..hosting.worker import load_objects
    from ..testing.replayer import Replayer

    configure_logging(verbose)
    sys.path.insert(0, ".")
    try:
        replayer = Replayer(load_objects(target), runtime=load_settings().runtime)
        reports = [asyncio.run(replayer.replay(path)) for path in files]
    except TetherError as exc:
        fail(exc, EXIT_USAGE)
    ok = all(r.ok for r in reports)
    if as_json:
        items = [
            {"file": str(path), "object": r.object_name, "key": r.key, "invocations": r.invocations, "ok": r.ok}
            | {"report": r.render()}
            for path, r in zip(files, reports, strict=True)
        ]
        click.echo(json.dumps({"ok": ok, "histories": items}, ensure_ascii=True))
    else:
        for report in reports:
            click.echo(printable(report.render()))
    sys.exit(0 if ok else EXIT_FAILURE)


@click.group(context_settings=HELP_OPTIONS)
def blobs() -> None:
    """The blob store of large values (TETHER_RUNTIME__BLOB_STORE or BLOB_DIR)."""


@blobs.command("gc")
@click.option(
    "--older-than",
    type=click.FloatRange(min=0),
    default=86_400.0,
    show_default=True,
    metavar="SECONDS",
    help="Sweep only blobs last written longer ago than this (covers records not yet committed).",
)
@click.option("--dry-run", is_flag=True, help="Only report what would be deleted.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one document).")
@settings_options
def blobs_gc(settings: Settings, older_than: float, dry_run: bool, as_json: bool) -> None:
    """Delete blobs that no record of the namespace names any more.

    Scans every topic of the namespace for blob references; a blob none names and last written
    more than --older-than seconds ago is deleted. Run it with the namespace's workers up or
    down; never point two namespaces' settings at one store and sweep only one of them.
    """
    location = settings.runtime.blob_location
    if location is None:
        raise UsageError("no blob store is configured: set TETHER_RUNTIME__BLOB_STORE (or TETHER_RUNTIME__BLOB_DIR)")
    from eventstore import open_log
    from eventstore.blob_stores import open_blob_store
    from eventstore.blob_sweep import SweepReport, sweep_blobs

    store = open_blob_store(location)

    async def go() -> SweepReport:
        log = open_log(settings)
        await log.start()
        try:
            return await sweep_blobs(log, Topics(settings.namespace), store, older_than=older_than, dry_run=dry_run)
        finally:
            await log.close()

    report = asyncio.run(go())
    verb = "would delete" if dry_run else "deleted"
    say(
        as_json,
        f"{report.stored} blobs in {location}: {report.live} named by records, {report.young} younger than "
        f"{older_than:g} s (kept); {verb} {len(report.swept)} ({report.swept_bytes} bytes)",
        **report.to_json(),
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tether")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


def build() -> click.Group:
    """The `tether` group with its own commands and every installed `tether.commands` group."""
    group = click.Group(
        "tether",
        help="Durable AI-agent sessions on Apache Kafka.\n\n" + EXIT_CODES_HELP,
        context_settings=HELP_OPTIONS,
    )
    group = click.version_option(_version(), "--version", prog_name="tether", message="%(prog)s %(version)s")(group)
    for command in (serve, demo, sessions, awakeable, replay_check, blobs):
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
