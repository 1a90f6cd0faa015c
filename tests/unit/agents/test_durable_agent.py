"""A Pydantic AI agent run by `DurableAgent` on the embedded log: every model request and tool
call is a journaled step, a handler retry and a worker restart repeat none that completed, the
messages keep their types, usage is charged to the budget and shown in the history."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from harness import agent_sessions as a
from harness.session_harness import WAIT, make_settings, open_runtime

from actors import InvocationError
from actors.inspection.views import session_history


@pytest.fixture(autouse=True)
def _reset() -> None:
    a.RUNS.clear()
    a.SEEN.clear()
    a.FAIL_AFTER_RUN.clear()


def runs_without_email() -> Counter[tuple[str, str]]:
    return Counter(r for r in a.RUNS if r[0] != "effect" and not r[1].startswith("email:"))


async def test_each_model_request_and_tool_call_is_a_step(tmp_path: Path, namespace: str) -> None:
    settings = make_settings("embedded", tmp_path, namespace, partitions=1)
    async with open_runtime([a.researcher], settings) as rt:
        reply = await rt.client.call(a.research, "s1", a.Topic(topic="durable agents"), timeout=WAIT)
        assert reply.text == "findings from web, news, papers"
        assert reply.usage_tokens == 150
        history = await session_history(settings, "researcher", "s1")
    steps = [e["name"] for e in history if e["kind"] == "step"]
    # the three parallel searches journal in the model's order, every run the same
    assert steps == [
        "researcher:model",
        "researcher:tool:search:search-web",
        "researcher:tool:search:search-news",
        "researcher:tool:search:search-papers",
        "researcher:model",
        "researcher:tool:send_email:email",
        "researcher:model",
    ]
    model_steps = [e for e in history if e["name"] == "researcher:model"]
    assert [e["result"]["usage"] for e in model_steps] == [{"input_tokens": 40, "output_tokens": 10}] * 3
    assert [e["result"]["cost"] for e in model_steps] == [50.0] * 3
    assert runs_without_email() == a.ONE_RESEARCH


async def test_a_handler_retry_replays_the_run_without_repeating_it(tmp_path: Path, namespace: str) -> None:
    settings = make_settings("embedded", tmp_path, namespace, partitions=1)
    a.FAIL_AFTER_RUN.add("s2")
    async with open_runtime([a.researcher], settings) as rt:
        reply = await rt.client.call(a.research, "s2", a.Topic(topic="durable agents"), timeout=WAIT)
    assert reply.messages == 6 and reply.usage_tokens == 150
    assert len(a.SEEN) == 2, "the handler ran twice"
    assert a.SEEN[0] == a.SEEN[1], "the replayed messages have the same types"
    assert a.SEEN[0][1] == "ModelResponse:ToolCallPart,ToolCallPart,ToolCallPart"
    assert runs_without_email() == a.ONE_RESEARCH  # nothing ran twice
    emails = [r for r in a.RUNS if r[0] == "effect"]
    assert len(emails) == 1 and emails[0][1].startswith("email:inv_")


async def test_a_worker_restart_mid_run_resumes_without_repeats(
    tmp_path: Path, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = tmp_path / "hold"
    hold.touch()
    monkeypatch.setenv("TETHER_TEST_HOLD", str(hold))
    settings = make_settings("embedded", tmp_path, namespace, partitions=1)
    async with open_runtime([a.researcher], settings) as rt:
        call = asyncio.create_task(rt.client.call(a.research, "s3", a.Topic(topic="x"), timeout=60))
        while not any(r[1].startswith("email:") for r in a.RUNS):
            await asyncio.sleep(0.02)
        stop = asyncio.create_task(rt.stop_worker())  # the email tool is waiting: stop cancels it
        await asyncio.sleep(0.3)
        hold.unlink()
        await stop
        await rt.start_worker()
        reply = await call
    assert reply.text == "findings from web, news, papers"
    assert runs_without_email() == a.ONE_RESEARCH  # the first model request and searches ran once
    started = [r[1] for r in a.RUNS if r[0] == "tool" and r[1].startswith("email:")]
    assert len(started) == 2, "the interrupted email call (not journaled) ran again on the new worker"
    assert len(set(started)) == 1, "with the same idempotency key"


async def test_a_cost_cap_stops_a_runaway_agent(tmp_path: Path, namespace: str) -> None:
    settings = make_settings("embedded", tmp_path, namespace, partitions=1)
    async with open_runtime([a.researcher], settings) as rt:
        with pytest.raises(InvocationError, match="exceeds the invocation budget of 60"):
            await rt.client.call(a.research_capped, "s4", a.Topic(topic="x"), timeout=WAIT)
    assert [r for r in a.RUNS if r[0] == "model"] == [("model", "0"), ("model", "1")]  # no third request
    assert not [r for r in a.RUNS if r[0] == "effect"], "the email after the second response never ran"


async def test_sessions_run_one_durable_agent_concurrently(tmp_path: Path, namespace: str) -> None:
    settings = make_settings("embedded", tmp_path, namespace, partitions=2)
    async with open_runtime([a.researcher], settings) as rt:
        keys = [f"c{n}" for n in range(6)]
        replies = await asyncio.gather(
            *(rt.client.call(a.research, key, a.Topic(topic=key), timeout=WAIT) for key in keys)
        )
    assert [r.text for r in replies] == ["findings from web, news, papers"] * 6
    assert Counter(kind for kind, _ in a.RUNS)["model"] == 3 * 6
    keys_seen = {detail for kind, detail in a.RUNS if kind == "effect"}
    assert len(keys_seen) == 6, "each session's email call has its own idempotency key"
