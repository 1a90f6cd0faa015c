"""The replayer against golden histories of the examples (tests/golden/histories, recorded with the kit).

Unchanged code replays them; a renamed step, an inserted step, a step appended after the
recorded ones and a removed wait are each reported with the recorded and the new step side
by side. The history document is a stored format: its golden files are read back here, a
re-recording gives the same bytes, and malformed or newer documents fail with a typed error.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from harness import changed_agents
from harness.cli import invoke
from harness.examples import example
from harness.golden_histories import GOLDEN, record

from actors import Settings
from actors.cli.main import build
from actors.testing import HistoryFormatError, HistoryRecord, Replayer, SessionHistory, SessionTestKit
from eventstore.errors import TetherError

quickstart = example("quickstart")
approval = example("approval_flow")
AGENT = GOLDEN / "quickstart-agent.json"
APPROVED = GOLDEN / "approval-approved.json"
TIMED_OUT = GOLDEN / "approval-timed-out.json"


async def test_unchanged_examples_replay_their_golden_histories() -> None:
    replayer = Replayer(quickstart.agent, approval.agent)
    reports = await replayer.replay_all([AGENT, APPROVED, TIMED_OUT])
    assert [r.ok for r in reports] == [True, True, True], "\n".join(r.render() for r in reports)
    # two asks; the approved publish: its suspensions (sleep, awakeable) and its end
    assert [r.invocations for r in reports] == [2, 3, 3]


async def test_a_renamed_step_is_reported_side_by_side() -> None:
    report = await Replayer(changed_agents.renamed).replay(AGENT)
    assert not report.ok
    first = report.mismatches[0]
    assert (first.kind, first.index, first.recorded, first.new) == ("step", 1, "tool:web", "tool:search")
    assert len(report.mismatches) == 2  # both recorded invocations
    text = report.render()
    assert "tool:web" in text and "tool:search" in text


async def test_an_inserted_step_is_reported() -> None:
    report = await Replayer(changed_agents.inserted).replay(AGENT)
    first = report.mismatches[0]
    assert (first.kind, first.index, first.recorded, first.new) == ("step", 1, "tool:web", "llm:check")


async def test_a_step_after_the_recorded_ones_is_reported_and_not_run() -> None:
    report = await Replayer(changed_agents.appended).replay(AGENT)
    first = report.mismatches[0]
    assert (first.kind, first.index, first.new) == ("step", 4, "email:send")
    assert first.recorded is not None and "finished" in first.recorded


async def test_a_removed_wait_is_reported() -> None:
    report = await Replayer(changed_agents.no_sleep).replay(APPROVED)
    assert not report.ok
    first = report.mismatches[0]
    assert first.kind == "step" and first.recorded == "sleep"


async def test_golden_histories_are_what_the_kit_records_now() -> None:
    recorded = await record()
    for name, history in recorded.items():
        assert history.dumps() == (GOLDEN / f"{name}.json").read_text(), (
            f"{name}: re-recorded history differs (a stored format changed? "
            "`python -m harness.golden_histories` rewrites them; review the diff)"
        )


def test_history_document_golden_bytes() -> None:
    history = SessionHistory("agent", "s1", [HistoryRecord("events", 7, b"\x81\xa1k\xa4step")])
    assert history.dumps() == (
        '{\n "format": "tether.session-history",\n "key": "s1",\n "object": "agent",\n "records": [\n  {\n'
        '   "kind": "(undecodable)",\n   "offset": 7,\n   "topic": "events",\n   "value": "gaFrpHN0ZXA="\n  }\n'
        ' ],\n "version": 1\n}\n'
    )
    assert SessionHistory.loads(history.dumps()) == history


def test_history_documents_read_back_and_bad_ones_fail_typed() -> None:
    history = SessionHistory.load(AGENT)
    assert (history.object_name, history.key) == ("agent", "s1")
    assert [r.kind for r in history.records] == ["msg", "msg"] + ["step"] * 4 + ["done"] + ["step"] * 4 + ["done"]
    assert history.records[0].message().payload == {"question": "why?"}
    assert SessionHistory.loads(history.dumps()) == history
    doc = json.loads(AGENT.read_text())
    for broken, match in [
        ({**doc, "version": 2}, "version 2"),
        ({**doc, "format": "other"}, "not a session history"),
        ({**doc, "records": [{"topic": "inbox", "offset": 0, "value": "%%%"}]}, "not base64"),
        ({**doc, "records": [{"topic": "elsewhere", "offset": 0, "value": ""}]}, "topic"),
    ]:
        with pytest.raises(HistoryFormatError, match=match):
            SessionHistory.from_json(broken)
    with pytest.raises(HistoryFormatError):
        SessionHistory.loads(b"\xff not json")
    assert issubclass(HistoryFormatError, TetherError)


async def _one_session(data_dir: Path) -> dict[str, object]:
    async with SessionTestKit(quickstart.agent, data_dir=data_dir) as kit:
        await kit.call(quickstart.ask, "s1", quickstart.Ask(question="why?"), idempotency_key="q1")
        return await kit.history(quickstart.agent, "s1")


def test_sessions_export_and_replay_check_on_the_command_line(tmp_path: Path) -> None:
    expected = asyncio.run(_one_session(tmp_path))  # the command line runs its own event loop
    settings = Settings(data_dir=tmp_path, namespace="testkit", backend="embedded")
    exported = invoke(settings, "sessions", "export", "agent", "s1")
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.output) == expected
    path = tmp_path / "s1.json"
    path.write_text(exported.output)

    missing = invoke(settings, "sessions", "export", "agent", "nobody")
    assert missing.exit_code == 2 and "no session agent/nobody" in missing.output

    from click.testing import CliRunner

    ok = CliRunner().invoke(build(), ["replay-check", "harness.changed_agents:original", str(path), str(AGENT)])
    assert ok.exit_code == 0, ok.output
    assert "no mismatch" in ok.output
    bad = CliRunner().invoke(build(), ["replay-check", "harness.changed_agents:renamed", str(AGENT)])
    assert bad.exit_code == 1
    assert "tool:web" in bad.output and "tool:search" in bad.output
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{}")
    unreadable = CliRunner().invoke(build(), ["replay-check", "harness.changed_agents:original", str(garbage)])
    assert unreadable.exit_code == 2 and "not a session history" in unreadable.output
