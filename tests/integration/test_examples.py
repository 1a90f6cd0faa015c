"""The README's examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_example(name: str, timeout: float) -> str:
    """Run ``examples/<name>.py`` as a user does (no ``TETHER_`` variables); its output, once it exited 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    out = subprocess.run(
        [sys.executable, f"examples/{name}.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def readme_block(pattern: str) -> str:
    """The README's code block that `pattern` (a regular expression, its group 1) finds."""
    block = re.search(pattern, (ROOT / "README.md").read_text(), re.S)
    assert block is not None, pattern
    return block.group(1)


def assert_shown_in(block: str, example: str, *, name: str, skip_imports: bool = False) -> None:
    """Every line of the README's `block` is a whole line of `example`, in the same order.

    Blank lines and ``...`` elisions in the README may stand for any number of lines; nothing else
    may differ (a fragment such as ``)`` only matches a line that is exactly that, after the
    line matched before it).
    """
    lines = [line.rstrip() for line in example.splitlines()]
    at = 0
    for shown in block.splitlines():
        text = shown.rstrip()
        if not text.strip() or text.strip() == "..." or (skip_imports and text.startswith(("import ", "from "))):
            continue
        try:
            at = lines.index(text, at) + 1
        except ValueError:
            raise AssertionError(f"README line not in {name} (or out of order): {text!r}") from None


def test_the_readme_check_fails_on_a_changed_or_reordered_line() -> None:
    example = "def f():\n    x = g(\n        1,\n    )\n    return x\n"
    assert_shown_in("def f():\n    x = g(\n        1,\n    )\n", example, name="ex")
    for wrong in ("def f():\n    x = g(2)\n", "    return x\ndef f():\n", "def f():\n  )\n"):
        with pytest.raises(AssertionError):
            assert_shown_in(wrong, example, name="ex")


def test_quickstart_example_runs_on_the_embedded_log() -> None:
    stdout = run_example("quickstart", timeout=120)
    assert "answer: <answer to" in stdout
    # three asks, one of them sent twice with the same idempotency key: three answers
    assert "answers: 3 version: 3" in stdout


def test_readme_session_type_matches_the_example_file() -> None:
    block = readme_block(r"## A session type\n\n```python\n(.*?)```")
    example = (ROOT / "examples/quickstart.py").read_text()
    assert_shown_in(block, example, name="examples/quickstart.py", skip_imports=True)


def test_booking_saga_example_runs_and_the_readme_shows_its_code() -> None:
    stdout = run_example("booking_saga", timeout=180)
    assert "compensated" in stdout
    example = (ROOT / "examples/booking_saga.py").read_text()
    assert_shown_in(readme_block(r"## Sagas.*?```python\n(.*?)```"), example, name="examples/booking_saga.py")


def test_research_agent_example_streams_and_the_readme_shows_its_code() -> None:
    stdout = run_example("research_agent", timeout=180)
    assert stdout.startswith("Durable agents resume from their journal instead of starting over.")
    assert "answer: 'Durable agents resume" in stdout and "tokens)" in stdout
    example = (ROOT / "examples/research_agent.py").read_text()
    agents = readme_block(r"## Agents\n.*?```python\n(.*?)```")
    streaming = readme_block(r"### Streaming to the caller\n.*?```python\n(.*?)```")
    assert_shown_in(agents, example, name="examples/research_agent.py")
    assert_shown_in(streaming, example, name="examples/research_agent.py")


def test_large_payloads_example_runs_and_the_readme_shows_its_setting() -> None:
    stdout = run_example("large_payloads", timeout=180)
    # 5 MiB in; the document plus half of it (a step result by reference) back; three blobs.
    assert "sent 5,160,000 chars, got back 7,740,000 chars and 720,000 words" in stdout
    assert "3 blobs:" in stdout
    example = (ROOT / "examples/large_payloads.py").read_text()
    block = readme_block(r"### Large payloads by reference\n.*?```python\n(.*?)```")
    assert_shown_in(block, example, name="examples/large_payloads.py")
