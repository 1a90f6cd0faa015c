"""Dead letters: counts, a filtered list, one letter, replay (with a dry run) and discard.

Every read and action goes through the `dlq.DeadLetters` facade, as `tether dlq` does; a
bulk action is one `replay` or `discard` call on a filter, run as a `Jobs` job whose progress
the page polls.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

from starlette.datastructures import FormData, QueryParams
from starlette.requests import Request

from actors import Settings
from actors.inspection.times import when
from dlq import STATUSES, DeadLetter, DeadLetters, Filter, InvalidFilterError, NoMatchError, Report, parse_time
from dlq.records import render_bytes
from dlq.status import Status

from .auth import audit, authorize
from .config import ConsoleConfig
from .forms import read_form
from .jobs import Job, Jobs
from .layout import action_form, badge, table
from .markup import Safe, data, esc, join, query, render
from .session_pages import page_number, session_url

__all__ = ["bulk", "discard_one", "job_page", "letter_page", "letters_page", "replay_one"]

HOURLY_SAMPLE = 1000
"""The latest dead letters the hourly counts are made of (a poll must not read the whole topic)."""

_FILTER_FIELDS = ("session", "handler", "error", "category", "status", "since")


def letter_filter(params: QueryParams | FormData) -> Filter:
    """The `dlq.Filter` the list's fields describe (the fields of ``tether dlq list``).

    Raises:
        InvalidFilterError: a status or time that cannot be read.
    """

    def get(name: str) -> str | None:
        value = params.get(name)
        return value.strip() if isinstance(value, str) and value.strip() else None

    statuses = tuple(s for s in (get("status"),) if s)
    for s in statuses:
        if s not in STATUSES:
            raise InvalidFilterError(f"unknown status {s!r}: choose from {', '.join(STATUSES)}")
    fields: dict[str, Any] = {
        "handlers": tuple(v for v in (get("handler"),) if v),
        "error_classes": tuple(v for v in (get("error"),) if v),
        "categories": tuple(v for v in (get("category"),) if v),
        "statuses": cast(tuple[Status, ...], statuses),
        "since_ms": parse_time(since) if (since := get("since")) else None,
    }
    session = get("session")
    return Filter.session(session, **fields) if session else Filter(**fields)


def _here(params: QueryParams | FormData) -> dict[str, str]:
    return {name: v for name in _FILTER_FIELDS if isinstance(v := params.get(name), str) and v}


def _row(letter: DeadLetter) -> Safe:
    return render(
        '<tr class="letter" data-id="{id}"><td><a href="/dead-letters/{id}">{id}</a></td><td>{badge}</td>'
        "<td>{session}</td><td>{handler}</td><td>{cls}</td><td>{msg}</td><td>{attempts}</td><td>{seen}</td></tr>",
        id=letter.id,
        badge=badge(letter.status),
        session=letter.session or "",
        handler=letter.handler or "",
        cls=letter.error_class,
        msg=esc(letter.summary_line, limit=160),
        attempts=letter.attempts,
        seen=when(letter.seen_ms),
    )


async def _listing(
    settings: Settings, where: Filter, config: ConsoleConfig, here: dict[str, str], page_no: int
) -> Safe:
    async with DeadLetters(settings) as dead:
        try:
            # `page` is what `tether dlq list` reads (the local index, when there is one): the
            # latest dead letters only, enough for this page and for the hourly counts.
            letters, total = await dead.page(where, limit=max((page_no + 1) * config.page_size, HOURLY_SAMPLE))
        except NoMatchError as exc:
            return render('<p class="empty">{m}</p>', m=str(exc))
        rows = await dead.stats(where)
    stats = table(
        ("count", "error class", "handler", "message", "statuses", "first seen", "last seen"),
        [
            render(
                "<tr><td>{n}</td><td>{c}</td><td>{h}</td><td>{m}</td><td>{st}</td><td>{f}</td><td>{l}</td></tr>",
                st=", ".join(f"{k} {v}" for k, v in sorted(row.statuses.items()) if v),
                n=row.count,
                c=row.error_class or "",
                h=row.handler or "",
                m=esc(row.message or "", limit=160),
                f=when(row.first_seen_ms),
                l=when(row.last_seen_ms),
            )
            for row in rows
        ],
    )
    start = page_no * config.page_size
    newest = list(reversed(letters))[start : start + config.page_size]
    return Safe(
        "<h2>Counts by error class and handler</h2>"
        + stats
        + render(
            "<h2>Last failures by hour (UTC)</h2><p>{what}</p>",
            what=f"of the latest {len(letters)} dead letters" if total > len(letters) else "of every dead letter",
        )
        + _by_hour(letters)
        + render("<h2>Dead letters</h2><p>{n} dead letter(s), newest first</p>", n=total)
        + table(
            ("id", "status", "session", "handler", "error", "message", "attempts", "last failure"),
            [_row(x) for x in newest],
        )
        + _pager(here, page_no, total, config.page_size)
    )


def _by_hour(letters: list[DeadLetter], hours: int = 24) -> Safe:
    """How many of `letters` last failed in each of the latest `hours` hours that have any."""
    counts = Counter(letter.seen_ms // 3_600_000 for letter in letters)
    rows = [
        render(
            '<tr><td>{h}</td><td>{n}</td><td class="bar">{bar}</td></tr>',
            h=when(hour * 3_600_000)[:13] + ":00",
            n=counts[hour],
            bar="█" * min(counts[hour], 60),
        )
        for hour in sorted(counts)[-hours:]
    ]
    return table(("hour", "dead letters", ""), rows)


def _pager(here: dict[str, str], page_no: int, total: int, size: int) -> Safe:
    links = []
    if page_no > 0:
        links.append(render('<a href="{h}">newer</a>', h="/dead-letters" + query(**here, page=page_no - 1)))
    if (page_no + 1) * size < total:
        links.append(render('<a href="{h}">older</a>', h="/dead-letters" + query(**here, page=page_no + 1)))
    if not links:
        return Safe("")
    return Safe(f'<p class="pager">{join(links)} page {page_no + 1} of {(total + size - 1) // size}</p>')


async def letters_page(request: Request, settings: Settings, config: ConsoleConfig) -> tuple[str, Safe]:
    """Stats and the filtered list, refreshed live; bulk actions on the same filter."""
    params = request.query_params
    where = letter_filter(params)
    here = _here(params)
    page_no = page_number(params.get("page"))
    if request.headers.get("X-Console-Fragment"):
        return "", await _listing(settings, where, config, here, page_no)
    inputs = join(
        render(
            '<label>{n} <input name="{n}" value="{v}" placeholder="{p}"></label>', n=name, v=here.get(name, ""), p=hint
        )
        for name, hint in (
            ("session", "TYPE or TYPE/KEY"),
            ("handler", "ask or agent.ask"),
            ("error", "TerminalError"),
            ("category", "terminal, exhausted, poison, oversize"),
            ("status", "pending, replayed, discarded"),
            ("since", "2h, ISO 8601"),
        )
    )
    hidden = join(render('<input type="hidden" name="{n}" value="{v}">', n=n, v=v) for n, v in here.items())
    bulk_fields = Safe(
        hidden + '<label>action <select name="action"><option value="replay">replay</option>'
        '<option value="discard">discard</option></select></label>'
        '<label>dry run <input type="checkbox" name="dry_run" value="yes" checked></label>'
        '<label>reason (discard) <input name="reason"></label>'
        '<label><span>confirm</span><input type="checkbox" name="confirm" value="yes" required></label>'
    )
    body = Safe(
        f'<form class="filters" method="get" action="/dead-letters">{inputs}<button>filter</button></form>'
        + render(
            '<div id="letters" data-poll="{u}" data-every="{ms}">',
            u="/dead-letters" + query(**here),
            ms=int(config.poll_seconds * 1000),
        )
        + await _listing(settings, where, config, here, page_no)
        + "</div>"
        + render("<h2>Bulk action on {d}</h2>", d=where.describe())
        + action_form(config, "/actions/dead-letters/bulk", "run on the filter", bulk_fields)
    )
    return "Dead letters", body


def _letter_detail(letter: DeadLetter) -> Safe:
    resolution = letter.resolution
    audit_rows: list[Safe] = []
    if resolution is not None:
        for t in (*resolution.history, resolution):
            audit_rows.append(
                render(
                    "<li>{s} at {at} by {by}{why}</li>",
                    s=t.status,
                    at=when(t.at_ms),
                    by=t.by,
                    why=f": {t.reason}" if t.reason else "",
                )
            )
    session_link = Safe("")
    if letter.object_name is not None:
        session_link = render(
            ' · <a href="{h}">session {s}</a>',
            h=session_url(letter.object_name, letter.object_key or ""),
            s=letter.session,
        )
    facts = join(
        render("<dt>{k}</dt><dd>{v}</dd>", k=k, v=v)
        for k, v in (
            ("error", f"{letter.error_fqcn or letter.error_class}: {letter.error_message}"),
            ("category", letter.category),
            ("handler", letter.handler or ""),
            ("attempts", letter.attempts),
            ("first failure", when(letter.first_seen_ms)),
            ("last failure", when(letter.seen_ms)),
            ("message id", letter.message_id or ""),
            ("replay message id", letter.replay_message_id),
            (
                "original",
                f"{letter.original_topic} partition {letter.original_partition} offset {letter.original_offset}",
            ),
            ("record key", render_bytes(letter.key) or ""),
        )
    )
    headers = table(
        ("header", "value"),
        [
            render("<tr><td>{k}</td><td>{v}</td></tr>", k=k, v=esc(render_bytes(v), limit=2000))
            for k, v in letter.headers
        ],
    )
    payload = (
        Safe("<h2>Payload</h2>" + data(letter.payload_shown, limit=50000))
        if letter.message is not None
        else Safe(
            render("<h2>Value (poison: {why})</h2>", why=letter.decode_error or "no value")
            + data(render_bytes(letter.value), limit=50000)
        )
    )
    return Safe(
        render('<p id="letter-status" data-status="{s}">status {b}', s=letter.status, b=badge(letter.status))
        + session_link
        + "</p>"
        + (Safe(f"<ul class=audit>{join(audit_rows)}</ul>") if audit_rows else Safe(""))
        + f'<dl class="kv">{facts}</dl>'
        + payload
        + (
            Safe(
                "<h2>Stack trace</h2>"
                + render('<pre class="trace">{t}</pre>', t=esc(letter.stacktrace, multiline=True))
            )
            if letter.stacktrace
            else Safe("")
        )
        + "<h2>Headers</h2>"
        + headers
    )


async def letter_page(request: Request, settings: Settings, config: ConsoleConfig, letter_id: str) -> tuple[str, Safe]:
    """One dead letter: decoded payload, headers, stack trace, status; replay and discard."""
    async with DeadLetters(settings) as dead:
        letter = await dead.show(letter_id)
    replay_fields = Safe(
        '<label>dry run (preview) <input type="checkbox" name="dry_run" value="yes" checked></label>'
        '<label>transform (MODULE:FUNC, optional) <input name="transform"></label>'
    )
    discard_fields = Safe('<label>reason <input name="reason" required></label>')
    body = Safe(
        _letter_detail(letter)
        + "<h2>Replay</h2>"
        + action_form(config, f"/actions/dead-letters/{letter.id}/replay", "replay", replay_fields)
        + "<h2>Discard</h2>"
        + action_form(config, f"/actions/dead-letters/{letter.id}/discard", "discard", discard_fields)
    )
    return f"Dead letter {letter.id}", body


def report_html(report: Report, preview: dict[str, Any] | None = None) -> Safe:
    """What a replay or discard did, item by item."""
    counts = ", ".join(f"{n} {name}" for name, n in report.counts.items())
    rows = [
        render(
            '<tr class="item" data-outcome="{o}"><td><a href="/dead-letters/{id}">{id}</a></td><td>{o}</td>'
            "<td>{s}</td><td>{h}</td><td>{d}</td></tr>",
            id=item.id,
            o=item.outcome,
            s=item.session or "",
            h=item.handler or "",
            d=item.reason or item.message_id or "",
        )
        for item in report.items[:500]
    ]
    css = "done" if report.ok else "error"
    return Safe(
        render(
            '<p class="{css}" id="report">{p}{action}: {n} dead letter(s): {c}</p>',
            css=css,
            p="dry run of " if report.dry_run else "",
            action=report.action,
            n=len(report.items),
            c=counts,
        )
        + table(("id", "outcome", "session", "handler", "detail"), rows)
        + (Safe("<h2>Would send</h2>" + data(preview)) if preview is not None else Safe(""))
    )


async def replay_one(request: Request, settings: Settings, config: ConsoleConfig, letter_id: str) -> Safe:
    """Replay one dead letter, or with dry run show what would be sent."""
    form = await read_form(request)
    dry_run = form.get("dry_run") == "yes"
    who = authorize(config, _str(form.get("token")), "replay (dry run)" if dry_run else "replay")
    transform = _str(form.get("transform")) or None
    async with DeadLetters(settings) as dead:
        report = await dead.replay([letter_id], dry_run=dry_run, transform=transform, by=who)
    preview = None
    item = report.items[0]
    if dry_run and item.outcome == "would-replay":
        preview = {
            "session": item.session,
            "handler": item.handler,
            "message_id": item.message_id,
            "payload": item.payload,
        }
    if not dry_run:
        audit(who, "replay", f"dead letter {letter_id}: {report.counts}")
    return Safe(
        report_html(report, preview)
        + render('<p><a href="/dead-letters/{i}">back to the dead letter</a></p>', i=letter_id)
    )


async def discard_one(request: Request, settings: Settings, config: ConsoleConfig, letter_id: str) -> Safe:
    """Discard one dead letter with a reason (audited on the control topic)."""
    form = await read_form(request)
    who = authorize(config, _str(form.get("token")), "discard")
    async with DeadLetters(settings) as dead:
        report = await dead.discard([letter_id], reason=_str(form.get("reason")) or "", by=who)
    audit(who, "discard", f"dead letter {letter_id}: {report.counts}")
    return Safe(
        report_html(report) + render('<p><a href="/dead-letters/{i}">back to the dead letter</a></p>', i=letter_id)
    )


async def bulk(request: Request, settings: Settings, config: ConsoleConfig, jobs: Jobs) -> str:
    """Start a replay or discard of every dead letter the filter selects; returns the job's URL."""
    form = await read_form(request)
    action = _str(form.get("action"))
    if action not in ("replay", "discard"):
        raise InvalidFilterError(f"unknown bulk action {action!r}: replay or discard")
    dry_run = form.get("dry_run") == "yes"
    who = authorize(config, _str(form.get("token")), f"bulk {action}")
    if form.get("confirm") != "yes":
        raise InvalidFilterError("bulk action not confirmed: tick the confirm box")
    where = letter_filter(form)
    reason = _str(form.get("reason")) or ""
    if action == "discard" and not reason.strip():
        raise InvalidFilterError("a discard needs a reason for the audit trail")

    async def run(job: Job) -> Report:
        async with DeadLetters(settings) as dead:
            if action == "replay":
                report = await dead.replay(where=where, dry_run=dry_run, by=who, progress=job.progress)
            else:
                report = await dead.discard(where=where, reason=reason, by=who, dry_run=dry_run, progress=job.progress)
        if not dry_run:
            audit(who, f"bulk {action}", f"{where.describe()}: {report.counts}")
        return report

    job = jobs.start(f"{'dry run of ' if dry_run else ''}{action}", who, where.describe(), run)
    return f"/jobs/{job.id}"


def job_progress(job: Job) -> Safe:
    """How far a bulk job is (the polled part of its page)."""
    total = "?" if job.total is None else str(job.total)
    head = render(
        '<p id="job-state" data-finished="{f}">{a} of {s} by {w}: {h} of {t} handled ({o})</p>',
        f="yes" if job.finished else "no",
        a=job.action,
        s=job.selection,
        w=job.who,
        h=job.handled,
        t=total,
        o=", ".join(f"{n} {k}" for k, n in sorted(job.outcomes.items())) or "starting",
    )
    if job.error is not None:
        return Safe(head + render('<p class="error">{e}</p>', e=job.error))
    if job.report is not None:
        return Safe(head + report_html(job.report))
    return head


def job_page(job: Job, config: ConsoleConfig) -> Safe:
    """A bulk job's page: its progress, refreshed until it ends."""
    return Safe(
        render('<div id="job" data-poll="/fragments/jobs/{i}" data-every="1000">', i=job.id)
        + job_progress(job)
        + "</div>"
    )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
