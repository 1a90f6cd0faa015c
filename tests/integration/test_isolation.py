"""Sessions never see each other's data (issue 11), on both backends.

Idempotency keys are scoped to the session; step results keep their declared type on replay;
`ctx.state` cannot be written behind the folds' back; every record is checked against the size
limit before it is written; a caller's mistake is answered, not dead-lettered; a malformed reply
record costs no other call its reply; dedupe is a retention period, not a count.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from harness import isolation_sessions as iso
from harness.session_harness import (
    WAIT,
    Runtime,
    assert_eventually,
    cli_options,
    keys_on_partition,
    open_runtime,
    settings_for,
)

from actors import InvocationError, RuntimeSettings, UnknownHandlerError, UnknownObjectError  # noqa: E402
from actors.inspection.views import restart_invocation  # noqa: E402
from actors.runtime import deadletters as dl  # noqa: E402
from eventstore import OutRecord, unpack  # noqa: E402

BOTH = pytest.mark.parametrize("backend", ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
OBJECTS = [iso.acct, iso.typed, iso.big]


@pytest.fixture
async def rt(request: pytest.FixtureRequest, backend: str, tmp_path: Path, namespace: str) -> AsyncIterator[Runtime]:
    iso.reset()
    runtime = RuntimeSettings(idempotency_retention=3.0) if "retention" in request.node.name else None
    settings = settings_for(request, backend, tmp_path, namespace, partitions=2, runtime=runtime)
    async with open_runtime(OBJECTS, settings) as started:
        yield started


async def _steps_by_session(rt: Runtime) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {}
    for record in await rt.records(rt.topics.events):
        assert record.key is not None and record.value is not None
        entry = unpack(record.value)
        if entry["k"] == "step":
            out.setdefault(record.key.decode(), []).append(entry)
    return out


@BOTH
async def test_one_idempotency_key_on_50_sessions_stays_apart(rt: Runtime) -> None:
    keys = [f"k{n}" for n in range(50)]
    receipts = await asyncio.gather(
        *(
            rt.client.call(iso.add, key, iso.Add(by=n), timeout=WAIT, idempotency_key="order-7")
            for n, key in enumerate(keys)
        )
    )
    for n, (key, receipt) in enumerate(zip(keys, receipts, strict=True)):
        assert (receipt.key, receipt.by, receipt.step_key, receipt.total) == (key, n, key, n)
    for derived in ("invocation_id", "uuid", "random"):
        values = {getattr(r, derived) for r in receipts}
        assert len(values) == 50, f"{derived} collides across sessions: {len(values)} distinct of 50"
    assert all(iso.STEPS[f"{key}:effect"] == 1 for key in keys)
    journals = await _steps_by_session(rt)
    for key in keys:
        steps = journals[f"acct/{key}"]
        assert [s["r"]["key"] for s in steps] == [key]  # type: ignore[index]
    # The same key on one session still applies once and returns the recorded reply.
    again = await rt.client.call(iso.add, "k3", iso.Add(by=999), timeout=WAIT, idempotency_key="order-7")
    assert again == receipts[3]
    assert (await rt.state("acct", "k3"))["n"] == 3


@BOTH
async def test_step_results_keep_their_type_live_and_on_replay(rt: Runtime) -> None:
    reply = await rt.client.call(iso.gather, "t1", iso.Fetch(), timeout=WAIT)
    assert reply.kinds == ["Doc", "Hit", "Doc"]
    live, replayed = iso.SEEN
    assert (live["attempt"], replayed["attempt"]) == (1, 2)
    for seen in (live, replayed):
        assert seen["doc"] == iso.Doc(url="https://example.com", words=42)
        assert seen["hits"] == [iso.Hit("a", 0.9), iso.Hit("b", 0.5)] and dataclasses.is_dataclass(seen["hits"][0])
        assert seen["docs"] == [iso.Doc(url="u1", words=1), iso.Doc(url="u2", words=2)]
    # Across a worker restart: the new owner replays the journal from the log.
    iso.SEEN.clear()
    message_id = await rt.client.send(iso.gather, "t2", iso.Fetch(fail_first=False, gate="hold"))
    await assert_eventually(lambda: _seen(1))
    await rt.restart_worker()
    iso.gate("hold").set()
    await assert_eventually(lambda: _seen(2))
    assert iso.SEEN[0]["docs"] == iso.SEEN[1]["docs"] and type(iso.SEEN[1]["doc"]) is iso.Doc
    assert type(iso.SEEN[1]["hits"][0]) is iso.Hit
    assert message_id


@BOTH
async def test_step_results_keep_their_type_after_restart_from_a_step(rt: Runtime) -> None:
    await rt.client.call(iso.gather, "t3", iso.Fetch(fail_first=False), timeout=WAIT)
    new_id = await restart_invocation(rt.settings, "typed", "t3", from_step=2)
    await assert_eventually(lambda: _seen(2))
    live, restarted = iso.SEEN
    assert ":restart:" in new_id  # a new message that reuses the journal of steps 0 and 1
    for name in ("doc", "hits", "docs"):
        assert restarted[name] == live[name], name
        assert type(restarted[name]) is type(live[name]), name
    assert type(restarted["hits"][0]) is iso.Hit and type(restarted["docs"][0]) is iso.Doc


def _seen(count: int) -> None:
    assert len(iso.SEEN) == count, f"attempts seen: {len(iso.SEEN)}"


@BOTH
async def test_undeclared_step_type_fails_live_naming_the_step(rt: Runtime) -> None:
    with pytest.raises(InvocationError) as failed:
        await rt.client.call(iso.undeclared, "u1", iso.Fetch(), timeout=WAIT)
    text = str(failed.value)
    assert "'fetch'" in text and "result_type=" in text and "Doc" in text


@BOTH
async def test_writing_ctx_state_is_refused(rt: Runtime) -> None:
    for handler in (iso.poke_state, iso.poke_nested, iso.poke_after_emit, iso.poke_shared):
        with pytest.raises(InvocationError) as refused:
            await rt.client.call(handler, "p1", iso.Add(by=100), timeout=WAIT)
        assert refused.value.error_type == "StateMutationError"
        assert "emit an event" in str(refused.value)
    assert (await rt.state("acct", "p1")) == {"n": 0, "log": []}


@BOTH
async def test_oversized_records_fail_their_invocation_and_the_partition_goes_on(rt: Runtime) -> None:
    parts = rt.settings.partitions
    bigs = dict(zip(("step", "reply", "events"), keys_on_partition("big-", 3, parts, obj="big"), strict=True))
    neighbours = keys_on_partition("n", 100, parts, obj="acct")  # the same partition as the big ones

    async def too_big(what: str) -> InvocationError:
        with pytest.raises(InvocationError) as failed:
            await rt.client.call(iso.produce, bigs[what], iso.Size(what=what), timeout=WAIT)
        return failed.value

    async def neighbour(key: str) -> float:
        started = time.monotonic()
        assert (await rt.client.call(iso.add, key, iso.Add(by=1), timeout=WAIT)).key == key
        return time.monotonic() - started

    results = await asyncio.gather(*(too_big(w) for w in bigs), *(neighbour(k) for k in neighbours))
    errors, latencies = results[:3], results[3:]
    for error in errors:
        assert isinstance(error, InvocationError)
        assert "bytes" in str(error) and "max_message_bytes" in str(error), error
    assert len(latencies) == 100  # every neighbour answered while the three failed
    # The three failures are dead letters that name their size, as `tether dlq list` shows them.
    listed = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-c",
            "from actors.cli.main import main; main()",
            "dlq",
            "list",
            "--json",
            *cli_options(rt.settings),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    letters = {item["key"]: item for item in json.loads(listed.stdout)["items"]}
    for what, key in bigs.items():
        letter = letters[key]
        assert re.search(r"\d{7} bytes, over", letter["error_message"]), letter
        assert "max_message_bytes" in letter["error_message"], letter
        if what == "step":  # the step failed (after its retries), then the handler
            assert letter["error_class"] == "TerminalError" and "RecordTooLargeError" in letter["error_message"]
        else:
            assert letter["error_class"] == "RecordTooLargeError" and letter["category"] == "oversize", letter
            assert f"the {'reply' if what == 'reply' else '4 events'} of big/{key}.produce" in letter["error_message"]
    assert (await rt.state("big", bigs["events"]))["n"] == 0  # nothing of the failed invocation applied


@BOTH
async def test_caller_mistakes_are_answered_not_dead_lettered(rt: Runtime) -> None:
    with pytest.raises(UnknownObjectError):
        await rt.client.call_raw("acc", "k", "add", {"by": 1}, timeout=WAIT)
    with pytest.raises(UnknownHandlerError):
        await rt.client.call_raw("acct", "k", "nosuch", {"by": 1}, timeout=WAIT)
    with pytest.raises(InvocationError):
        await rt.client.call_raw("acct", "k", "add", {"by": "many"}, timeout=WAIT)
    with pytest.raises(UnknownObjectError):
        await rt.client.state("acc", "k", timeout=WAIT)
    # The same mistakes on a one-way send have no caller to tell: they are dead-lettered.
    sent = await rt.client.send_raw("acc", "k", "add", {"by": 1})
    letter = await rt.dead_letter(sent)
    assert letter.header(dl.ERROR_CLASS) == b"UnknownObjectError"
    assert [r.header(dl.MESSAGE_ID) for r in await rt.dead_letters()] == [sent.encode()]


@BOTH
async def test_a_malformed_reply_record_costs_no_other_call_its_reply(rt: Runtime) -> None:
    keys = [f"r{i}" for i in range(100)]
    gate = "replies"
    calls = [
        asyncio.ensure_future(rt.client.call(iso.add, key, iso.Add(by=1, gate=gate), timeout=WAIT)) for key in keys
    ]
    await asyncio.sleep(0.5)
    partition = rt.client._reply_partition
    garbage = [b"\xc1garbage", b"\x93\x01\x02\x03", b"", b"\x81\xa2id\xc0"]
    await rt.log.append([OutRecord(rt.topics.replies, partition, b"junk", value) for value in garbage])
    iso.gate(gate).set()
    replies = await asyncio.gather(*calls)
    assert [r.key for r in replies] == keys


@BOTH
async def test_a_retried_send_applies_once_after_1000_messages_and_a_restart(rt: Runtime) -> None:
    await rt.client.send(iso.add, "d1", iso.Add(by=1), idempotency_key="order-1")
    await rt.client.send_many(iso.add, [("d1", iso.Add(by=0)) for _ in range(1000)])
    await rt.client.send(iso.add, "d1", iso.Add(by=1), idempotency_key="order-1")
    # One session takes its 1,000 messages one at a time, each with a journaled step (two
    # transactions): on a loaded 2-core machine that is well over WAIT.
    assert (await rt.client.call(iso.add, "d1", iso.Add(by=0), timeout=240)).total == 1
    await rt.restart_worker()
    await rt.client.send(iso.add, "d1", iso.Add(by=1), idempotency_key="order-1")
    assert (await rt.client.call(iso.add, "d1", iso.Add(by=0), timeout=WAIT)).total == 1


@BOTH
async def test_an_idempotency_key_is_new_after_the_retention(rt: Runtime) -> None:
    assert rt.settings.runtime.idempotency_retention == 3.0
    await rt.client.send(iso.add, "e1", iso.Add(by=1), idempotency_key="order-1")
    await rt.client.send(iso.add, "e1", iso.Add(by=1), idempotency_key="order-1")
    assert (await rt.client.call(iso.add, "e1", iso.Add(by=0), timeout=WAIT)).total == 1
    await asyncio.sleep(3.5)
    await rt.client.send(iso.add, "e1", iso.Add(by=1), idempotency_key="order-1")
    assert (await rt.client.call(iso.add, "e1", iso.Add(by=0), timeout=WAIT)).total == 2


async def _tether(rt: Runtime, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-c",
        "from actors.cli.main import main; main()",
        args[0],
        args[1],
        *cli_options(rt.settings),
        *args[2:],
    ]
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300"}
    )


async def _end_offsets(rt: Runtime) -> dict[str, list[int]]:
    topics = rt.topics
    out = {}
    for spec in topics.specs(rt.settings.partitions):
        out[spec.name] = [await rt.log.end_offset(spec.name, p) for p in range(spec.partitions)]
    return out


@BOTH
async def test_sessions_show_of_an_unknown_type_writes_nothing(rt: Runtime) -> None:
    assert (await rt.client.call(iso.add, "k1", iso.Add(by=1), timeout=WAIT)).total == 1
    before = await _end_offsets(rt)
    shown = await _tether(rt, "sessions", "show", "acc", "k1")  # a typo of acct
    assert shown.returncode == 2, shown
    assert "acc/k1" in shown.stderr and "nothing was written" in shown.stderr
    assert (await _tether(rt, "sessions", "show", "acct", "k1")).returncode == 0
    assert await _end_offsets(rt) == before, "a read-only command wrote to a topic"


HOSTILE = "\x1b[2J\x1b]0;pwned\x07\u202e[red]x[/red]"


@BOTH
async def test_record_bytes_reach_the_terminal_escaped(rt: Runtime) -> None:
    sent = await rt.client.send_raw("acct", f"k{HOSTILE}", f"nosuch{HOSTILE}", {"note": HOSTILE})
    letter = await rt.dead_letter(sent)
    letter_id = f"{letter.partition}-{letter.offset}"
    for args in (
        ("dlq", "list"),
        ("dlq", "stats"),
        ("dlq", "show", letter_id),
        ("sessions", "history", "acct", f"k{HOSTILE}"),
    ):
        printed = await _tether(rt, *args)
        assert printed.returncode == 0, (args, printed.stderr)
        for raw in ("\x1b", "\x07", "\u202e"):
            assert raw not in printed.stdout + printed.stderr, (args, raw)
    assert "\\x1b[2J" in (await _tether(rt, "dlq", "show", letter_id)).stdout
