"""`tether saga list|show|retry|cancel`: thin commands over `sagas.inspect` and `SagaClient`.

`list` and `show` read the log directly (no worker needed, no saga code imported); `retry`
and `cancel` ask the worker that serves the saga's coordinator to resume or cancel it. Exit
codes as for every `tether` command: 0 done, 1 failed (nothing to retry or cancel), 2 no such
saga, 3 unavailable (log or worker unreachable).
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from typing import Any

import click
from rich.text import Text

from actors import Client, Settings
from actors.cli.main import EXIT_FAILURE, EXIT_USAGE, HELP_OPTIONS, fail, settings_options
from actors.inspection.terminal import data_text, plain, printable

from .client import SagaClient
from .errors import SagaNotFoundError
from .events import SagaStatus, StepState
from .inspect import SagaRecord, find_saga, read_sagas

STATUSES: tuple[SagaStatus, ...] = ("running", "compensating", "completed", "compensated", "cancelled", "stuck")
_COLORS = {
    "completed": "green",
    "compensated": "yellow",
    "cancelled": "yellow",
    "stuck": "bold red",
    "running": "cyan",
    "compensating": "magenta",
    "succeeded": "green",
    "failed": "red",
    "pending": "dim",
    "compensation_failed": "bold red",
}


def _when(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else ""


def _paint(text: str) -> Text:
    return plain(text, style=_COLORS.get(text, ""))


def _summary(rec: SagaRecord) -> dict[str, Any]:
    s = rec.state
    done = sum(step.status in ("succeeded", "compensated") for step in s.steps)
    note = ""
    if s.stuck is not None:
        note = s.stuck.reason
    elif s.cancelled is not None:
        note = f"cancelled by {s.cancelled.by}: {s.cancelled.reason}"
    elif s.failed_step and s.failure is not None:
        note = f"{s.failed_step}: {s.failure.type}: {s.failure.message}"
    return {
        "saga_id": rec.saga_id,
        "saga": rec.saga,
        "status": s.status,
        "steps_done": done,
        "steps": len(s.steps),
        "started_at": s.started_at.isoformat() if s.started_at else None,
        "ended_at": s.ended_at.isoformat() if s.ended_at else None,
        "note": note,
        "waiting": rec.waiting,
        "waits": [w.to_json() for w in rec.waits],
        "skipped_kinds": rec.skipped_kinds,
    }


@click.group(context_settings=HELP_OPTIONS)
def saga() -> None:
    """Inspect sagas, resume stuck ones, cancel running ones."""


@saga.command("list")
@click.option(
    "--status",
    "status",
    type=click.Choice(STATUSES),
    default=None,
    help="Only sagas in this status.",
)
@click.option("--saga", "saga_name", default=None, metavar="NAME", help="Only sagas of this definition.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one document).")
@settings_options
def list_sagas(settings: Settings, status: str | None, saga_name: str | None, as_json: bool) -> None:
    """Every saga in the namespace, read from the log."""
    records = asyncio.run(read_sagas(settings, saga=saga_name))
    rows = [_summary(r) for r in records if status is None or r.state.status == status]
    if as_json:  # one document, as every listing prints it: {"total": n, "items": [...]}
        click.echo(json.dumps({"total": len(rows), "items": rows}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("saga id", "saga", "status", "steps", "started", "ended", "note")
    for column in table.columns[:6]:
        column.no_wrap = True
    for row in rows:
        cell = _paint(row["status"])
        if row["waiting"]:
            cell.append(" (waiting)", style="cyan")
        note = "; ".join(n for n in (row["waiting"] and f"waiting: {row['waiting']}", row["note"]) if n)
        table.add_row(
            plain(row["saga_id"]),
            plain(row["saga"]),
            cell,
            f"{row['steps_done']}/{row['steps']}",
            (row["started_at"] or "")[:19].replace("T", " "),
            (row["ended_at"] or "")[11:19],
            plain(note, limit=100),
        )
    console = Console()
    console.print(table)
    console.print(f"{len(rows)} saga(s)")


def _attempts(attempts: list[Any]) -> str:
    if not attempts:
        return ""
    seconds = sum(a.seconds for a in attempts)
    return f"{len(attempts)} ({seconds:.2f} s)"


def _step_json(step: StepState) -> dict[str, Any]:
    return step.model_dump(mode="json")


@saga.command("show")
@click.argument("saga_id")
@click.option("--saga", "saga_name", default=None, metavar="NAME", help="The definition, when ids repeat.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options
def show(settings: Settings, saga_id: str, saga_name: str | None, as_json: bool) -> None:
    """One saga: input, steps with results, errors, attempts and timings."""
    try:
        rec = asyncio.run(find_saga(settings, saga_id, saga=saga_name))
    except SagaNotFoundError as exc:  # an operator mistake (a typo in the id): exit 2
        fail(exc, EXIT_USAGE)
    s = rec.state
    if as_json:
        out = {
            "saga": rec.saga,
            "saga_id": rec.saga_id,
            "version": rec.version,
            "state": s.model_dump(mode="json"),
            "in_flight": rec.in_flight,
            "failures": rec.failures,
            "waiting": rec.waiting,
            "waits": [w.to_json() for w in rec.waits],
            "skipped_kinds": rec.skipped_kinds,
        }
        click.echo(json.dumps(out, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    console.print(Text.assemble(plain(f"saga {rec.saga}/{rec.saga_id}", style="bold"), ": ", _paint(s.status)))
    if rec.waiting:
        console.print(Text.assemble(("waiting: ", "cyan"), plain(rec.waiting)))
    console.print(Text.assemble("input: ", data_text(s.input, indent=None)))
    console.print(f"started {_when(s.started_at)}" + (f", ended {_when(s.ended_at)}" if s.ended_at else ""))
    if s.failed_step and s.failure is not None:
        console.print(
            Text.assemble(("failed step ", "red"), plain(f"{s.failed_step}: {s.failure.type}: {s.failure.message}"))
        )
    if s.cancelled is not None:
        who = s.cancelled
        console.print(Text.assemble(("cancelled", "yellow"), plain(f" {_when(who.at)} by {who.by}: {who.reason}")))
    if s.stuck is not None:
        console.print(Text.assemble(("stuck", "bold red"), plain(f" since {_when(s.stuck.at)}: {s.stuck.reason}")))
    if s.resumes:
        console.print(f"resumed {s.resumes} time(s)")
    table = Table("group", "step", "status", "action attempts", "result / error", "compensation")
    for column in table.columns[:4]:
        column.no_wrap = True
    for step in s.steps:
        if step.error is not None:
            outcome = plain(f"{step.error.type}: {step.error.message}", style="red", limit=80)
            if step.uncertain:
                outcome = Text.assemble(("may have taken effect ", "yellow"), outcome)
        else:
            outcome = data_text(step.result, indent=None, limit=80) if step.result is not None else Text("")
        comp = Text(_attempts(step.compensation_attempts) or "-") if step.compensable else Text("")
        if step.compensable and step.compensation_error is not None:
            error = step.compensation_error
            comp.append_text(plain(f" {error.type}: {error.message}", style="red", limit=80))
        table.add_row(str(step.group), plain(step.name), _paint(step.status), _attempts(step.attempts), outcome, comp)
    console.print(table)
    if rec.in_flight:
        console.print("[yellow]in flight (journaled attempts of an unfinished invocation):[/]")
        for e in rec.in_flight:
            what = e.get("error") or e.get("result")
            console.print(
                Text.assemble(plain(f"  #{e['index']} {e['name']}: "), data_text(what, indent=None, limit=100))
            )
    for f in rec.failures:
        message = str(f["error"].get("message", ""))
        console.print(Text.assemble(("dead-lettered ", "red"), plain(f"{f['handler']}: {message}", limit=200)))
    if rec.skipped_kinds:
        kinds = ", ".join(sorted(set(rec.skipped_kinds)))
        console.print(
            plain(f"skipped {len(rec.skipped_kinds)} entry(ies) of unknown kind {kinds} (a newer Tether?)"),
            style="yellow",
        )


@saga.command("retry")
@click.argument("saga_id")
@click.option("--saga", "saga_name", default=None, metavar="NAME", help="The definition (skips the log scan).")
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for the worker.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options
def retry(settings: Settings, saga_id: str, saga_name: str | None, timeout: float, as_json: bool) -> None:
    """Resume a stuck saga: its compensation, or its failed step, after the cause is fixed.

    A worker serving the saga must be running. A running saga is nudged (harmless).
    """

    async def go() -> tuple[str, Any]:
        name = saga_name or (await find_saga(settings, saga_id)).saga
        async with Client.connect(settings) as client:
            return name, await SagaClient(client).retry(name, saga_id, timeout=timeout)

    try:
        name, result = asyncio.run(go())
    except SagaNotFoundError as exc:
        fail(exc, EXIT_USAGE)
    if as_json:
        out = {"saga": name, "saga_id": saga_id, "resumed": result.resumed, "status": result.status}
        click.echo(json.dumps({**out, "message": result.message}, ensure_ascii=True))
        sys.exit(0 if result.resumed else EXIT_FAILURE)
    if result.resumed:
        click.echo(printable(f"saga {name}/{saga_id}: {result.message} (now {result.status})"))
        return
    click.secho(printable(f"saga {name}/{saga_id}: {result.message}"), fg="yellow", err=True)
    sys.exit(EXIT_FAILURE)


@saga.command("cancel")
@click.argument("saga_id")
@click.option("--saga", "saga_name", default=None, metavar="NAME", help="The definition (skips the log scan).")
@click.option(
    "--reason", default="cancelled by an operator", show_default=True, help="Recorded, and shown by saga show."
)
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for the worker.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options
def cancel(settings: Settings, saga_id: str, saga_name: str | None, reason: str, timeout: float, as_json: bool) -> None:
    """Cancel a running saga as a whole: no more steps start, completed ones are compensated.

    Compensations run in reverse order, each once; the saga then ends `cancelled`, and `saga
    show` says who cancelled it, when and why. A group of steps already running finishes
    first. A saga stuck on a step that must not be undone can be cancelled too. A worker
    serving the saga must be running. Exit 1 when there is nothing to cancel (completed,
    compensating, cancelled before).
    """
    from actors.inspection.audit import operator

    by = operator()

    async def go() -> tuple[str, Any]:
        name = saga_name or (await find_saga(settings, saga_id)).saga
        async with Client.connect(settings) as client:
            return name, await SagaClient(client).cancel(name, saga_id, reason, by=by, timeout=timeout)

    try:
        name, result = asyncio.run(go())
    except SagaNotFoundError as exc:
        fail(exc, EXIT_USAGE)
    if as_json:
        out = {"saga": name, "saga_id": saga_id, "cancelled": result.cancelled, "status": result.status, "by": by}
        click.echo(json.dumps({**out, "reason": reason, "message": result.message}, ensure_ascii=True))
        sys.exit(0 if result.cancelled else EXIT_FAILURE)
    if result.cancelled:
        click.echo(printable(f"saga {name}/{saga_id}: {result.message} (by {by}: {reason})"))
        return
    click.secho(printable(f"saga {name}/{saga_id}: {result.message}"), fg="yellow", err=True)
    sys.exit(EXIT_FAILURE)
