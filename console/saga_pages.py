"""Sagas: the list by status, a saga's steps and compensations as a timeline, retry.

The pages of `tether saga list`, `tether saga show` and `tether saga retry`.

Read through `sagas.inspect.read_sagas` / `find_saga`; retry through `SagaClient.retry`.
"""

from __future__ import annotations

from typing import get_args

from starlette.requests import Request

from actors import Client, Settings
from sagas import SagaClient
from sagas.events import Attempt, SagaStatus
from sagas.inspect import SagaRecord, find_saga, read_sagas

from .auth import audit, authorize
from .config import ConsoleConfig
from .forms import read_form
from .layout import action_form, badge, table
from .markup import Safe, data, esc, join, query, render, url_part

__all__ = ["retry", "saga_list", "saga_page"]

SAGA_STATUSES: tuple[str, ...] = tuple(s for s in get_args(SagaStatus) if s != "new")


def saga_url(saga: str, saga_id: str) -> str:
    """The stable URL of a saga's page."""
    return f"/sagas/{url_part(saga)}/{url_part(saga_id)}"


def _note(rec: SagaRecord) -> str:
    s = rec.state
    if s.stuck is not None:
        return s.stuck.reason
    if s.cancelled is not None:
        return f"cancelled by {s.cancelled.by}: {s.cancelled.reason}"
    if s.failed_step and s.failure is not None:
        return f"{s.failed_step}: {s.failure.type}: {s.failure.message}"
    return ""


async def saga_list(request: Request, settings: Settings, config: ConsoleConfig) -> tuple[str, Safe]:
    """Every saga, filtered by status and definition."""
    status = request.query_params.get("status") or None
    name = request.query_params.get("saga") or None
    records = [r for r in await read_sagas(settings, saga=name) if status is None or r.state.status == status]
    options = join(
        render('<option value="{s}" {sel}>{s}</option>', s=s, sel="selected" if s == status else "")
        for s in ("", *SAGA_STATUSES)
    )
    rows = [
        render(
            '<tr class="saga" data-status="{st}"><td><a href="{h}">{id}</a></td><td>{saga}</td><td>{b}{w}</td>'
            "<td>{done}/{n}</td><td>{start}</td><td>{end}</td><td>{note}</td></tr>",
            st=r.state.status,
            h=saga_url(r.saga, r.saga_id),
            id=r.saga_id,
            saga=r.saga,
            b=badge(r.state.status),
            w=" (waiting)" if r.waiting else "",
            done=sum(step.status in ("succeeded", "compensated") for step in r.state.steps),
            n=len(r.state.steps),
            start=r.state.started_at.strftime("%Y-%m-%d %H:%M:%S") if r.state.started_at else "",
            end=r.state.ended_at.strftime("%Y-%m-%d %H:%M:%S") if r.state.ended_at else "",
            note=esc("; ".join(x for x in (r.waiting and f"waiting: {r.waiting}", _note(r)) if x), limit=200),
        )
        for r in records
    ]
    body = Safe(
        '<form class="filters" method="get" action="/sagas">'
        f'<label>status <select name="status">{options}</select></label>'
        + render('<label>saga <input name="saga" value="{v}"></label>', v=name or "")
        + "<button>filter</button></form>"
        + render("<p>{n} saga(s)</p>", n=len(records))
        + table(("saga id", "saga", "status", "steps", "started", "ended", "note"), rows, empty="no saga matches")
    )
    return "Sagas", body


def _attempts(kind: str, attempts: list[Attempt]) -> Safe:
    return join(
        render(
            '<div class="entry {css}"><strong>{k} attempt {n}</strong> <span class="meta">{start} · {secs} s</span>'
            "{err}</div>",
            css="err" if a.error else "done",
            k=kind,
            n=a.n,
            start=a.started.strftime("%Y-%m-%d %H:%M:%S"),
            secs=f"{a.seconds:.3f}",
            err=render(' <span class="error">{t}: {m}</span>', t=a.error.type, m=a.error.message) if a.error else "",
        )
        for a in attempts
    )


async def saga_page(
    request: Request, settings: Settings, config: ConsoleConfig, saga: str, saga_id: str
) -> tuple[str, Safe]:
    """A saga: input, status, and each step's action and compensation attempts in order."""
    rec = await find_saga(settings, saga_id, saga=saga)
    s = rec.state
    steps = join(
        Safe(
            render(
                "<h3>group {g} · step {n} {b}{u}</h3>",
                g=step.group,
                n=step.name,
                b=badge(step.status),
                u=" may have taken effect" if step.uncertain else "",
            )
            + '<div class="timeline">'
            + _attempts("action", step.attempts)
            + (Safe("result " + data(step.result, limit=4000)) if step.result is not None else Safe(""))
            + _attempts("compensation", step.compensation_attempts)
            + (
                render(
                    '<p class="error">compensation failed: {t}: {m}</p>',
                    t=step.compensation_error.type,
                    m=step.compensation_error.message,
                )
                if step.compensation_error
                else Safe("")
            )
            + "</div>"
        )
        for step in s.steps
    )
    failures = join(
        render(
            '<li>{h}: {m} <a href="/dead-letters{q}">dead letters</a></li>',
            h=f["handler"],
            m=str(f["error"].get("message", "")),
            q=query(session=f"saga.{rec.saga}/{rec.saga_id}"),
        )
        for f in rec.failures
    )
    body = Safe(
        render('<p id="saga-status" data-status="{st}">status {b}', st=s.status, b=badge(s.status))
        + render(" · version {v} · partition {p}</p>", v=rec.version, p=rec.partition)
        + (render('<p class="notice">waiting: {w}</p>', w=rec.waiting) if rec.waiting else Safe(""))
        + (render('<p class="error">stuck: {r}</p>', r=s.stuck.reason) if s.stuck is not None else Safe(""))
        + (
            render('<p class="notice">{n}</p>', n=_note(rec))
            if s.cancelled is not None and s.stuck is None
            else Safe("")
        )
        + (render('<p class="error">failed step {n}</p>', n=_note(rec)) if s.failed_step else Safe(""))
        + "<h2>Input</h2>"
        + data(s.input, limit=20000)
        + "<h2>Steps and compensations</h2>"
        + steps
        + (Safe("<h2>In flight</h2>" + data(rec.in_flight, limit=20000)) if rec.in_flight else Safe(""))
        + (Safe(f"<h2>Dead-lettered invocations</h2><ul>{failures}</ul>") if rec.failures else Safe(""))
        + "<h2>Retry</h2>"
        + '<p class="meta">Resumes a stuck saga (its compensation, or its failed step) once the cause is fixed; '
        "a worker serving the saga must be running (<code>tether saga retry</code>).</p>"
        + action_form(config, f"/actions/saga-retry/{url_part(rec.saga)}/{url_part(rec.saga_id)}", "retry")
    )
    return f"saga {rec.saga}/{rec.saga_id}", body


async def retry(request: Request, settings: Settings, config: ConsoleConfig, saga: str, saga_id: str) -> Safe:
    """Ask the saga's coordinator to resume (`SagaClient.retry`)."""
    form = await read_form(request)
    token = form.get("token")
    who = authorize(config, token if isinstance(token, str) else None, "saga retry")
    async with Client.connect(settings) as client:
        result = await SagaClient(client).retry(saga, saga_id)
    audit(who, "saga retry", f"{saga}/{saga_id}: {result.message} (now {result.status})")
    return render(
        '<p class="{c}" id="retry-result">{m} (now {s}). <a href="{h}">back to the saga</a></p>',
        c="done" if result.resumed else "error",
        m=result.message,
        s=result.status,
        h=saga_url(saga, saga_id),
    )
