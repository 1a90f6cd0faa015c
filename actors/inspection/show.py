"""How `tether sessions show|history` print a session for people (rich; record text escaped)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .listing import SessionSummary
from .terminal import data_text, plain
from .times import when


def _short(value: Any, limit: int) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)[:limit]


def print_view(console: Console, view: dict[str, Any], *, app: str | None) -> None:
    """Print a `session_view` for people."""
    snapshot = view["snapshot_version"]
    since = view["events_since_snapshot"]
    console.print(
        Text.assemble(
            plain(view["session"], style="bold"),
            f" version {view['version']} (partition {view['partition']}; ",
            "no snapshot" if snapshot is None else f"snapshot at version {snapshot}",
            f", {len(since)} invocation(s) since)",
        )
    )
    if view["folded"]:
        console.print(f"[bold]state[/] (snapshot + every event since, folded with {app}):")
    elif snapshot is None:
        console.print("[bold]state:[/] no snapshot yet; pass --app MODULE:OBJECT to fold the events below")
    else:
        console.print(f"[bold]state[/] at snapshot version {snapshot}:")
    if view["state"] is not None:
        console.print(data_text(view["state"]))
    if since and not view["folded"]:
        console.print("[bold]events since the snapshot[/] (--app MODULE:OBJECT folds them into the state):")
        for item in since:
            head = f"  v{item['version']} {item['kind']} {item['handler']} {item['invocation']}:"
            console.print(plain(head))
            for event in item["events"] or ():
                console.print(Text.assemble("    ", data_text(event, indent=None, limit=300)))
    for invocation, wait in view["waits"].items():
        parts = [f"{wait['kind']} {invocation} ({wait['handler']})"]
        if wait.get("until_ms") is not None:
            parts.append(f"until {when(wait['until_ms'])}")
        if wait.get("awakeable"):
            parts.append(f"awakeable {wait['awakeable']}" + (" (completed)" if wait.get("completed") else ""))
        console.print(Text.assemble(("waiting: ", "cyan"), plain(", ".join(parts))))
    for invocation, steps in view["in_flight"].items():
        console.print(Text.assemble(("in flight: ", "yellow"), plain(invocation)))
        for step in steps:
            outcome = step["error"] if step["error"] is not None else step["result"]
            console.print(plain(f"  #{step['step']} {step['name']}: {_short(outcome, 100)}"))
    if view["skipped_kinds"]:
        kinds = ", ".join(sorted(set(view["skipped_kinds"])))
        console.print(
            plain(f"skipped {len(view['skipped_kinds'])} entry(ies) of unknown kind {kinds} (a newer Tether?)"),
            style="yellow",
        )


def print_history(console: Console, entries: list[dict[str, Any]]) -> None:
    """Print `session_history` entries as a table."""
    table = Table("offset", "kind", "invocation", "name", "attempts", "ms", "result / error")
    for e in entries:
        if e.get("skipped"):
            outcome: Any = "unknown entry kind: skipped"
        else:
            outcome = e.get("error") or e.get("result") or e.get("events")
        attempts, ms = e.get("attempts"), e.get("duration_ms")
        table.add_row(
            str(e["offset"]),
            plain(e["kind"]),
            plain(e["invocation"], limit=18),
            plain(e.get("name", "")),
            "" if attempts is None else str(attempts),
            "" if ms is None else str(ms),
            plain(outcome if isinstance(outcome, str) else _short(outcome, 80), limit=80),
        )
    console.print(table)


def print_sessions(console: Console, sessions: list[SessionSummary]) -> None:
    """Print a `list_sessions` listing for people."""
    if not sessions:
        console.print("no session matches")
        return
    table = Table(box=None, header_style="bold")
    for column in ("type", "key", "status", "last activity", "wait", "attempts", "last error"):
        table.add_column(column)
    for s in sessions:
        wait = ""
        if s.wait is not None:
            wait = s.wait.label
            if s.wait.until_ms is not None:
                wait += f" until {when(s.wait.until_ms)}"
            if s.wait.awakeable is not None:
                wait += f" {plain(s.wait.awakeable)}"
        error = plain(str((s.last_error or {}).get("type", ""))) if s.status == "failed" else ""
        table.add_row(
            plain(s.object),
            plain(s.key),
            s.status,
            when(s.last_activity_ms),
            wait,
            str(s.attempts or ""),
            error,
        )
    console.print(table)
