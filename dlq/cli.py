"""`tether dlq`: list, stats, show, replay and discard dead letters; a thin layer over the API.

Exit codes: 0 done; 1 some items failed (or another error); 2 an operator mistake (unknown id,
a filter that matches nothing, bad arguments); 3 the broker (or data directory) is unreachable.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn, TypeVar, cast

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from actors import Settings
from actors.cli.main import EXIT_FAILURE, EXIT_UNAVAILABLE, EXIT_USAGE, HELP_OPTIONS, exit_code, settings_options
from actors.inspection.terminal import data_text, plain
from actors.inspection.times import iso
from eventstore import LogUnavailableError, TetherError

from .deadletters import DeadLetters
from .errors import DlqError, InvalidFilterError
from .inspector import DEFAULT_GROUP_BY, GROUP_FIELDS, Filter, GroupField, StatsRow, parse_time
from .records import DeadLetter, render_bytes, render_header
from .replayer import Transform
from .reports import ItemResult, Report
from .status import STATUSES

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

EXIT_OK = 0
"""Done; every item succeeded (or was skipped as already resolved)."""
EXIT_ITEMS_FAILED = EXIT_FAILURE
"""Some items failed (see the report); the rest were done."""

CATEGORIES = ("terminal", "exhausted", "poison", "oversize", "foreign")
ITEM_ROWS = 50
"""Per-item rows a person sees; --json always has every item."""
NOTHING_SELECTED = (
    "say which dead letters to {action}: one or more IDs, --all, or filters (--session, "
    "--handler, --error, --category, --status, --since, --until)"
)


def _out() -> Console:
    return Console(highlight=False, soft_wrap=False)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _emit_json(value: Any) -> None:
    # ensure_ascii writes every control character of a record as \uXXXX: none reaches a terminal.
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=True))


def _fail(exc: BaseException, code: int, as_json: bool) -> NoReturn:
    if as_json:
        _emit_json({"error": {"type": type(exc).__name__, "message": str(exc), "exit_code": code}})
    _err().print(Text.assemble(("error:", "bold red"), " ", plain(exc)))
    sys.exit(code)


def _run(as_json: bool, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `work` and turn Tether errors into an error message and the exit code they mean."""
    try:
        return asyncio.run(work())
    except DlqError as exc:
        _fail(exc, EXIT_USAGE, as_json)
    except LogUnavailableError as exc:
        _fail(exc, EXIT_UNAVAILABLE, as_json)
    except TetherError as exc:  # the one contract of `tether` (a bad setting is 2, and so on)
        _fail(exc, exit_code(exc), as_json)


def topic_option(fn: F) -> F:
    """``--topic``: another dead-letter topic than the namespace's (Spring Kafka, Kafka Connect)."""
    return click.option(
        "--topic",
        default=None,
        metavar="TOPIC",
        help="Read this dead-letter topic instead of the namespace's (one written by Spring Kafka "
        "or Kafka Connect; replay it with --transform returning dlq.ReplayTarget).",
    )(fn)


def filter_options(fn: F) -> F:
    """The options that select dead letters, shared by every command that takes a selection."""
    options = [
        click.option(
            "--session",
            metavar="TYPE[/KEY]",
            default=None,
            help="Only this session type, or this one session.",
        ),
        click.option(
            "--handler",
            "handlers",
            multiple=True,
            metavar="NAME",
            help="Only this handler (NAME or TYPE.NAME); repeat for several.",
        ),
        click.option(
            "--error",
            "errors",
            multiple=True,
            metavar="CLASS",
            help="Only this exception class (short or fully qualified); repeatable.",
        ),
        click.option(
            "--category",
            "categories",
            multiple=True,
            type=click.Choice(CATEGORIES),
            help="Only this failure category; repeatable.",
        ),
        click.option(
            "--status",
            "statuses",
            multiple=True,
            type=click.Choice(STATUSES),
            help="Only this status; repeatable.",
        ),
        click.option(
            "--since",
            default=None,
            metavar="TIME",
            help="Last failure at or after TIME: ISO 8601 (UTC), 15m/2h/3d ago, or epoch ms.",
        ),
        click.option("--until", default=None, metavar="TIME", help="Last failure before TIME."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _filter(
    session: str | None,
    handlers: Sequence[str],
    errors: Sequence[str],
    categories: Sequence[str],
    statuses: Sequence[str],
    since: str | None,
    until: str | None,
) -> Filter:
    fields: dict[str, Any] = {
        "handlers": tuple(handlers),
        "error_classes": tuple(errors),
        "categories": tuple(categories),
        "statuses": tuple(statuses),
        "since_ms": parse_time(since) if since else None,
        "until_ms": parse_time(until) if until else None,
    }
    if session:
        return Filter.session(session, **fields)
    return Filter.model_validate(fields)


def _when(ms: int | None) -> str:
    text = iso(ms)
    return "" if text is None else text.replace("T", " ")[:19]


def _where(item: DeadLetter | ItemResult) -> Text:
    return plain(item.session or "?")


# -- the group ---------------------------------------------------------------------------------
@click.group(context_settings=HELP_OPTIONS)
def dlq() -> None:
    """Dead letters: list, stats, show, replay and discard what failed for good.

    Exit codes: 0 ok, 1 some items failed, 2 operator mistake (unknown id, filter that
    matches nothing), 3 broker unreachable.
    """


@dlq.command("list")
@filter_options
@click.option("--limit", type=int, default=100, show_default=True, help="Show the latest N matches (0: all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@topic_option
@settings_options
def list_command(settings: Settings, limit: int, as_json: bool, topic: str | None, **filters: Any) -> None:
    """List dead letters (oldest first), optionally filtered."""

    async def work() -> tuple[list[DeadLetter], int]:
        where = _filter(**filters)
        async with DeadLetters(settings, topic=topic) as dead:
            return await dead.page(where, limit=limit)

    letters, total = _run(as_json, work)
    if as_json:
        _emit_json({"total": total, "shown": len(letters), "items": [x.to_json() for x in letters]})
        return
    if not letters:
        _out().print(plain(f"no dead letters in namespace {settings.namespace}"))
        return
    table = Table("id", "status", "category", "session", "handler", "error", "last failure")
    table.columns[0].no_wrap = True
    for x in letters:
        table.add_row(
            x.id,
            x.status,
            plain(x.category),
            _where(x),
            plain(x.handler),
            plain(f"{x.error_class}: {x.summary_line}", limit=100),
            _when(x.seen_ms),
        )
    console = _out()
    console.print(table)
    if len(letters) < total:
        console.print(f"showing the latest {len(letters)} of {total}; --limit 0 shows all")


@dlq.command("stats")
@filter_options
@click.option(
    "--by",
    "group_by",
    default=",".join(DEFAULT_GROUP_BY),
    show_default=True,
    metavar="FIELDS",
    help="Group by these, comma-separated: error_class, handler, message.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@topic_option
@settings_options
def stats_command(settings: Settings, group_by: str, as_json: bool, topic: str | None, **filters: Any) -> None:
    """Count dead letters by error class and handler (--by adds the message's first line)."""
    fields = [f.strip() for f in group_by.split(",") if f.strip()]

    async def work() -> tuple[list[StatsRow], int]:
        for name in fields:
            if name not in GROUP_FIELDS:
                raise InvalidFilterError(f"--by {name!r}: choose from {', '.join(GROUP_FIELDS)}")
        where = _filter(**filters)
        async with DeadLetters(settings, topic=topic) as dead:
            rows = await dead.stats(where, by=cast(list[GroupField], fields))
        return rows, sum(r.count for r in rows)

    rows, total = _run(as_json, work)
    if as_json:
        _emit_json({"total": total, "groups": [r.to_json() for r in rows]})
        return
    if not rows:
        _out().print(plain(f"no dead letters in namespace {settings.namespace}"))
        return
    table = Table("count", "pending")
    for name in fields:
        table.add_column(name.replace("_", " "), overflow="fold")
    table.add_column("first / last seen")
    table.add_column("example", no_wrap=True)
    for r in rows:
        cells = [plain(r.count), plain(r.statuses.get("pending", 0))]
        cells += [plain(getattr(r, name), limit=120) for name in fields]
        cells += [Text(f"{_when(r.first_seen_ms)}\n{_when(r.last_seen_ms)}"), plain(r.example_id)]
        table.add_row(*cells)
    console = _out()
    console.print(table)
    console.print(f"{total} dead letter(s) in {len(rows)} group(s)")


@dlq.command("show")
@click.argument("dead_letter_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@topic_option
@settings_options
def show_command(settings: Settings, dead_letter_id: str, as_json: bool, topic: str | None) -> None:
    """Show one dead letter: payload, headers, stack trace, status."""

    async def work() -> DeadLetter:
        async with DeadLetters(settings, topic=topic) as dead:
            return await dead.show(dead_letter_id)

    letter = _run(as_json, work)
    if as_json:
        _emit_json(letter.to_json(detail=True))
        return
    data = letter.to_json(detail=True)
    console = _out()
    console.print(Text.assemble((f"dead letter {letter.id}", "bold"), plain(f" ({letter.status}, {letter.category})")))
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for label, value in (
        ("session", letter.session),
        ("handler", letter.handler),
        ("message id", letter.message_id),
        ("replay of", letter.replay_of),
        ("error", f"{letter.error_fqcn or letter.error_class}: {letter.error_message}"),
        ("cause", letter.error_cause_fqcn),
        ("attempts", str(letter.attempts)),
        ("first failure", data["first_failure"]),
        ("last failure", data["last_failure"]),
        (
            "original",
            f"{letter.original_topic}/{letter.original_partition}@{letter.original_offset}",
        ),
        ("consumer group", letter.consumer_group),
        ("written by", None if letter.producer == "tether" else letter.producer),
        ("connect", ", ".join(f"{k}={v}" for k, v in letter.connect.items()) if letter.connect else None),
        ("dead-lettered", data["dead_lettered_at"]),
        ("record key", render_bytes(letter.key)),
    ):
        if value is not None:
            facts.add_row(label, plain(value, multiline=label == "error"))
    console.print(facts)
    if letter.resolution is not None:
        r = letter.resolution
        console.print(
            Text.assemble(
                ("status:", "bold"),
                plain(
                    f" {r.status} at {iso(r.at_ms)} by {r.by}"
                    + (f" as {r.replay_message_id}" if r.replay_message_id else "")
                    + (f": {r.reason}" if r.reason else "")
                ),
            )
        )
        for t in r.history:
            console.print(
                plain(f"  earlier: {t.status} at {iso(t.at_ms)} by {t.by}" + (f": {t.reason}" if t.reason else ""))
            )
    if letter.message is not None:
        console.print("[bold]payload:[/]")
        console.print(data_text(letter.payload_shown))
    else:
        console.print(Text.assemble(("poison record:", "bold yellow"), " ", plain(letter.decode_error)))
        console.print(Text.assemble("value: ", plain(render_bytes(letter.value) or "(none)", limit=2000)))
    headers = Table("header", "value", title="headers")
    for k, v in letter.headers:
        if k != "kafka_dlt-exception-stacktrace":
            headers.add_row(plain(k), plain(render_header(k, v), limit=200))
    console.print(headers)
    if letter.stacktrace:
        console.print("[bold]stack trace:[/]")
        console.print(plain(letter.stacktrace.rstrip(), multiline=True))


def _selection(
    action: str, ids: Sequence[str], select_all: bool, where: Filter
) -> tuple[list[str] | None, Filter | None]:
    if ids and select_all:
        raise InvalidFilterError(f"give IDs or --all to {action}, not both")
    if not ids and not select_all and where.empty:
        raise InvalidFilterError(NOTHING_SELECTED.format(action=action))
    return (list(ids) or None), (None if where.empty else where)


def _print_report(report: Report, *, as_json: bool) -> None:
    if as_json:
        _emit_json(report.to_json())
    else:
        console = _out()
        items = report.items
        shown = items if len(items) <= ITEM_ROWS else [i for i in items if i.outcome == "failed"]
        if shown:
            table = Table("id", "outcome", "session", "handler", "detail")
            for item in shown[:ITEM_ROWS]:
                style = {"failed": "red", "skipped": "yellow"}.get(item.outcome, "green")
                table.add_row(
                    plain(item.id),
                    Text(item.outcome, style=style),
                    _where(item) if item.object_name else "",
                    plain(item.handler),
                    plain(item.reason or item.message_id),
                )
            console.print(table)
            if len(shown) > ITEM_ROWS:
                console.print(f"... and {len(shown) - ITEM_ROWS} more; --json lists every item")
        counts = ", ".join(f"{n} {name}" for name, n in report.counts.items())
        prefix = "dry run: " if report.dry_run else ""
        console.print(f"{prefix}{len(items)} dead letter(s): {counts}")
    if not report.ok:
        sys.exit(EXIT_ITEMS_FAILED)


def _rate(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip().removesuffix("/s")
    try:
        rate = float(text)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a rate: use N or N/s, e.g. 200/s") from None
    if rate <= 0:
        raise click.BadParameter("the rate must be a positive number of replays per second")
    return rate


class _ProgressBar:
    """A rich progress bar on stderr for people; nothing for --json."""

    def __init__(self, enabled: bool, description: str) -> None:
        self._progress: Any = None
        self._task: Any = None
        self._description = description
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[failed]} failed"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=_err(),
                transient=False,
            )

    def __enter__(self) -> _ProgressBar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, item: ItemResult, total: int) -> None:
        if self._progress is None:
            return
        if self._task is None:
            self._task = self._progress.add_task(self._description, total=total, failed=0)
        task = self._progress.tasks[self._task]
        failed = task.fields["failed"] + (item.outcome == "failed")
        self._progress.update(self._task, advance=1, failed=failed)


@dlq.command("replay")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "select_all", is_flag=True, help="Every dead letter (those not yet replayed).")
@filter_options
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; send nothing.")
@click.option("--rate", callback=_rate, default=None, metavar="N[/s]", help="At most N replays per second.")
@click.option(
    "--transform",
    default=None,
    metavar="MODULE:FUNC",
    help="Rewrite each payload first: FUNC(payload[, dead_letter]) -> payload or dlq.ReplayTarget.",
)
@click.option("--include-discarded", is_flag=True, help="Replay discarded dead letters too.")
@click.option("--json", "as_json", is_flag=True, help="Print the per-item report as JSON.")
@topic_option
@settings_options
def replay_command(
    settings: Settings,
    ids: tuple[str, ...],
    select_all: bool,
    dry_run: bool,
    rate: float | None,
    transform: str | None,
    include_discarded: bool,
    as_json: bool,
    topic: str | None,
    **filters: Any,
) -> None:
    """Send dead letters back to their inbox (IDs, --all or filters).

    Idempotent and resumable: a dead letter is applied once however often it is replayed, and
    those already replayed are skipped, so an interrupted replay is resumed by running it again.
    """
    bar = _ProgressBar(not as_json, "dry run" if dry_run else "replaying")

    async def work() -> Report:
        chosen, where = _selection("replay", ids, select_all, _filter(**filters))
        loaded = Transform.load(transform) if transform else None  # fail before connecting
        async with DeadLetters(settings, topic=topic) as dead:
            with bar:
                return await dead.replay(
                    chosen,
                    where,
                    dry_run=dry_run,
                    rate=rate,
                    transform=loaded,
                    include_discarded=include_discarded,
                    progress=bar,
                )

    _print_report(_run(as_json, work), as_json=as_json)


@dlq.command("discard")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--all", "select_all", is_flag=True, help="Every dead letter (those still pending).")
@filter_options
@click.option("--reason", required=True, metavar="TEXT", help="Why, for the audit trail.")
@click.option("--dry-run", is_flag=True, help="Show what would be discarded; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the per-item report as JSON.")
@topic_option
@settings_options
def discard_command(
    settings: Settings,
    ids: tuple[str, ...],
    select_all: bool,
    reason: str,
    dry_run: bool,
    as_json: bool,
    topic: str | None,
    **filters: Any,
) -> None:
    """Resolve dead letters without replay (nothing is deleted).

    Each gets status discarded with who, when and --reason, on the control topic.
    """

    async def work() -> Report:
        chosen, where = _selection("discard", ids, select_all, _filter(**filters))
        async with DeadLetters(settings, topic=topic) as dead:
            return await dead.discard(chosen, where, reason=reason, dry_run=dry_run)

    _print_report(_run(as_json, work), as_json=as_json)
