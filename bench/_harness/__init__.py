"""Shared benchmark harness: timers, a closed-loop driver, RSS/CPU sampling, machine info, JSON out.

Nothing here imports Tether: the same harness measures Tether, the Restate peer and the raw
aiokafka baseline, so the three are timed by the same code. One module per concern:
`latency` (percentiles, recorder, driver), `sampling` (RSS/CPU), `machine` (what it ran on),
`paths`, `results` (the JSON files), `terminal` (progress, console, ports), `tracing` (the
OpenTelemetry SDK set up to measure what tracing costs), `raw_clients` (the raw baselines'
aiokafka clients; imported from there, not re-exported).
"""

from eventstore.kafka.localbroker import port_is_free

from .latency import LatencyRecorder, Progress, Result, drive, median_run, percentile
from .machine import KAFKA_VERSION, TRACKED_PACKAGES, machine_info, package_versions
from .paths import BENCH_DIR, LATEST_JSON, QUICK_JSON, REPO_ROOT, RESULTS_DIR, RESULTS_ENV, RUNS_DIR
from .results import SCHEMA_VERSION, load_results, record, utc_now, workload_result
from .sampling import ProcessSampler, other_share, sample_this_process
from .terminal import check_mark, console, free_port, pick_port, progress_bar, wait_for_port

__all__ = [
    "BENCH_DIR",
    "KAFKA_VERSION",
    "LATEST_JSON",
    "QUICK_JSON",
    "REPO_ROOT",
    "RESULTS_DIR",
    "RESULTS_ENV",
    "RUNS_DIR",
    "SCHEMA_VERSION",
    "TRACKED_PACKAGES",
    "LatencyRecorder",
    "ProcessSampler",
    "Progress",
    "Result",
    "check_mark",
    "console",
    "drive",
    "free_port",
    "load_results",
    "machine_info",
    "median_run",
    "other_share",
    "package_versions",
    "percentile",
    "pick_port",
    "port_is_free",
    "progress_bar",
    "record",
    "sample_this_process",
    "utc_now",
    "wait_for_port",
    "workload_result",
]
