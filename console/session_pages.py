"""Sessions: the filterable list (`tether sessions list`) and one session's state and timeline.

Everything is read through `actors.inspection` (`list_sessions`, `session_view`,
`session_history`), the functions the CLI prints; restart calls `restart_invocation`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from starlette.requests import Request

from actors import Client, Settings
from actors.inspection.cancelling import cancel_invocation
from actors.inspection.listing import STATUSES, SessionSummary, Status, list_sessions, session_summary
from actors.inspection.times import parse_time, when
from actors.inspection.views import awakeable_status, restart_invocation, session_history, session_view
from eventstore.errors import UsageError

from .auth import audit, authorize
from .config import ConsoleConfig
from .forms import read_form
from .layout import action_form, badge, table
from .markup import Safe, data, join, query, render, url_part

__all__ = [
    "cancel",
    "complete_awakeable",
    "page_number",
    "restart",
    "session_list",
    "session_page",
    "session_url",
    "timeline",
]


def session_url(object_name: str, key: str) -> str:
    """The stable URL of a session's page."""
    return f"/sessions/{url_part(object_name)}/{url_part(key)}"


def _wait_text(summary: SessionSummary) -> str:
    wait = summary.wait
    if wait is None:
        return ""
    out = wait.label
    if wait.until_ms is not None:
        out += f" until {when(wait.until_ms)}"
    if wait.awakeable is not None:
        out += f" awakeable {wait.awakeable}"
    return out


def _row(s: SessionSummary) -> Safe:
    error = (s.last_error or {}) if s.status == "failed" else {}
    return render(
        '<tr class="session" data-status="{status}"><td>{obj}</td><td><a href="{href}">{key}</a></td>'
        "<td>{badge}</td><td>{last}</td><td>{wait}</td><td>{attempts}</td><td>{error}</td></tr>",
        status=s.status,
        obj=s.object,
        href=session_url(s.object, s.key),
        key=s.key,
        badge=badge(s.status),
        last=when(s.last_activity_ms),
        wait=_wait_text(s),
        attempts=s.attempts or "",
        error=f"{error.get('type', '')}: {error.get('message', '')}" if error else "",
    )


async def session_list(request: Request, settings: Settings, config: ConsoleConfig) -> tuple[str, Safe]:
    """The sessions page (filters: object, status, since, key substring), paged."""
    params = request.query_params
    object_name = params.get("object") or None
    statuses = [s for s in params.getlist("status") if s]
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown:
        raise UsageError(f"unknown status {unknown[0]!r}: choose from {', '.join(STATUSES)}")
    since = params.get("since") or None
    search = params.get("q") or ""
    page_no = page_number(params.get("page"))
    found = await list_sessions(
        settings,
        object_name=object_name,
        statuses=cast(list[Status], statuses),
        since_ms=parse_time(since) if since else None,
    )
    if search:
        found = [s for s in found if search in s.key]
    start = page_no * config.page_size
    shown = found[start : start + config.page_size]
    options = join(
        render('<option value="{s}" {sel}>{s}</option>', s=s, sel="selected" if s in statuses else "")
        for s in ("", *STATUSES)
    )
    filters = Safe(
        '<form class="filters" method="get" action="/sessions">'
        + render('<label>object <input name="object" value="{v}"></label>', v=object_name or "")
        + f'<label>status <select name="status">{options}</select></label>'
        + render('<label>since <input name="since" value="{v}" placeholder="2h, ISO 8601"></label>', v=since or "")
        + render('<label>key contains <input name="q" value="{v}"></label>', v=search)
        + "<button>filter</button></form>"
    )
    here = {"object": object_name, "status": statuses, "since": since, "q": search}
    body = (
        filters
        + render("<p>{n} session(s), most recently active first</p>", n=len(found))
        + table(
            ("type", "key", "status", "last activity", "wait", "attempts", "last error"),
            [_row(s) for s in shown],
            empty="no session matches",
        )
        + _pager("/sessions", here, page_no, len(found), config.page_size)
    )
    return "Sessions", Safe(body)


def page_number(value: str | None) -> int:
    """The ``?page=`` number (0 when absent).

    Raises:
        UsageError: it is not a number.
    """
    try:
        return max(0, int(value or 0))
    except ValueError:
        raise UsageError(f"page must be a number, got {value!r}") from None


def _pager(path: str, params: dict[str, Any], page_no: int, total: int, size: int) -> Safe:
    links = []
    if page_no > 0:
        links.append(render('<a href="{h}">previous</a>', h=path + query(**params, page=page_no - 1)))
    if (page_no + 1) * size < total:
        links.append(render('<a href="{h}">next</a>', h=path + query(**params, page=page_no + 1)))
    if not links:
        return Safe("")
    return Safe(f'<p class="pager">{join(links)} page {page_no + 1} of {(total + size - 1) // size}</p>')


def _entry(e: dict[str, Any]) -> Safe:
    kind = e["kind"]
    error = e.get("error")
    css = "err" if error else {"sus": "wait", "q": "wait", "dly": "wait", "done": "done"}.get(kind, "")
    if e.get("skipped"):
        return render(
            '<div class="entry">#{o} {k}: an entry of a kind this console does not know</div>', o=e["offset"], k=kind
        )
    meta = [f"offset {e['offset']}", f"invocation {e['invocation']}"]
    if e.get("attempts") is not None:
        meta.append(f"attempts {e['attempts']}")
    if e.get("duration_ms") is not None:
        meta.append(f"{e['duration_ms']} ms")
    if e.get("wake_ms") is not None:
        meta.append(f"due {when(e['wake_ms'])}")
    if e.get("awakeable"):
        meta.append(f"awakeable {e['awakeable']}")
    if e.get("by"):
        meta.append(f"by {e['by']}")
    title = {"step": f"step #{e.get('index')} {e.get('name')}", "done": f"finished {e.get('name')}"}.get(
        kind, f"{kind} {e.get('name') or ''}"
    )
    detail: Safe
    if error:
        detail = render(
            '<div class="error"><strong>{t}</strong>: {m}</div>',
            t=error.get("type", "error"),
            m=error.get("message", ""),
        )
    elif e.get("result") is not None:
        detail = Safe("output " + data(e["result"], limit=4000))
    else:
        detail = Safe("")
    events = Safe("events " + data(e["events"], limit=4000)) if e.get("events") else Safe("")
    return Safe(
        render('<div class="entry {css}" data-kind="{k}"><strong>{t}</strong> ', css=css, k=kind, t=title)
        + render('<span class="meta">{m}</span>', m=" · ".join(meta))
        + detail
        + events
        + "</div>"
    )


async def timeline(request: Request, settings: Settings, config: ConsoleConfig, object_name: str, key: str) -> Safe:
    """A session's history as a timeline, one page of it (the part the session page refreshes)."""
    return timeline_html(request, config, object_name, key, await session_history(settings, object_name, key))


def timeline_html(
    request: Request, config: ConsoleConfig, object_name: str, key: str, history: list[dict[str, Any]]
) -> Safe:
    """One page of `history` (``?page=N``, in log order) as timeline entries."""
    page_no = page_number(request.query_params.get("page"))
    start = page_no * config.page_size
    shown = history[start : start + config.page_size]
    return Safe(
        render('<p class="meta">{n} entr(ies) in log order</p>', n=len(history))
        + join(_entry(e) for e in shown)
        + _pager(session_url(object_name, key), {}, page_no, len(history), config.page_size)
    )


async def session_page(
    request: Request, settings: Settings, config: ConsoleConfig, object_name: str, key: str
) -> tuple[str, Safe]:
    """A session: its state, open waits, in-flight steps, its timeline and the operator actions."""
    # Three reads of the session's partition, each on a log of its own: side by side, one wait
    # (on Kafka most of a read is connecting: 1.07 s one after the other, 0.51 s side by side, measured).
    view, summary, history = await asyncio.gather(
        session_view(settings, object_name, key),
        session_summary(settings, object_name, key),
        session_history(settings, object_name, key),
    )
    status = summary.status
    open_ids = summary.open_invocations
    waits = [
        render(
            "<li>{kind} {inv} ({handler}){until}{awk}</li>",
            kind=w["kind"],
            inv=invocation,
            handler=w["handler"],
            until=f" due {when(w['until_ms'])}" if w.get("until_ms") is not None else "",
            awk=f" awakeable {w['awakeable']}" + (" (completed)" if w.get("completed") else "")
            if w.get("awakeable")
            else "",
        )
        for invocation, w in view["waits"].items()
    ]
    snapshot = view["snapshot_version"]
    fragment_url = f"/fragments/timeline/{url_part(object_name)}/{url_part(key)}" + query(
        page=request.query_params.get("page")
    )
    dead_letters = f"/dead-letters{query(session=f'{object_name}/{key}')}"
    invocations = [e for e in history if e["kind"] in ("done", "sus")]
    choices = join(
        render('<option value="{i}">{i} ({n})</option>', i=e["invocation"], n=e.get("name") or "")
        for e in reversed(invocations)
    )
    restart_fields = Safe(
        f'<label>invocation <select name="invocation">{choices}</select></label>'
        '<label>from step <input name="from_step" type="number" min="0" value="0" required></label>'
        '<label>payload (JSON, optional) <input name="payload"></label>'
        '<label><span>confirm</span><input type="checkbox" name="confirm" value="yes" required></label>'
    )
    body = Safe(
        render(
            '<p id="session-status" data-status="{s}">status {badge} · version {v} · partition {p} · {snap}'
            ' · <a href="{dl}">its dead letters</a></p>',
            s=status,
            badge=badge(status),
            v=view["version"],
            p=view["partition"],
            snap="no snapshot" if snapshot is None else f"snapshot at version {snapshot}",
            dl=dead_letters,
        )
        + "<h2>State</h2>"
        + (data(view["state"]) if view["state"] is not None else Safe('<p class="empty">no snapshot yet</p>'))
        + (
            Safe("<h2>Events since the snapshot</h2>" + data(view["events_since_snapshot"], limit=20000))
            if view["events_since_snapshot"]
            else Safe("")
        )
        + (Safe(f"<h2>Open waits</h2><ul>{join(waits)}</ul>") if waits else Safe(""))
        + "<h2>Timeline</h2>"
        + render(
            '<div id="timeline" class="timeline" data-poll="{u}" data-every="{ms}">',
            u=fragment_url,
            ms=int(config.poll_seconds * 1000),
        )
        + timeline_html(request, config, object_name, key, history)
        + "</div>"
        + _awakeable_forms(config, object_name, key, view["waits"])
        + "<h2>Cancel</h2>"
        + '<p class="meta">Ends the running or waiting invocation (or a queued message) with '
        "InvocationCancelledError at its next wait or new step; its caller gets the error, the history records "
        "who and why (<code>tether sessions cancel</code>).</p>"
        + (
            action_form(
                config, f"/actions/cancel/{url_part(object_name)}/{url_part(key)}", "cancel", _cancel_fields(open_ids)
            )
            if open_ids
            else render('<p class="empty">nothing running or waiting to cancel (status {s})</p>', s=status)
        )
        + "<h2>Restart an invocation from a step</h2>"
        + '<p class="meta">Runs the invocation again as a new message; steps before the one given are reused '
        "from the journal (<code>tether sessions restart</code>).</p>"
        + (
            action_form(config, f"/actions/restart/{url_part(object_name)}/{url_part(key)}", "restart", restart_fields)
            if invocations
            else Safe('<p class="empty">no finished or waiting invocation to restart</p>')
        )
    )
    return f"{object_name}/{key}", body


async def restart(request: Request, settings: Settings, config: ConsoleConfig, object_name: str, key: str) -> Safe:
    """Run `restart_invocation` after the token and the confirmation are checked."""
    form = await read_form(request)
    who = authorize(config, _field(form.get("token")), "restart")
    if _field(form.get("confirm")) != "yes":
        raise UsageError("restart not confirmed: tick the confirm box")
    try:
        from_step = int(_field(form.get("from_step")) or "")
    except ValueError:
        raise UsageError("from step must be a number (the first step to run again)") from None
    raw_payload = _field(form.get("payload"))
    try:
        payload = json.loads(raw_payload) if raw_payload else None
    except json.JSONDecodeError as exc:
        raise UsageError(f"the payload is not JSON ({exc})") from None
    new_id = await restart_invocation(
        settings,
        object_name,
        key,
        from_step=from_step,
        invocation=_field(form.get("invocation")) or None,
        payload=payload,
    )
    audit(who, "restart", f"{object_name}/{key} from step {from_step}: new message {new_id}")
    return render(
        '<p class="done">restarted as message {m} by {w}. <a href="{h}">back to the session</a></p>',
        m=new_id,
        w=who,
        h=session_url(object_name, key),
    )


def _field(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _cancel_fields(open_ids: list[tuple[str, str]]) -> Safe:
    choices = join(render('<option value="{i}">{i} ({w})</option>', i=mid, w=what) for mid, what in open_ids)
    return Safe(
        f'<label>invocation <select name="invocation">{choices}</select></label>'
        '<label>reason <input name="reason" value="cancelled by an operator" required></label>'
        '<label><span>confirm</span><input type="checkbox" name="confirm" value="yes" required></label>'
    )


async def cancel(request: Request, settings: Settings, config: ConsoleConfig, object_name: str, key: str) -> Safe:
    """Cancel an open invocation as `tether sessions cancel` does: reject its cancel awakeable."""
    form = await read_form(request)
    who = authorize(config, _field(form.get("token")), "cancel")
    if _field(form.get("confirm")) != "yes":
        raise UsageError("cancel not confirmed: tick the confirm box")
    reason = (_field(form.get("reason")) or "").strip() or "cancelled by an operator"
    invocation, accepted = await cancel_invocation(
        settings, object_name, key, invocation=_field(form.get("invocation")) or None, reason=reason, by=who
    )
    audit(who, "cancel", f"{object_name}/{key} invocation {invocation}: {reason} ({'done' if accepted else 'before'})")
    message = (
        f"cancelled invocation {invocation} (by {who}): {reason}"
        if accepted
        else (f"invocation {invocation} was cancelled before; nothing changed")
    )
    return render(
        '<p class="{c}" id="cancel-result">{m}. <a href="{h}">back to the session</a></p>',
        c="done" if accepted else "error",
        m=message,
        h=session_url(object_name, key),
    )


def _awakeable_forms(config: ConsoleConfig, object_name: str, key: str, waits: dict[str, dict[str, Any]]) -> Safe:
    """A resolve/reject form per awakeable an invocation waits on (`tether awakeable`)."""
    open_awakeables = [w["awakeable"] for w in waits.values() if w.get("awakeable") and not w.get("completed")]
    if not open_awakeables:
        return Safe("")
    forms: list[Safe] = []
    for awakeable in open_awakeables:
        fields = Safe(
            render('<input type="hidden" name="awakeable" value="{a}">', a=awakeable)
            + '<label>outcome <select name="outcome"><option value="resolve">resolve</option>'
            '<option value="reject">reject</option></select></label>'
            '<label>value (JSON) or reason <input name="value" value="null"></label>'
        )
        url = f"/actions/awakeable/{url_part(object_name)}/{url_part(key)}"
        forms.append(Safe(render("<p>awakeable {a}</p>", a=awakeable) + action_form(config, url, "complete", fields)))
    return Safe(
        "<h2>Complete an awakeable</h2>"
        '<p class="meta">Resolves or rejects a durable promise the session waits on, such as a human approval '
        "(<code>tether awakeable resolve|reject</code>); the first completion wins.</p>" + join(forms)
    )


async def complete_awakeable(
    request: Request, settings: Settings, config: ConsoleConfig, object_name: str, key: str
) -> Safe:
    """Resolve or reject an awakeable of this session, checked against the log first."""
    form = await read_form(request)
    outcome = _field(form.get("outcome"))
    who = authorize(config, _field(form.get("token")), f"awakeable {outcome or 'completion'}")
    awakeable = _field(form.get("awakeable")) or ""
    value = _field(form.get("value")) or ""
    if outcome not in ("resolve", "reject"):
        raise UsageError(f"outcome must be resolve or reject, not {outcome!r}")
    status, completion = await awakeable_status(settings, awakeable)
    if status == "unknown":
        raise UsageError(f"no session waits on awakeable {awakeable!r}")
    accepted = False
    if status == "open":
        async with Client.connect(settings) as client:
            if outcome == "reject":
                accepted = await client.reject(awakeable, value or "rejected by an operator", by=who)
            else:
                try:
                    parsed = json.loads(value or "null")
                except json.JSONDecodeError as exc:
                    raise UsageError(f'the value must be JSON ({exc}); quote strings: "yes"') from None
                accepted = await client.resolve(awakeable, parsed, by=who)
    audit(who, f"awakeable {outcome}", f"{awakeable}: {'done' if accepted else 'completed before'}")
    before = f" by {completion.by}" if completion is not None and completion.by else ""
    message = (
        f"{outcome}d awakeable {awakeable} (by {who})" if accepted else f"already completed{before}; nothing changed"
    )
    return render(
        '<p class="{c}" id="awakeable-result">{m}. <a href="{h}">back to the session</a></p>',
        c="done" if accepted else "error",
        m=message,
        h=session_url(object_name, key),
    )
