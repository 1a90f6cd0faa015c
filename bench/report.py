"""Turn results/latest.json into results/latest.md and PNG charts (matplotlib, Agg backend).

Every section may be missing (nothing measured yet, or a quick run of one workload): the
table then shows a dash and a chart without data is not drawn, with a line saying so.

Layout of the JSON file this reads (written by ``_harness.record``)::

    {"machine": {...}, "updated_at": "...",
     "sections": {
        "tether":    {"W1": ENTRY, "W2": ENTRY, ..., "W4": ENTRY},
        "restate":   {"W1": ENTRY, ..., "_meta": {...}},
        "raw_kafka": {"pipeline": ENTRY, "_meta": {...}}}}

    ENTRY = {"params": {...}, "median": FIGURES, "runs": [FIGURES, ...], "correct": bool}
    FIGURES (request-reply) has calls_per_s, p50_ms, p90_ms, p99_ms, mean_ms, max_ms,
        cpu_ms_per_call, processes{name: {peak_rss_mb, cpu_s, cpu_ms_per_call}}
    FIGURES (pipeline) has end_to_end_msgs_per_s, processing_msgs_per_s, produce_msgs_per_s
    A recovery workload adds to ENTRY: "recovery_points": [{"events": n, "seconds": s}, ...]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._harness import LATEST_JSON, load_results

REQUEST_REPLY = ("W1", "W2", "W3", "W2-step", "W2-3step", "W1-embedded", "W2-embedded")
SYSTEM_COLORS = (("tether", "#1f77b4"), ("restate", "#ff7f0e"))


@dataclass(frozen=True)
class Target:
    """What a workload must reach, as a ratio of Tether's figure to the baseline's."""

    text: str
    """How the target reads in the table."""
    ratio_at_least: float | None = None
    """Tether / baseline must be >= this (for rates; higher is better)."""
    ratio_at_most: float | None = None
    """Tether / baseline must be <= this (for latencies; lower is better)."""
    value_at_most: float | None = None
    """Tether's figure itself must be <= this (an absolute limit: ms, s, MiB)."""
    value_at_least: float | None = None
    """Tether's figure itself must be >= this."""

    @property
    def absolute(self) -> bool:
        return self.value_at_most is not None or self.value_at_least is not None


@dataclass(frozen=True)
class Row:
    """One line of the comparison table."""

    workload: str
    """The Tether workload (section ``tether``)."""
    metric: str
    """Key in the median figures compared (``calls_per_s``, ``p99_ms``, ...)."""
    baseline: tuple[str, str, str] | None
    """(section, workload, metric) of the figure Tether is held against, if any."""
    target: Target | None = None
    unit: str = "calls/s"
    """How the measure reads; ``{key}`` is filled from Tether's median figures."""


# Targets are the project's (issue 7): W2 and W2-step at 10x Restate's calls/s in the same run,
# W1 p50 <= 10 ms, W4 >= 50% of the raw pipeline (issue 13), W5 restore with snapshots < 1 s at 1,000,000
# events with memory bounded by a setting. Edit here, not in the JSON.
AT_LEAST_PEER = Target(">= 1.0x Restate", ratio_at_least=1.0)
TEN_X_PEER = Target(">= 10x Restate", ratio_at_least=10.0)
AT_MOST_PEER = Target("<= 1.0x Restate", ratio_at_most=1.0)
W4_TARGET = Target(">= 0.50x raw", ratio_at_least=0.5)
RAW = ("raw_kafka", "pipeline", "end_to_end_msgs_per_s")
RAW_RR_BEST = ("raw_eos", "request_reply-best", "calls_per_s")
"""W2's ceiling: W2's load on a raw transactional request/reply server, no Tether code
(`bench.raw_eos`), the fastest of the clients and schemes measured in the same run."""
RAW_RR_SCHEME = ("raw_eos", "request_reply-aiokafka-partition", "calls_per_s")
RAW_RR_WORKER = ("raw_eos", "request_reply-aiokafka-worker", "calls_per_s")
OBSERVABILITY = Target("< 5 %", value_at_most=5.0)
ROWS: list[Row] = [
    Row("W1", "calls_per_s", ("restate", "W1", "calls_per_s"), AT_LEAST_PEER),
    Row("W1", "p50_ms", None, Target("<= 10 ms", value_at_most=10.0), unit="p50 ms"),
    Row("W1", "p99_ms", ("restate", "W1", "p99_ms"), AT_MOST_PEER, unit="p99 ms"),
    Row("W2", "calls_per_s", ("restate", "W2", "calls_per_s"), TEN_X_PEER),
    Row("W2", "p99_ms", ("restate", "W2", "p99_ms"), AT_MOST_PEER, unit="p99 ms"),
    Row("W3", "calls_per_s", ("restate", "W3", "calls_per_s"), AT_LEAST_PEER),
    Row("W2-step", "calls_per_s", ("restate", "W2-step", "calls_per_s"), TEN_X_PEER),
    Row("W2-3step", "calls_per_s", ("restate", "W2-step", "calls_per_s"), None),
    Row("W2", "calls_per_s", RAW_RR_BEST, None, unit="calls/s vs raw request/reply, best client"),
    Row("W2", "calls_per_s", RAW_RR_SCHEME, None, unit="calls/s vs raw request/reply, aiokafka per partition"),
    Row("W2", "calls_per_s", RAW_RR_WORKER, None, unit="calls/s vs raw request/reply, aiokafka per worker"),
    Row("W4", "end_to_end_msgs_per_s", RAW, W4_TARGET, unit="msg/s, 1 worker"),
    Row("W4-2workers", "end_to_end_msgs_per_s", RAW, W4_TARGET, unit="msg/s, 2 workers"),
    Row("W4-ray", "end_to_end_msgs_per_s", RAW, W4_TARGET, unit="msg/s, 2 Ray workers"),
    *(
        Row(
            "W5",
            f"{figure}_{mode}",
            None,
            target if mode == "snapshots" else None,
            unit=f"{what}, {text}, {{events_max:,}} events",
        )
        for figure, what, target in (
            ("restore_s", "restore s", Target("< 1 s at 1,000,000 events", value_at_most=1.0)),
            ("peak_rss_mb", "peak RSS MiB", Target("bounded by a setting")),
        )
        for mode, text in (("snapshots", "snapshots"), ("no_snapshots", "no snapshots"))
    ),
    Row("W6", "sagas_per_s", None, None, unit="sagas/s"),
    *(
        Row("W2-observability", figure, None, OBSERVABILITY, unit=unit)
        for figure, unit in (
            ("cpu_cost_pct_metrics", "% more CPU per W2 call, metrics"),
            ("cpu_cost_pct_sampled", "% more CPU/W2 call, metrics + 10 % traced"),
            ("cpu_cost_pct_traced", "% more CPU/W2 call, metrics + all traced"),
            ("cpu_cost_pct_sampled_lean", "% more CPU/W2 call, metrics + 10 % traced, no unsampled spans"),
            ("throughput_cost_pct_traced", "% fewer calls/s, metrics + all traced"),
            ("tether_cpu_cost_pct_metrics", "% more worker + client CPU/W2 call, metrics"),
            ("tether_cpu_cost_pct_sampled", "% more worker + client CPU/W2 call, metrics + 10 % traced"),
            ("tether_cpu_cost_pct_traced", "% more worker + client CPU/W2 call, metrics + all traced"),
            ("tether_cpu_cost_pct_sampled_lean", "% more worker + client CPU/W2 call, 10 % traced, no unsampled spans"),
        )
    ),
    *(
        Row(entry, f"{kind}_cost_pct_{arm}", None, OBSERVABILITY, unit=f"{what}, {text}, {how}")
        for entry, how in (
            ("W2-observability-paced", "switched in one run at a fixed rate"),
            ("W2-observability-interleaved", "switched in one closed-loop run"),
        )
        for kind, what in (("cpu", "% more CPU/W2 call"), ("tether_cpu", "% more worker + client CPU/W2 call"))
        for arm, text in (
            ("metrics", "metrics"),
            ("sampled", "metrics + 10 % traced"),
            ("sampled_lean", "10 % traced, no unsampled spans"),
            ("traced", "metrics + all traced"),
        )
    ),
    Row("W7", "replayed_per_s", None, None, unit="dead letters replayed/s"),
    Row("W1-embedded", "p50_ms", None, Target("<= 10 ms", value_at_most=10.0), unit="p50 ms"),
    Row("W1-embedded", "calls_per_s", ("restate", "W1", "calls_per_s"), None),
    Row("W2-embedded", "calls_per_s", ("restate", "W2", "calls_per_s"), None),
    Row("W4-embedded", "end_to_end_msgs_per_s", RAW, None, unit="msg/s"),
]


def _median(results: dict[str, Any], section: str, workload: str) -> dict[str, Any] | None:
    entry = results.get("sections", {}).get(section, {}).get(workload)
    if not isinstance(entry, dict):
        return None
    med = entry.get("median")
    return med if isinstance(med, dict) else None


def _get(results: dict[str, Any], section: str, workload: str, metric: str) -> float | None:
    med = _median(results, section, workload)
    if med is None:
        return None
    value = med.get(metric)
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}" if digits else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _verdict(ratio: float | None, target: Target | None, value: float | None = None) -> str:
    if target is None:
        return "—"
    if target.value_at_most is not None or target.value_at_least is not None:
        if value is None:
            return "not measured"
        if target.value_at_most is not None:
            gap = value / target.value_at_most - 1
            return f"met, {-gap:.0%} below" if gap <= 0 else f"missed by {gap:.0%}"
        assert target.value_at_least is not None
        gap = value / target.value_at_least - 1
        return f"met, {gap:.0%} above" if gap >= 0 else f"missed by {-gap:.0%}"
    if target.ratio_at_least is None and target.ratio_at_most is None:
        return "see below" if value is not None else "not measured"
    if ratio is None:
        return "not measured"
    if target.ratio_at_least is not None:
        gap = ratio / target.ratio_at_least - 1
        return f"met, {gap:.0%} above" if gap >= 0 else f"missed by {-gap:.0%}"
    if target.ratio_at_most is not None:
        gap = ratio / target.ratio_at_most - 1
        return f"met, {-gap:.0%} below" if gap <= 0 else f"missed by {gap:.0%}"
    return "—"


def _unit(results: dict[str, Any], row: Row) -> str:
    if "{" not in row.unit:
        return row.unit
    med = _median(results, "tether", row.workload) or {}
    try:
        return row.unit.format(**med)
    except (KeyError, ValueError, TypeError):
        return row.unit.split(",")[0]


def comparison_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| workload | measure | Tether | baseline | baseline figure | ratio | target | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        t = _get(results, "tether", row.workload, row.metric)
        b = None
        base_name = "—"
        if row.baseline is not None:
            sec, wl, metric = row.baseline
            b = _get(results, sec, wl, metric)
            base_name = f"{sec} {wl}"
        if t is None and b is None and row.baseline is not None and row.target is None:
            continue
        ratio = t / b if t is not None and b else None
        lines.append(
            f"| {row.workload} | {_unit(results, row)} | {_fmt(t)} | {base_name} | {_fmt(b)} | "
            f"{'—' if ratio is None else f'{ratio:.2f}x'} | "
            f"{row.target.text if row.target else '—'} | {_verdict(ratio, row.target, t)} |"
        )
    return lines


def details_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| system | workload | calls | in flight | calls/s | p50 ms | p90 ms | p99 ms | max ms "
        "| CPU ms/call | peak RSS MiB | runs | correct |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for section in ("tether", "restate"):
        for name, entry in results.get("sections", {}).get(section, {}).items():
            if name.startswith("_") or not isinstance(entry, dict) or "median" not in entry:
                continue
            m = entry["median"]
            if "p50_ms" not in m:
                continue  # not request-reply: see tether_only_table
            rss = sum(p.get("peak_rss_mb", 0.0) for p in m.get("processes", {}).values())
            lines.append(
                f"| {section} | {name} | {m.get('calls', '—')} | {m.get('concurrency', '—')} | "
                f"{_fmt(m.get('calls_per_s'))} | {_fmt(m.get('p50_ms'))} | "
                f"{_fmt(m.get('p90_ms'))} | {_fmt(m.get('p99_ms'))} | {_fmt(m.get('max_ms'))} | "
                f"{_fmt(m.get('cpu_ms_per_call'), 2)} | {_fmt(rss or None)} | "
                f"{len(entry.get('runs', []))} | {'yes' if entry.get('correct') else 'NO'} |"
            )
    return lines if len(lines) > 2 else []


def _entry(results: dict[str, Any], workload: str) -> dict[str, Any] | None:
    entry = results.get("sections", {}).get("tether", {}).get(workload)
    return entry if isinstance(entry, dict) and isinstance(entry.get("median"), dict) else None


def _rss(m: dict[str, Any]) -> float | None:
    return sum(p.get("peak_rss_mb", 0.0) for p in m.get("processes", {}).values()) or None


def _ok(entry: dict[str, Any]) -> str:
    return "yes" if entry.get("correct") else "NO"


_ONE_ROW_WORKLOADS: tuple[tuple[str, str, tuple[tuple[str, str, int | None], ...]], ...] = (
    (
        "W6",
        "W6: sagas (three steps, 5% fail at the third and are compensated)",
        (
            ("sagas", "sagas", None),
            ("failing", "failing", None),
            ("sagas/s", "sagas_per_s", 0),
            ("saga p50 ms", "saga_p50_ms", 0),
            ("saga p99 ms", "saga_p99_ms", 0),
            ("compensated", "compensated", None),
            ("compensations run", "compensations_run", None),
            ("CPU ms/saga", "cpu_ms_per_saga", 2),
        ),
    ),
    (
        "W7",
        "W7: dead-letter replay (`dlq.DeadLetters.replay`)",
        (
            ("dead letters", "dead_letters", None),
            ("replay s", "replay_s", 2),
            ("replayed/s", "replayed_per_s", 0),
            ("applied by the worker/s", "processed_per_s", 0),
            ("CPU ms/letter", "cpu_ms_per_call", 2),
        ),
    ),
)
"""Workloads whose report is one row: (workload, title, (column, metric, digits or None for as is))."""


def tether_only_table(results: dict[str, Any]) -> list[str]:
    """W4 (fire-and-forget), W5 (recovery), W6 (sagas) and W7 (dead-letter replay)."""
    lines: list[str] = []
    w4 = [(n, e) for n in ("W4", "W4-2workers", "W4-ray", "W4-embedded") if (e := _entry(results, n))]
    skipped = [
        (n, e) for n in ("W4-ray",) if (e := results.get("sections", {}).get("tether", {}).get(n)) and "skipped" in e
    ]
    if w4 or skipped:
        lines += [
            "### W4: fire-and-forget sends, first send to last commit",
            "",
            "| variant | messages | sessions | workers | send msg/s | end-to-end msg/s | x raw | offsets "
            "committed s | CPU ms/msg | peak RSS MiB | runs | exactly once |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, e in w4:
            m, p = e["median"], e.get("params", {})
            ratio = m.get("raw_ratio")
            lines.append(
                f"| {name} | {m.get('messages', '—')} | {m.get('sessions', '—')} | "
                f"{p.get('workers', 1)} {p.get('worker', '')} | {_fmt(m.get('send_msgs_per_s'))} | "
                f"{_fmt(m.get('end_to_end_msgs_per_s'))} | {'—' if ratio is None else f'{ratio:.2f}x'} | "
                f"{_fmt(m.get('until_offsets_committed_s'))} | {_fmt(m.get('cpu_ms_per_msg'), 2)} | "
                f"{_fmt(_rss(m))} | {len(e.get('runs', []))} | {_ok(e)} |"
            )
        for name, e in skipped:
            lines.append(f"| {name} | skipped: {str(e['skipped'])[:120]} |" + " |" * 10)
        lines.append("")
    w5 = _entry(results, "W5")
    if w5:
        lines += [
            "### W5: restore of one partition (10,000 sessions; wide: one session, 1,000 events per invocation), "
            "fresh process",
            "",
            "| events | snapshots | restore s | records read | peak RSS MiB | RSS before MiB | decode all "
            "sessions s | runs | correct |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for point in w5.get("runs", []):
            m = point.get("median", {})
            lines.append(
                f"| {point.get('events', 0):,} | {point.get('series')} | {_fmt(m.get('restore_s'), 2)} | "
                f"{m.get('records_read', 0):,} | {_fmt(m.get('peak_rss_restore_mb'))} | "
                f"{_fmt(m.get('rss_before_mb'))} | {_fmt(m.get('load_all_sessions_s'), 2)} | "
                f"{len(point.get('runs', []))} | "
                f"{'yes' if all(r.get('correct') for r in point.get('runs', [])) else 'NO'} |"
            )
        lines.append("")
    for workload, title, columns in _ONE_ROW_WORKLOADS:
        if entry := _entry(results, workload):
            m = entry["median"]
            cells = {name: m.get(key) if digits is None else _fmt(m.get(key), digits) for name, key, digits in columns}
            lines += _one_row(title, {**cells, "runs": len(entry.get("runs", [])), "correct": _ok(entry)})
    return lines


def raw_table(results: dict[str, Any]) -> list[str]:
    section = results.get("sections", {}).get("raw_kafka", {})
    lines = [
        "| entry | messages | sessions | partitions | records/fetch cap | produce msg/s "
        "| processing msg/s | end-to-end msg/s | txns | records/txn | txn p50 ms | runs "
        "| exactly once |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in section.items():
        if name.startswith("_") or not isinstance(entry, dict) or "median" not in entry:
            continue
        m = entry["median"]
        lines.append(
            f"| {name} | {m.get('messages', '—')} | {m.get('sessions', '—')} | "
            f"{m.get('partitions', '—')} | {m.get('max_records') or 'none'} | "
            f"{_fmt(m.get('produce_msgs_per_s'))} | {_fmt(m.get('processing_msgs_per_s'))} | "
            f"{_fmt(m.get('end_to_end_msgs_per_s'))} | {m.get('transactions', '—')} | "
            f"{_fmt(m.get('mean_records_per_txn'))} | "
            f"{_fmt(m.get('txn_latency', {}).get('p50_ms'))} | "
            f"{len(entry.get('runs', []))} | {'yes' if entry.get('correct') else 'NO'} |"
        )
    return lines if len(lines) > 2 else []


def eos_table(results: dict[str, Any]) -> list[str]:
    """The raw exactly-once ceilings by client and scheme (`bench.raw_eos`), if measured."""
    from bench.raw_eos import table

    section = results.get("sections", {}).get("raw_eos", {})
    by_kind: dict[str, dict[str, Any]] = {"pipeline": {}, "request_reply": {}}
    for name, entry in section.items():
        kind, _, variant = name.partition("-")
        if kind in by_kind and variant != "best" and isinstance(entry, dict) and "median" in entry:
            by_kind[kind][variant] = entry
    if not any(by_kind.values()):
        return []
    return table(by_kind)


def machine_lines(results: dict[str, Any]) -> list[str]:
    m = results.get("machine")
    if not m:
        return ["No machine information recorded."]
    pk = m.get("packages", {})
    lines = [
        f"- CPU: {m.get('cpu_model')} ({m.get('cores_logical')} logical cores), "
        f"memory {m.get('memory_gib')} GiB; {m.get('os')}",
        f"- Python {m.get('python')}; {m.get('java') or 'java ?'}; Kafka {m.get('kafka')}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in sorted(pk.items())),
    ]
    meta = results.get("sections", {}).get("restate", {}).get("_meta")
    if meta:
        lines.append(
            f"- Restate: {meta.get('restate_server')}, Python SDK {meta.get('restate_sdk')} (scale {meta.get('scale')})"
        )
    if m.get("git_commit"):
        lines.append(f"- Tether commit: {m['git_commit']}")
    if m.get("settings"):  # the TETHER_RUNTIME__/TETHER_KAFKA__ variables the run was made with
        lines.append("- Settings: " + ", ".join(f"`{k}={v}`" for k, v in m["settings"].items()))
    lines.append(f"- Updated: {results.get('updated_at', '?')}")
    return lines


# Restate's figures as PEERS.md reports them (median of 3 on an idle 2-core machine): a sanity
# check for this run's peer figures, never a substitute for them (ratios use this run's).
PEERS_REFERENCE: dict[str, tuple[float, float, float]] = {
    "W1": (185, 5.2, 8.4),
    "W2": (658, 94, 179),
    "W3": (221, 275, 420),
    "W2-step": (420, 148, 294),
}


def peer_reference_table(results: dict[str, Any]) -> list[str]:
    rows = []
    for name, (cps, p50, p99) in PEERS_REFERENCE.items():
        got = _get(results, "restate", name, "calls_per_s")
        if got is None:
            continue
        rows.append(
            f"| {name} | {_fmt(got)} | {_fmt(float(cps))} | {got / cps:.2f}x | "
            f"{_fmt(_get(results, 'restate', name, 'p50_ms'))} / {_fmt(float(p50))} | "
            f"{_fmt(_get(results, 'restate', name, 'p99_ms'))} / {_fmt(float(p99))} |"
        )
    if not rows:
        return []
    return [
        "| workload | Restate calls/s here | PEERS.md calls/s | here / PEERS | p50 ms here / PEERS "
        "| p99 ms here / PEERS |",
        "|---|---|---|---|---|---|",
        *rows,
    ]


def _load_note(results: dict[str, Any]) -> list[str]:
    """Warn when other processes took a large share of the CPU during measured runs."""
    worst = 0.0
    for section in results.get("sections", {}).values():
        for entry in section.values():
            if not isinstance(entry, dict):
                continue
            for run in entry.get("runs", []):
                load = run.get("machine_load") or {}
                cap = load.get("capacity_cpu_s")
                if cap:
                    worst = max(worst, load.get("other_cpu_s", 0.0) / cap)
    if worst > 0.1:
        return [
            f"> Noise: in at least one run, processes outside the benchmark used {worst:.0%} of "
            "the machine's CPU. Figures from such runs understate both systems; re-run on an "
            "idle machine before drawing conclusions.",
            "",
        ]
    return []


# --------------------------------------------------------------------------------------------
# Charts
# --------------------------------------------------------------------------------------------


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chart_throughput(results: dict[str, Any], path: Path) -> bool:
    names = [
        w
        for w in REQUEST_REPLY
        if _get(results, "tether", w, "calls_per_s") or _get(results, "restate", w, "calls_per_s")
    ]
    raw = _median(results, "raw_kafka", "pipeline")
    if not names and raw is None:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    if names:
        systems = [(s, c) for s, c in SYSTEM_COLORS if any(_get(results, s, w, "calls_per_s") for w in names)]
        width = 0.8 / len(systems)
        for i, (section, color) in enumerate(systems):
            vals = [_get(results, section, w, "calls_per_s") or 0.0 for w in names]
            xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(names))]
            bars = ax.bar(xs, vals, width, label=section.capitalize(), color=color)
            ax.bar_label(bars, labels=[f"{v:,.0f}" if v else "" for v in vals], fontsize=8)
        ax.set_xticks(range(len(names)), names)
        ax.tick_params(axis="x", labelrotation=20)
        ax.set_ylabel("calls/s (median run)")
        ax.set_title("Request-reply throughput")
        ax.margins(y=0.1)
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no request-reply results", ha="center", va="center")
        ax.set_axis_off()
    ax = axes[1]
    if raw is not None:
        labels = ["produce", "processing", "end-to-end"]
        vals = [
            raw.get("produce_msgs_per_s", 0.0),
            raw.get("processing_msgs_per_s", 0.0),
            raw.get("end_to_end_msgs_per_s", 0.0),
        ]
        for name, label in (("W4", "Tether W4"), ("W4-2workers", "W4 2 workers"), ("W4-ray", "W4 Ray")):
            tether_rate = _get(results, "tether", name, "end_to_end_msgs_per_s")
            if tether_rate:
                labels.append(label)
                vals.append(tether_rate)
        colors = ["#bbbbbb", "#888888", "#444444"] + ["#1f77b4"] * (len(vals) - 3)
        bars = ax.bar(labels, vals, color=colors[: len(vals)])
        ax.tick_params(axis="x", labelrotation=20)
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in vals], fontsize=8)
        ax.set_ylabel("messages/s")
        ax.set_title(f"Raw aiokafka EOS ceiling ({raw.get('messages', 0):,} msgs)")
        ax.margins(y=0.1)
    else:
        ax.text(0.5, 0.5, "no raw-kafka results", ha="center", va="center")
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def chart_latency(results: dict[str, Any], path: Path) -> bool:
    names = [w for w in REQUEST_REPLY if _median(results, "tether", w) or _median(results, "restate", w)]
    if not names:
        return False
    systems = [(s, c) for s, c in SYSTEM_COLORS if any(_median(results, s, w) for w in names)]
    plt = _plt()
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names) + 1, 4), squeeze=False)
    pct = ("p50_ms", "p90_ms", "p99_ms")
    width = 0.8 / len(systems)
    for ax, w in zip(axes[0], names, strict=True):
        for i, (section, color) in enumerate(systems):
            vals = [_get(results, section, w, p) or 0.0 for p in pct]
            xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(pct))]
            bars = ax.bar(xs, vals, width, label=section.capitalize(), color=color)
            ax.bar_label(bars, labels=[_fmt(v) if v else "" for v in vals], fontsize=7)
        ax.set_xticks(range(len(pct)), ["p50", "p90", "p99"])
        ax.set_title(w)
        ax.set_ylabel("ms")
        ax.margins(y=0.12)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Latency percentiles (median run)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def chart_recovery(results: dict[str, Any], path: Path) -> bool:
    series: list[tuple[str, list[float], list[float]]] = []
    for section, workloads in results.get("sections", {}).items():
        for name, entry in workloads.items():
            if not isinstance(entry, dict):
                continue
            points = entry.get("recovery_points") or []
            labels = sorted({str(p.get("series", "")) for p in points if isinstance(p, dict)})
            for label in labels:
                pts = sorted(
                    (float(p["events"]), float(p["seconds"]))
                    for p in points
                    if isinstance(p, dict) and "events" in p and "seconds" in p and str(p.get("series", "")) == label
                )
                if pts:
                    title = f"{section} {name}" + (f", {label}" if label else "")
                    series.append((title, [e for e, _ in pts], [s for _, s in pts]))
    if not series:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, xs, ys in series:
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel("events in the session log")
    ax.set_ylabel("recovery time (s)")
    ax.set_xscale("log")
    ax.set_title("Recovery time vs log size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


CHARTS: dict[str, Callable[[dict[str, Any], Path], bool]] = {
    "throughput": chart_throughput,
    "latency": chart_latency,
    "recovery": chart_recovery,
}


def _one_row(title: str, cells: dict[str, Any]) -> list[str]:
    """A ``###`` sub-section holding a table of one row: column name -> cell."""
    return [
        f"### {title}",
        "",
        "| " + " | ".join(cells) + " |",
        "|" + "---|" * len(cells),
        "| " + " | ".join(str(v) for v in cells.values()) + " |",
        "",
    ]


def _section(title: str, table: list[str], intro: str | None = None) -> list[str]:
    """A report section: its heading, `intro` as a paragraph, the table; nothing when the table is empty."""
    if not table:
        return []
    return [f"## {title}", "", *([intro, ""] if intro else []), *table, ""]


def generate(path: Path = LATEST_JSON) -> Path:
    """Write ``<stem>.md`` and ``<stem>_<chart>.png`` next to the results file.

    Returns:
        The markdown file written.
    """
    results = load_results(path)
    out_dir = path.parent
    stem = path.stem
    lines = [f"# Tether benchmark results ({stem})", ""]
    lines += _load_note(results)
    lines += ["## Tether against its baselines", ""]
    lines += comparison_table(results)
    lines += ["", "Ratios are Tether / baseline. Targets live in `bench/report.py` (`ROWS`).", ""]
    lines += _section("Request-reply workloads (median of runs)", details_table(results))
    lines += _section(
        "This run's Restate against PEERS.md's reference",
        peer_reference_table(results),
        "Far below 1.0x means this machine was slower or busier than the reference one; "
        "the Tether/Restate ratios above still hold only if both ran under the same load.",
    )
    lines += _section("Tether-only workloads (median of runs)", tether_only_table(results))
    lines += _section("Raw aiokafka exactly-once pipeline (ceiling)", raw_table(results))
    lines += _section(
        "Raw exactly-once ceilings by client and scheme (`bench.raw_eos`)",
        eos_table(results),
        "The pipeline capped at 500 records per transaction; W2 raw: W2's load (64 in flight, "
        "1,000 keys) on a transactional request/reply server with no Tether code. Ratios to "
        "aiokafka per partition (Tether's default scheme).",
    )
    lines += ["## Charts", ""]
    for name, draw in CHARTS.items():
        png = out_dir / f"{stem}_{name}.png"
        if draw(results, png):
            lines.append(f"![{name}]({png.name})")
        else:
            png.unlink(missing_ok=True)
            lines.append(f"- {name}: no data yet.")
    lines += ["", "## Machine", ""] + machine_lines(results) + [""]
    md = out_dir / f"{stem}.md"
    md.write_text("\n".join(lines))
    return md
