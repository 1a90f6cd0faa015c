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
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from eventstore.errors import ConfigurationError

MAX_STEP_NAMES = 64
"""Distinct step names per object before further ones are counted as ``other``."""
UNKNOWN = "unknown"
"""The label of an object or handler that no served definition has (a caller's mistake)."""

OUTCOMES = ("ok", "error", "dead_lettered", "suspended", "cancelled", "duplicate", "interrupted")
"""Values of the ``outcome`` label of `tether_invocations_total`: ``error`` is a call answered
with an error (unknown handler, invalid payload) and nothing dead-lettered; ``cancelled`` an
invocation an operator cancelled (recorded, not dead-lettered); ``duplicate`` a
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
    """Inbox records not finished yet, by partition (end offset minus the commit watermark, or
    minus the consumer's position once every fetched record is finished)."""


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


class _Family(Collector):
    """A counter or histogram with labels, cheaper to update than prometheus_client's.

    prometheus_client takes a lock per value per update and walks the buckets in Python (about
    6 us for a counter and a histogram update); an invocation updates several. Here an update is
    one dict lookup, a `bisect` and two additions under one uncontended lock, and the scrape
    thread builds the exposition from a copy.
    """

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str] = (), buckets: Sequence[float] | None = None
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self.bounds = list(buckets) if buckets is not None else None
        self._values: dict[tuple[str, ...], list[float]] = {}
        if not self.labels:  # exposed from the start, at zero, as prometheus_client does
            self._values[()] = [0.0] if self.bounds is None else [0.0] * (len(self.bounds) + 2)
        self._lock = threading.Lock()

    def inc(self, labels: tuple[str, ...] = (), amount: float = 1.0) -> None:
        """Add `amount` to the counter with `labels`."""
        with self._lock:
            value = self._values.get(labels)
            if value is None:
                self._values[labels] = [amount]
            else:
                value[0] += amount

    def observe(self, amount: float, labels: tuple[str, ...] = ()) -> None:
        """Count `amount` in the histogram with `labels`."""
        bounds = self.bounds
        assert bounds is not None
        with self._lock:
            value = self._values.get(labels)
            if value is None:
                value = self._values[labels] = [0.0] * (len(bounds) + 2)  # buckets, +Inf, sum
            value[bisect_left(bounds, amount)] += 1
            value[-1] += amount

    def describe(self) -> Iterable[Metric]:
        """The family without samples (so a registry knows its names before the first scrape)."""
        return [self._family()]

    def _family(self) -> Metric:
        if self.bounds is None:
            return CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labels)

    def collect(self) -> Iterable[Metric]:
        """The samples (histogram buckets cumulative, as Prometheus wants them)."""
        with self._lock:
            values = [(labels, list(value)) for labels, value in self._values.items()]
        family = self._family()
        for labels, value in values:
            if self.bounds is None:
                assert isinstance(family, CounterMetricFamily)
                family.add_metric(list(labels), value[0])
                continue
            assert isinstance(family, HistogramMetricFamily)
            cumulative, buckets = 0.0, []
            for bound, count in zip([*map(floatToGoString, self.bounds), "+Inf"], value[:-1], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric(list(labels), buckets, value[-1])
        return [family]


class Metrics:
    """The metric set of a worker process, in a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.enabled = False
        """Whether events are recorded (see `enable`)."""
        self.invocations = _Family(
            "tether_invocations", "Invocations finished, by outcome.", ["object", "handler", "outcome"]
        )
        self.invocation_seconds = _Family(
            "tether_invocation_duration_seconds",
            "Time from an invocation's start to its outcome (one run; a suspended one counts each run).",
            ["object", "handler"],
            _LATENCY,
        )
        self.step_seconds = _Family(
            "tether_step_duration_seconds",
            "Time of a step executed here, attempts and journal write included (replayed steps are not counted).",
            ["object", "step", "outcome"],
            _LATENCY,
        )
        self.step_retries = _Family(
            "tether_step_retries", "Step attempts that failed and were retried.", ["object", "step"]
        )
        self.circuit_opens = _Family(
            "tether_circuit_opens", "Times a step's circuit breaker opened.", ["object", "step"]
        )
        self.dead_letters = _Family("tether_dead_letters", "Records dead-lettered, by category.", ["category"])
        self.restore_seconds = _Family(
            "tether_restore_duration_seconds", "Time to restore a partition.", buckets=_RESTORE
        )
        self.restore_records = _Family("tether_restore_records", "Records read by partition restores.")
        self.partitions_kept = _Family(
            "tether_partitions_kept", "Partitions a rebalance gave back to this worker, resumed without a restore."
        )
        self.transactions = _Family("tether_transactions", "Transactions committed by partition processors.")
        self.transaction_records = _Family(
            "tether_transaction_records", "Records per committed transaction.", buckets=_SIZES
        )
        self.commit_seconds = _Family(
            "tether_transaction_commit_duration_seconds", "Time to commit a transaction.", buckets=_LATENCY
        )
        self.stalls = _Family("tether_event_loop_stalls", "Times the event loop was blocked past the warning.")
        self.stall_seconds = _Family(
            "tether_event_loop_stall_seconds", "How long the event loop was blocked.", buckets=_RESTORE
        )
        self.cost = _Family("tether_cost_units", "Cost units charged with ctx.charge.", ["object"])
        for family in (
            self.invocations,
            self.invocation_seconds,
            self.step_seconds,
            self.step_retries,
            self.circuit_opens,
            self.dead_letters,
            self.restore_seconds,
            self.partitions_kept,
            self.restore_records,
            self.transactions,
            self.transaction_records,
            self.commit_seconds,
            self.stalls,
            self.stall_seconds,
            self.cost,
        ):
            self.registry.register(family)
        self.workers = _WorkerGauges()
        self.registry.register(self.workers)
        ProcessCollector(registry=self.registry)
        self._lock = threading.Lock()
        self._step_names: dict[str, set[str]] = {}

    def enable(self, enabled: bool = True) -> None:
        """Start (or stop) recording."""
        self.enabled = enabled

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
        self.invocations.inc((object_name, handler, outcome))
        self.invocation_seconds.observe(seconds, (object_name, handler))

    def step(self, object_name: str, step: str, outcome: str, seconds: float) -> None:
        """A step executed here ended (journaled) with `outcome` (``ok`` or ``error``)."""
        self.step_seconds.observe(seconds, (object_name, self.step_label(object_name, step), outcome))

    def step_retry(self, object_name: str, step: str) -> None:
        """A step attempt failed and is retried."""
        self.step_retries.inc((object_name, self.step_label(object_name, step)))

    def circuit_opened(self, object_name: str, step: str) -> None:
        """A step's breaker opened."""
        self.circuit_opens.inc((object_name, self.step_label(object_name, step)))

    def dead_letter(self, category: str) -> None:
        """A record went to the dead-letter topic."""
        self.dead_letters.inc((category,))

    def restored(self, seconds: float, records: int) -> None:
        """A partition restore read `records` records in `seconds`."""
        self.restore_seconds.observe(seconds)
        self.restore_records.inc((), records)

    def kept(self) -> None:
        """A partition came back in a rebalance and its processor resumed (no restore)."""
        self.partitions_kept.inc()

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
            self.cost.inc((object_name,), cost)

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
