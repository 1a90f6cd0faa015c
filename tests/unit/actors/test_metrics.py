"""The metric set: bounded labels, Prometheus names, and a dashboard that queries only real metrics."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from actors.observability.metrics import MAX_STEP_NAMES, METRICS, Metrics, WorkerSnapshot, serve_metrics, stop_serving
from eventstore.errors import ConfigurationError

DASHBOARD = Path(__file__).resolve().parents[3] / "observability" / "grafana-dashboard.json"


def _samples(metrics: Metrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_step_names_are_capped_per_object_and_internal_ids_dropped() -> None:
    metrics = Metrics()
    for n in range(MAX_STEP_NAMES + 10):
        metrics.step("agent", f"llm:{n}", "ok", 0.01)
    metrics.step("agent", "awakeable-timeout awk:agent/k#m#1", "ok", 0.01)
    metrics.step("other", "llm:0", "ok", 0.01)
    steps = {dict(labels)["step"] for labels in _samples(metrics)["tether_step_duration_seconds_count"]}
    assert len(steps) == MAX_STEP_NAMES + 1  # the capped names of "agent", then "other"
    assert "other" in steps and "awakeable-timeout" not in steps  # the cap was reached first
    fresh = Metrics()
    fresh.step("agent", "awakeable-timeout awk:agent/k#m#1", "ok", 0.01)
    assert {dict(k)["step"] for k in _samples(fresh)["tether_step_duration_seconds_count"]} == {"awakeable-timeout"}


def test_counters_and_gauges_are_exposed_with_prometheus_names() -> None:
    metrics = Metrics()
    metrics.invocation("agent", "ask", "ok", 0.02)
    metrics.invocation("agent", "ask", "ok", 0.03)
    metrics.dead_letter("poison")
    metrics.committed(4, 0.002)
    metrics.charged("agent", 0.25)
    metrics.charged("agent", 0.0)
    metrics.kept()
    metrics.kept()

    class Source:
        metrics_snapshot = WorkerSnapshot(partitions=3, resident=7, suspended=1, timers=2, lag={0: 5, 2: 0})

    source = Source()
    metrics.watch(source)
    samples = _samples(metrics)
    assert samples["tether_invocations_total"] == {(("handler", "ask"), ("object", "agent"), ("outcome", "ok")): 2.0}
    assert samples["tether_dead_letters_total"] == {(("category", "poison"),): 1.0}
    assert samples["tether_transaction_records_sum"][()] == 4.0
    assert samples["tether_cost_units_total"] == {(("object", "agent"),): 0.25}
    assert samples["tether_partitions_kept_total"] == {(): 2.0}
    assert samples["tether_partitions_owned"][()] == 3 and samples["tether_sessions_resident"][()] == 7
    assert samples["tether_consumer_lag_records"] == {(("partition", "0"),): 5.0, (("partition", "2"),): 0.0}
    metrics.unwatch(source)
    assert _samples(metrics)["tether_partitions_owned"][()] == 0


def test_the_dashboard_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b((?:tether|process)_[a-z_]+)", e)}
    metrics = Metrics()
    metrics.invocation("a", "h", "ok", 0.1)
    metrics.step("a", "s", "ok", 0.1)
    metrics.step_retry("a", "s")
    metrics.circuit_opened("a", "s")
    metrics.dead_letter("poison")
    metrics.charged("a", 1.0)

    class Source:
        metrics_snapshot = WorkerSnapshot(lag={0: 1})

    source = Source()
    metrics.watch(source)
    exposed = set(_samples(metrics))
    assert used and used <= exposed, sorted(used - exposed)
    for name in ("tether_invocations_total", "tether_dead_letters_total", "tether_consumer_lag_records"):
        assert name in used, f"the dashboard shows no {name}"


def test_a_taken_metrics_port_is_a_configuration_error() -> None:
    enabled = METRICS.enabled
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            with pytest.raises(ConfigurationError, match="METRICS_PORT"):
                serve_metrics(port)
        finally:
            stop_serving()
            METRICS.enable(enabled)


def test_histograms_are_cumulative_with_le_bounds_inclusive() -> None:
    metrics = Metrics()
    for seconds in (0.001, 0.0011, 0.3, 1000.0):
        metrics.step("agent", "llm", "ok", seconds)
    samples = _samples(metrics)
    labels = (("object", "agent"), ("outcome", "ok"), ("step", "llm"))
    buckets = {
        dict(k)["le"]: v
        for k, v in samples["tether_step_duration_seconds_bucket"].items()
        if tuple(p for p in k if p[0] != "le") == labels
    }
    assert buckets["0.001"] == 1 and buckets["0.0025"] == 2 and buckets["0.25"] == 2 and buckets["0.5"] == 3
    assert buckets["300.0"] == 3 and buckets["+Inf"] == 4
    assert samples["tether_step_duration_seconds_count"][labels] == 4
    assert abs(samples["tether_step_duration_seconds_sum"][labels] - 1000.3021) < 1e-9
