"""A Pydantic AI agent run by `DurableAgent` survives a kill -9 mid-run without repeats.

A `tether serve` subprocess runs the research agent of `harness.agent_sessions`; the test
kills it with SIGKILL while the agent's email tool runs (after the first model request, three
parallel searches and the second model request are journaled), starts a new worker and waits for
the reply. The ledger the worker processes write says what ran where: every completed model
request and tool call ran once, in the first process; only the interrupted email call ran again,
with the same idempotency key, and its effect happened once.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest
from harness.agent_sessions import ONE_RESEARCH, Topic, research
from harness.session_harness import WorkerProcess, assert_eventually, settings_for, worker_env

from actors import Client

pytestmark = [pytest.mark.slow]


def ledger(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("backend", ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
async def test_kill_9_mid_agent_run_resumes_without_repeats(
    request: pytest.FixtureRequest, backend: str, namespace: str, tmp_path: Path
) -> None:
    settings = settings_for(request, backend, tmp_path / "data", namespace, partitions=2)
    runs, hold = tmp_path / "ledger.jsonl", tmp_path / "hold"
    hold.touch()
    env = worker_env(settings, TETHER_TEST_LEDGER=str(runs), TETHER_TEST_HOLD=str(hold))
    worker = WorkerProcess("harness.agent_sessions:researcher", env, tmp_path)
    worker.start()
    try:
        async with Client.connect(settings) as client:
            call = asyncio.create_task(client.call(research, "kill-9", Topic(topic="durable agents"), timeout=240))

            def email_started() -> None:
                assert any(r["detail"].startswith("email:") for r in ledger(runs)), worker.output()[-2000:]

            await assert_eventually(email_started, timeout=120)
            first_pid = worker.kill_and_restart(meanwhile=hold.unlink)
            reply = await call
        assert reply.text == "findings from web, news, papers"
        assert reply.usage_tokens == 150
    except BaseException:
        print(worker.logs())
        raise
    finally:
        worker.cleanup()
    lines = ledger(runs)
    done = Counter((r["kind"], r["detail"]) for r in lines if not r["detail"].startswith("email:"))
    assert done == ONE_RESEARCH, lines
    before_kill = {r["detail"] for r in lines if r["pid"] == first_pid}
    assert {"0", "1", "search:web", "search:news", "search:papers"} <= before_kill
    emails = [r for r in lines if r["detail"].startswith("email:")]
    started = [r for r in emails if r["kind"] == "tool"]
    effects = [r for r in emails if r["kind"] == "effect"]
    assert len(started) == 2 and started[0]["pid"] == first_pid != started[1]["pid"], emails
    assert len({r["detail"] for r in emails}) == 1, "the repeated call carries the same idempotency key"
    assert len(effects) == 1 and effects[0]["pid"] != first_pid
