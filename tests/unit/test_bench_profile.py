"""The py-spy summary of `python -m bench profile`: self time by package, from collapsed stacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.profile_worker import render, summarize

SAMPLES = """\
<module> (tether:1);run (asyncio/base_events.py:600);_run_once (asyncio/base_events.py:1900) 30
<module> (tether:1);_commit (eventstore/kafka/group_writer.py:90);send (aiokafka/producer/producer.py:400) 50
<module> (tether:1);_run_invocation (actors/runtime/processor.py:442);packb (msgpack/__init__.py:30) 15
<module> (tether:1);_run_invocation (actors/runtime/processor.py:442) 5
garbage line without a count
"""


def test_self_time_is_counted_at_the_innermost_frame_by_package() -> None:
    summary = summarize(SAMPLES)
    assert summary.samples == 100
    by = dict(summary.by_category)
    assert by["aiokafka"] == 50
    assert by["event loop (asyncio, selectors, ssl)"] == 30
    assert by["msgpack"] == 15
    assert by["tether runtime (actors/)"] == 5, "a frame of actors/ counts only where it is innermost"
    assert summary.top_functions[0] == ("send (aiokafka/producer/producer.py:400)", 50)


def test_the_table_shows_shares_and_how_busy_the_worker_was(tmp_path: Path) -> None:
    path = tmp_path / "profile-per_worker.txt"
    path.write_text(SAMPLES)
    lines = render(path, seconds=2.0, rate=100)
    assert lines[0].startswith("profile-per_worker.txt: 100 samples over 2 s (the worker was busy 50%")
    assert "| aiokafka | 50% |" in lines


def test_a_results_file_named_in_the_environment_replaces_latest_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The profiler's bench run sets it, so a profiled run never overwrites the full run's W2."""
    from bench.__main__ import _options
    from bench._harness import LATEST_JSON, RESULTS_ENV

    monkeypatch.delenv(RESULTS_ENV, raising=False)
    assert _options(False, None, None).results_path == LATEST_JSON
    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "profiled.json"))
    assert _options(False, None, None).results_path == tmp_path / "profiled.json"
    assert _options(True, None, None).results_path == tmp_path / "profiled.json"
