"""`tether serve --log-format json`: every line parses, carries its invocation, and no secret leaks.

`leaky.fail` logs an Authorization header and fails for good with an API key in its exception
message (and in its cause). The key must appear in no log line, no dead-letter header or value,
no events-topic record and not in the error the caller gets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import observed_sessions as obs
from harness.session_harness import WorkerProcess, assert_eventually, settings_for, worker_env

from actors import Client, InvocationError
from actors.messages import invocation_id
from actors.runtime.deadletters import MESSAGE_ID
from eventstore import Record, Topics, open_log

BOTH = pytest.mark.parametrize("backend", ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])


@BOTH
async def test_json_logs_parse_and_a_secret_reaches_no_log_dead_letter_or_caller(
    request: pytest.FixtureRequest, backend: str, namespace: str, tmp_path: Path
) -> None:
    settings = settings_for(request, backend, tmp_path / "data", namespace, partitions=2)
    worker = WorkerProcess(
        "harness.observed_sessions:objects", worker_env(settings), tmp_path, args=["--log-format", "json", "--json"]
    )
    worker.start()
    log = open_log(settings)
    try:
        await log.start()
        async with Client.connect(settings) as client:
            await client.call(obs.add, "k1", obs.Add(n=2), timeout=60)
            with pytest.raises(InvocationError) as caught:
                await client.call(obs.fail, "k1", obs.Note(), timeout=60, idempotency_key="leak-1")
        error = caught.value
        assert obs.SECRET not in str(error) and obs.SECRET not in repr(error) and "***" in str(error)
        topics = Topics(settings.namespace)

        async def read(topic: str) -> list[Record]:
            return [r for p in range(await log.partition_count(topic)) async for r in log.read(topic, p)]

        async def letters() -> list[Record]:
            found = [r for r in await read(topics.dlq) if r.header(MESSAGE_ID)]
            assert [r.header(MESSAGE_ID) for r in found] == [b"leak-1"]
            return found

        (letter,) = await assert_eventually(letters)
        for name, value in letter.headers:
            assert obs.SECRET.encode() not in value, name
        events = await read(topics.events)
        assert events and all(obs.SECRET.encode() not in (r.value or b"") for r in events)
    finally:
        await log.close()
        worker.stop()
    lines = [line for line in worker.output().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    assert [r for r in parsed if r.get("ready")], "no ready line (--json)"
    records = [r for r in parsed if not r.get("ready")]
    assert records and all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert obs.SECRET not in worker.output()
    leaky = [r for r in records if r.get("object") == "leaky"]
    warning = next(r for r in leaky if "Authorization" in r["message"])
    assert warning["message"] == "calling the provider with Authorization: Bearer ***"
    assert warning["namespace"] == settings.namespace and warning["key"] == "k1" and warning["handler"] == "fail"
    assert warning["invocation_id"] == invocation_id("leaky/k1", "leak-1") and warning["attempt"] == 1
    assert any("dead-lettered" in r["message"] for r in leaky)
