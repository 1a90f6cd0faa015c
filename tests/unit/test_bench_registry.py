"""The bench's one registry of workloads: every workload registered once, described, documented."""

from __future__ import annotations

import re
from pathlib import Path

from bench.registry import load

README = (Path(__file__).resolve().parents[2] / "bench" / "README.md").read_text()


def test_every_workload_is_registered_with_a_description() -> None:
    workloads = load()
    assert {"W1", "W2", "W2-step", "W4", "W5", "W6", "W7", "W8-sleepers", "W9-dlq-scale"} <= set(workloads)
    assert all(w.description.strip() for w in workloads.values())
    assert load() is workloads and len(load()) == len(workloads), "loading twice registers nothing twice"


def test_every_workload_is_in_the_bench_readme() -> None:
    for name in load():
        short = name.split("-")[0] if name.startswith(("W8", "W9")) else name
        assert re.search(rf"\b{re.escape(short)}\b", README), f"{name} is not in bench/README.md"


def test_the_bench_paths_point_at_the_bench_and_the_repository() -> None:
    from bench._harness import BENCH_DIR, LATEST_JSON, REPO_ROOT

    repo = Path(__file__).resolve().parents[2]
    assert BENCH_DIR == repo / "bench", "results, logs and the peer's install go under bench/"
    assert REPO_ROOT == repo
    assert LATEST_JSON == repo / "bench" / "results" / "latest.json"
    assert (BENCH_DIR / "requirements-peer.txt").is_file()
