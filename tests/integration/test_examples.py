"""The README's examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_example_runs_on_the_embedded_log() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    out = subprocess.run(
        [sys.executable, "examples/quickstart.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "answer: <answer to" in out.stdout
    # three asks, one of them sent twice with the same idempotency key: three answers
    assert "answers: 3 version: 3" in out.stdout


def test_readme_session_type_matches_the_example_file() -> None:
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / "examples/quickstart.py").read_text()
    block = re.search(r"## A session type\n\n```python\n(.*?)```", readme, re.S)
    assert block is not None
    for line in block.group(1).splitlines():
        if line.strip() and not line.startswith(("import", "from")):
            assert line in example, f"README line not in examples/quickstart.py: {line!r}"


def test_booking_saga_example_runs_and_the_readme_shows_its_code() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    out = subprocess.run(
        [sys.executable, "examples/booking_saga.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr
    assert "compensated" in out.stdout
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / "examples/booking_saga.py").read_text()
    block = re.search(r"## Sagas.*?```python\n(.*?)```", readme, re.S)
    assert block is not None
    for line in block.group(1).splitlines():
        if line.strip():
            assert line in example, f"README line not in examples/booking_saga.py: {line!r}"
