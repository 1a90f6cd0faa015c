"""Where the bench and its results live."""

from __future__ import annotations

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[1]
"""`bench/` (this module lives in `bench/_harness/`)."""
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LATEST_JSON = RESULTS_DIR / "latest.json"
QUICK_JSON = RESULTS_DIR / "quick.json"
RUNS_DIR = RESULTS_DIR / "runs"
RESULTS_ENV = "TETHER_BENCH_RESULTS"
"""Names a results file to use instead of ``latest.json``/``quick.json`` (the profiler's bench
run writes there, so a profiled run never replaces the full run's figures)."""
