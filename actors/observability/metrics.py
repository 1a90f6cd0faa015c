"""Prometheus metrics of a worker: what its partitions did, counted once per real execution.

Recording is off until `enable` (a worker does it when ``TETHER_RUNTIME__METRICS_PORT`` or
``--metrics-port`` is set), so a worker without metrics pays one attribute test per event.
Labels are bounded: object and handler names come from the served definitions (anything else
is ``unknown``), step names are capped per object (`MAX_STEP_NAMES`, then ``other``), and
partitions are the namespace's; no label ever carries a session key or a message id.

Counters count what ran in this process: a step replayed from the journal after a crash is not
a step execution, and an invocation counts once, when it finishes (ok, error, dead-lettered or
suspended), however many attempts it took.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from eventstore.errors import ConfigurationError

MAX_STEP_NAMES = 64
"""Distinct step names per object before further ones are counted as ``other``."""
UNKNOWN = "unknown"
"""The label of an object or handler that no served definition has (a caller's mistake)."""

OUTCOMES = ("ok", "error", "dead_lettered", "suspended", "duplicate", "interrupted")
"""Values of the ``outcome`` label of `tether_invocations_total`: ``error`` is a call answered
with an error (unknown handler, invalid payload) and nothing dead-lettered; ``duplicate`` a
message id already finished (answered again); ``interrupted`` an invocation cut short by its
partition being lost or the worker stopping (it runs again where the partition goes)."""

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_RESTORE = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


@dataclass
class WorkerSnapshot:
    """Gauges of one worker, taken on its event loop (scrapes run on another thread)."""

    partitions: int = 0
    resident: int = 0
    suspended: int = 0
    timers: int = 0
    lag: dict[int, int] = field(default_factory=dict)
    """Inbox records not finished yet, by partition (end offset minus the commit watermark)."""


class SnapshotSource(Protocol):
    """Something that reports a `WorkerSnapshot` (a worker)."""

    @property
    def metrics_snapshot(self) -> WorkerSnapshot:
        """The latest snapshot."""
        ...


class _WorkerGauges(Collector):
    """Sums the snapshots of the live workers of this process at scrape time."""

    def __init__(self) -> None:
        self.sources: weakref.WeakSet[Any] = weakref.WeakSet()

    def collect(self) -> Iterable[Metric]:
        snaps = [s.metrics_snapshot for s in list(self.sources)]
        gauges = [
            ("tether_partitions_owned", "Partitions this worker owns (restored and running).", "partitions"),
            ("tether_sessions_resident", "Sessions whose state is decoded in memory.", "resident"),
            ("tether_sessions_suspended", "Invocations suspended on a timer or an awakeable.", "suspended"),
            ("tether_sessions_waiting_timers", "Durable timers scheduled (sleeps, delays, deadlines).", "timers"),
        ]
        for name, doc, attr in gauges:
            yield GaugeMetricFamily(name, doc, value=sum(getattr(s, attr) for s in snaps))
        lag = GaugeMetricFamily(
            "tether_consumer_lag_records", "Inbox records of an owned partition not finished yet.", labels=["partition"]
        )
        for snap in snaps:
            for partition, records in sorted(snap.lag.items()):
                lag.add_metric([str(partition)], records)
        yield lag


class Metrics:
    """The metric set of a worker process, in a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.enabled = False
        """Whether events are recorded (see `enable`)."""
        r = self.registry
        self.invocations = Counter(
            "tether_invocations", "Invocations finished, by outcome.", ["object", "handler", "outcome"], registry=r
        )
        self.invocation_seconds = Histogram(
            "tether_invocation_duration_seconds",
            "Time from an invocation's start to its outcome (one run; a suspended one counts each run).",
            ["object", "handler"],
            buckets=_LATENCY,
            registry=r,
        )
        self.step_seconds = Histogram(
            "tether_step_duration_seconds",
            "Time of a step executed here, attempts and journal write included (replayed steps are not counted).",
            ["object", "step", "outcome"],
            buckets=_LATENCY,
            registry=r,
        )
        self.step_retries = Counter(
            "tether_step_retries", "Step attempts that failed and were retried.", ["object", "step"], registry=r
        )
        self.circuit_opens = Counter(
            "tether_circuit_opens", "Times a step's circuit breaker opened.", ["object", "step"], registry=r
        )
        self.dead_letters = Counter(
            "tether_dead_letters", "Records dead-lettered, by category.", ["category"], registry=r
        )
        self.restore_seconds = Histogram(
            "tether_restore_duration_seconds", "Time to restore a partition.", buckets=_RESTORE, registry=r
        )
        self.restore_records = Counter("tether_restore_records", "Records read by partition restores.", registry=r)
        self.transactions = Counter(
            "tether_transactions", "Transactions committed by partition processors.", registry=r
        )
        self.transaction_records = Histogram(
            "tether_transaction_records", "Records per committed transaction.", buckets=_SIZES, registry=r
        )
        self.commit_seconds = Histogram(
            "tether_transaction_commit_duration_seconds", "Time to commit a transaction.", buckets=_LATENCY, registry=r
        )
        self.stalls = Counter(
            "tether_event_loop_stalls", "Times the event loop was blocked past the warning.", registry=r
        )
        self.stall_seconds = Histogram(
            "tether_event_loop_stall_seconds", "How long the event loop was blocked.", buckets=_RESTORE, registry=r
        )
        self.cost = Counter("tether_cost_units", "Cost units charged with ctx.charge.", ["object"], registry=r)
        self.workers = _WorkerGauges()
        r.register(self.workers)
        ProcessCollector(registry=r)
        self._lock = threading.Lock()
        self._children: dict[tuple[Any, ...], Any] = {}
        self._step_names: dict[str, set[str]] = {}

    def enable(self, enabled: bool = True) -> None:
        """Start (or stop) recording."""
        self.enabled = enabled

    def _child(self, metric: Any, *labels: str) -> Any:  # noqa: ANN401 - a prometheus child
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def step_label(self, object_name: str, step: str) -> str:
        """`step` as a label value: internal names without their ids, at most `MAX_STEP_NAMES`."""
        if step.startswith("awakeable-timeout "):
            step = "awakeable-timeout"
        names = self._step_names.setdefault(object_name, set())
        if step in names:
            return step
        with self._lock:
            if len(names) >= MAX_STEP_NAMES:
                return "other"
            names.add(step)
        return step

    # -- events ----------------------------------------------------------------------------
    def invocation(self, object_name: str, handler: str, outcome: str, seconds: float) -> None:
        """One invocation run ended with `outcome` after `seconds`."""
        self._child(self.invocations, object_name, handler, outcome).inc()
        self._child(self.invocation_seconds, object_name, handler).observe(seconds)

    def step(self, object_name: str, step: str, outcome: str, seconds: float) -> None:
        """A step executed here ended (journaled) with `outcome` (``ok`` or ``error``)."""
        self._child(self.step_seconds, object_name, self.step_label(object_name, step), outcome).observe(seconds)

    def step_retry(self, object_name: str, step: str) -> None:
        """A step attempt failed and is retried."""
        self._child(self.step_retries, object_name, self.step_label(object_name, step)).inc()

    def circuit_opened(self, object_name: str, step: str) -> None:
        """A step's breaker opened."""
        self._child(self.circuit_opens, object_name, self.step_label(object_name, step)).inc()

    def dead_letter(self, category: str) -> None:
        """A record went to the dead-letter topic."""
        self._child(self.dead_letters, category).inc()

    def restored(self, seconds: float, records: int) -> None:
        """A partition restore read `records` records in `seconds`."""
        self.restore_seconds.observe(seconds)
        self.restore_records.inc(records)

    def committed(self, records: int, seconds: float) -> None:
        """A transaction of `records` records committed in `seconds`."""
        self.transactions.inc()
        self.transaction_records.observe(records)
        self.commit_seconds.observe(seconds)

    def stall(self, seconds: float) -> None:
        """The event loop was blocked for `seconds`."""
        self.stalls.inc()
        self.stall_seconds.observe(seconds)

    def charged(self, object_name: str, cost: float) -> None:
        """`ctx.charge(cost)` in a session of `object_name`."""
        if cost > 0:
            self._child(self.cost, object_name).inc(cost)

    def watch(self, source: SnapshotSource) -> None:
        """Report `source`'s gauges while it lives."""
        self.workers.sources.add(source)

    def unwatch(self, source: SnapshotSource) -> None:
        """Stop reporting `source`'s gauges."""
        self.workers.sources.discard(source)


METRICS = Metrics()
"""This process's metrics (one registry per process, shared by its workers)."""


@dataclass
class _Server:
    port: int
    server: Any
    thread: threading.Thread


_servers: dict[int, _Server] = {}


def serve_metrics(port: int, addr: str = "0.0.0.0") -> int:  # noqa: S104 - scraped from other hosts
    """Expose `METRICS` on ``http://addr:port/metrics`` (once per port per process); return the port.

    Port 0 picks a free one. Recording is enabled too.

    Raises:
        ConfigurationError: the port cannot be listened on (taken by another process).
    """
    METRICS.enable()
    if port and port in _servers:
        return port
    try:
        server, thread = start_http_server(port, addr, registry=METRICS.registry)
    except OSError as exc:
        raise ConfigurationError(
            f"TETHER_RUNTIME__METRICS_PORT / --metrics-port: cannot serve metrics on {addr}:{port}: {exc}"
        ) from exc
    bound = int(server.server_address[1])
    _servers[bound] = _Server(bound, server, thread)
    return bound


def stop_serving() -> None:
    """Close every metrics endpoint of this process (tests)."""
    for served in list(_servers.values()):
        served.server.shutdown()
        served.server.server_close()
    _servers.clear()


def served_ports() -> Iterator[int]:
    """The ports `serve_metrics` listens on."""
    return iter(sorted(_servers))
