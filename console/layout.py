"""The page frame shared by every page: navigation, the actions notice, the token field."""

from __future__ import annotations

from .config import ConsoleConfig
from .markup import Safe, join, render

__all__ = ["action_form", "badge", "page", "table"]

_NAV = (
    ("sessions", "/sessions", "Sessions"),
    ("dead-letters", "/dead-letters", "Dead letters"),
    ("sagas", "/sagas", "Sagas"),
)

_BADGES = {
    "failed": "bad",
    "stuck": "bad",
    "pending": "bad",
    "parked": "warn",
    "compensated": "warn",
    "cancelled": "warn",
    "compensating": "warn",
    "suspended": "info",
    "waiting": "info",
    "running": "info",
    "idle": "ok",
    "completed": "ok",
    "succeeded": "ok",
    "replayed": "ok",
    "discarded": "muted",
}


def badge(status: str) -> Safe:
    """A status as a coloured label."""
    return render('<span class="badge {kind}">{status}</span>', kind=_BADGES.get(status, "muted"), status=status)


def table(headers: tuple[str, ...], rows: list[Safe], *, empty: str = "nothing to show") -> Safe:
    """A table of already built ``<tr>`` rows."""
    if not rows:
        return render('<p class="empty">{empty}</p>', empty=empty)
    head = join(render("<th>{h}</th>", h=h) for h in headers)
    return Safe(f"<table><thead><tr>{head}</tr></thead><tbody>{join(rows)}</tbody></table>")


def action_form(
    config: ConsoleConfig, url: str, label: str, fields: Safe | None = None, *, danger: bool = True
) -> Safe:
    """A form that POSTs an action with the token, or why actions are off."""
    reason = config.actions_off_reason
    if reason is not None:
        return render('<p class="notice actions-off">{label}: {reason}</p>', label=label, reason=reason)
    return Safe(
        render('<form class="action" method="post" action="{url}">', url=url)
        + (fields or Safe(""))
        + '<label>token <input type="password" name="token" autocomplete="off" required></label>'
        + render(
            '<button type="submit" class="{cls}">{label}</button></form>',
            cls="danger" if danger else "",
            label=label,
        )
    )


def page(config: ConsoleConfig, *, title: str, section: str, body: Safe, namespace: str) -> Safe:
    """A whole HTML page."""
    nav = join(
        render(
            '<a href="{href}" class="{cls}">{label}</a>', href=href, cls="here" if key == section else "", label=label
        )
        for key, href, label in _NAV
    )
    mode = config.actions_off_reason
    banner = render('<div class="banner">{m}</div>', m=mode) if mode else Safe("")
    return Safe(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        + render("<title>{t} - tether console</title>", t=title)
        + '<link rel="stylesheet" href="/static/console.css">'
        + '<script src="/static/console.js" defer></script></head><body>'
        + render('<header><strong>tether</strong> <span class="ns">namespace {ns}</span>', ns=namespace)
        + f"<nav>{nav}</nav></header>{banner}"
        + render("<main><h1>{t}</h1>", t=title)
        + body
        + "</main></body></html>"
    )
