"""`tether demo` survives a kill -9 of its worker with every side effect exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors.cli.demo import EXPLANATION

ROOT = Path(__file__).resolve().parents[2]


def run_demo(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    out = subprocess.run(
        [sys.executable, "-c", "from actors.cli.main import main; main()", "demo", "--data-dir", str(tmp_path), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    ledger = tmp_path / "demo" / "ledger.jsonl"
    entries = [json.loads(line) for line in ledger.read_text().splitlines()] if ledger.exists() else []
    return out, entries


def check(out: subprocess.CompletedProcess[str], entries: list[dict[str, object]]) -> None:
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Every side effect happened exactly once" in out.stdout
    effects = [e["step"] for e in entries if e["kind"] == "effect"]
    assert sorted(effects) == sorted(set(effects)) and len(effects) == 6
    pids = {e["pid"] for e in entries}
    assert len(pids) == 2  # the work really spanned the killed worker and its successor
    # The streamed part: every token arrived through client.stream, in order, before the reply.
    streamed, _, after = out.stdout.partition("explains its report, token by token")
    assert streamed and EXPLANATION in after
    tokens = len(EXPLANATION.split(" "))
    assert after.index(EXPLANATION) < after.index(f"reply: {tokens} tokens, streamed as {tokens} chunks")


def test_demo_on_the_embedded_log(tmp_path: Path) -> None:
    check(*run_demo(tmp_path))


@pytest.mark.kafka
def test_demo_on_kafka(tmp_path: Path, kafka_bootstrap: str) -> None:
    check(*run_demo(tmp_path, "--kafka", "-b", kafka_bootstrap))
