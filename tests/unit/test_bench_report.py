"""The bench report holds W2 against its raw ceiling (a request/reply server with no Tether code)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.report import generate


def _entry(figures: dict[str, Any]) -> dict[str, Any]:
    return {"params": {}, "median": figures, "runs": [figures], "correct": True}


def test_w2_is_reported_as_a_fraction_of_the_raw_request_reply_ceilings(tmp_path: Path) -> None:
    rr = {"calls_per_s": 2_000.0, "cpu_ms_per_call": 0.5, "calls_per_txn": 20.0}
    slow = {"calls_per_s": 500.0, "cpu_ms_per_call": 2.0, "calls_per_txn": 4.0}
    results = {
        "schema": 1,
        "machine": {"git_commit": "abc1234", "settings": {"TETHER_RUNTIME__COMMIT_INTERVAL": "0.005"}},
        "sections": {
            "tether": {"W2": _entry({"calls_per_s": 1_000.0, "p99_ms": 50.0})},
            "raw_eos": {
                "request_reply-aiokafka-partition": _entry(slow),
                "request_reply-aiokafka-worker": _entry(rr),
                "request_reply-best": _entry(rr),
                "pipeline-aiokafka-partition": _entry({"msgs_per_s": 9_000.0, "mean_records_per_txn": 480}),
            },
        },
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    md = generate(path).read_text()
    best = "| W2 | calls/s vs raw request/reply, best client | 1,000 | raw_eos request_reply-best | 2,000 | 0.50x |"
    assert best in md
    assert "| W2 | calls/s vs raw request/reply, aiokafka per partition | 1,000 |" in md and "| 2.00x |" in md
    assert "| aiokafka-worker | 0 | 0.000 | 0 | 2,000 (4.00x) | 0.500 | 20.0 |" in md  # the ceilings table
    assert "`TETHER_RUNTIME__COMMIT_INTERVAL=0.005`" in md  # the settings the run was made with
