"""Dead letters end to end: a real worker dead-letters messages; list, stats, show, replay, discard.

Runs on the embedded log and on the real Kafka broker. The session type (`harness.order_sessions`)
fails for "bad" orders until its `CAUSE` is fixed: that is "fixing the cause" before a replay.
State is read back through the client, so "applied once" is what the session folded.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner
from harness import order_sessions
from harness.order_sessions import orders

from actors import Client, Settings, Worker
from actors.messages import session_key
from dlq import DeadLetter, DeadLetters, Filter, NoMatchError, ReplayTarget, UnknownDeadLetterError
from dlq.cli import dlq as dlq_cli
from eventstore import KafkaSettings, OutRecord, Topics, TopicSpec, open_log, partition_for

T = TypeVar("T")
WAIT = 60.0


@pytest.fixture(autouse=True)
def unfixed() -> Iterator[None]:
    order_sessions.CAUSE.reset()
    yield
    order_sessions.CAUSE.reset()


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def settings(request: pytest.FixtureRequest, tmp_path: Path, namespace: str) -> Settings:
    if request.param == "embedded":
        return Settings(namespace=namespace, data_dir=tmp_path, partitions=2, backend="embedded")
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    return Settings(
        namespace=namespace,
        partitions=2,
        backend="kafka",
        data_dir=tmp_path,  # where the dead-letter index goes
        kafka=KafkaSettings(bootstrap_servers=bootstrap, client_id="dlq-test"),
    )


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll `probe` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + WAIT
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


async def count_letters(dead: DeadLetters, n: int) -> list[DeadLetter]:
    async def probe() -> list[DeadLetter] | None:
        try:
            letters = await dead.all()
        except Exception:  # the topic may not be visible yet
            return None
        return letters if len(letters) >= n else None

    return await eventually(probe, f"{n} dead letters")


async def applied_of(client: Client, key: str) -> list[int]:
    state = await client.state("orders", key, timeout=WAIT)
    return list(state["state"]["applied"])


async def wait_applied(client: Client, key: str, expected: list[int]) -> None:
    async def probe() -> bool:
        return await applied_of(client, key) == expected

    await eventually(probe, f"orders/{key} to have applied {expected}")


async def append_poison(settings: Settings, key: str) -> None:
    log = open_log(settings)
    await log.start()
    try:
        topics = Topics(settings.namespace)
        record_key = session_key("orders", key)
        count = await log.partition_count(topics.inbox)
        await log.append([OutRecord(topics.inbox, partition_for(record_key, count), record_key, b"\xc1junk")])
    finally:
        await log.close()


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[tuple[Worker, Client]]:
    async with Worker([orders], settings) as worker, Client.connect(settings) as client:
        yield worker, client


async def test_inspect_replay_and_discard(settings: Settings, running: tuple[Worker, Client]) -> None:
    _, client = running
    await client.send_raw("orders", "k0", "apply", {"n": 0})
    for n in (1, 2, 3):
        await client.send_raw("orders", f"k{n}", "apply", {"n": n, "bad": True})
    await client.send_raw("orders", "k4", "flaky", {"n": 4})
    await append_poison(settings, "p")
    await wait_applied(client, "k0", [0])

    async with DeadLetters(settings) as dead:
        letters = await count_letters(dead, 5)
        by_category = {x.category: x for x in letters}
        assert sorted(x.category for x in letters) == [
            "exhausted",
            "poison",
            "terminal",
            "terminal",
            "terminal",
        ]
        terminal = await dead.list(Filter(categories=("terminal",)))
        assert sorted(x.object_key or "" for x in terminal) == ["k1", "k2", "k3"]
        assert all(x.status == "pending" and x.attempts == 1 for x in terminal)
        assert [x.object_key for x in await dead.list(Filter.session("orders/k2"))] == ["k2"]
        assert len(await dead.list(Filter(handlers=("orders.flaky",)))) == 1
        with pytest.raises(NoMatchError, match="handler=nope"):
            await dead.list(Filter(handlers=("nope",)))

        exhausted = by_category["exhausted"]
        assert exhausted.attempts == 2 and exhausted.error_class == "ValueError"
        assert exhausted.first_failure_ms and exhausted.last_failure_ms
        assert exhausted.first_failure_ms <= exhausted.last_failure_ms
        poison = by_category["poison"]
        assert poison.poison and poison.session == "orders/p" and poison.handler is None

        stats = await dead.stats(by=["error_class"])
        assert {r.error_class: r.count for r in stats} == {
            "TerminalError": 3,
            "ValueError": 1,
            "EnvelopeDecodeError": 1,
        }
        by_default = await dead.stats()  # error class and handler
        assert {(r.error_class, r.handler, r.count) for r in by_default} == {
            ("TerminalError", "orders.apply", 3),
            ("ValueError", "orders.flaky", 1),
            ("EnvelopeDecodeError", "orders.(none)", 1),
        }
        grouped = await dead.stats(by=["error_class", "handler", "message"])
        assert len(grouped) == 5  # the first message line differs per bad order
        first_lines = {r.message for r in grouped}
        assert "bad order 1" in first_lines and "flaky 4" in first_lines

        k1 = next(x for x in terminal if x.object_key == "k1")
        shown = await dead.show(k1.id)
        assert shown.payload == {"n": 1, "bad": True}
        assert shown.stacktrace and "TerminalError" in shown.stacktrace
        assert shown.original_topic == Topics(settings.namespace).inbox
        with pytest.raises(UnknownDeadLetterError):
            await dead.show("0-99999")
        with pytest.raises(UnknownDeadLetterError):
            await dead.show("garbage")

        # Fix the cause, then replay the terminal failures: each is applied once.
        order_sessions.CAUSE.fix()
        report = await dead.replay(where=Filter(error_classes=("TerminalError",)))
        assert report.ok and report.counts["replayed"] == 3
        for n in (1, 2, 3):
            await wait_applied(client, f"k{n}", [n])
        again = await dead.replay([x.id for x in terminal])
        assert again.counts == {"replayed": 0, "skipped": 3, "failed": 0}
        assert all((i.reason or "").startswith("already replayed") for i in again.items)

        # Even a resend that bypasses the status (a crash between send and status record) is
        # answered by the session's dedupe window, not applied again.
        await client.send_raw("orders", "k1", "apply", {"n": 1, "bad": True}, idempotency_key=k1.replay_message_id)
        await client.send_raw("orders", "k1", "apply", {"n": 100})
        await wait_applied(client, "k1", [1, 100])

        # Discard the poison record: resolved, audited, not deleted.
        discarded = await dead.discard([poison.id], reason="garbage from a test producer")
        assert discarded.counts == {"discarded": 1, "skipped": 0, "failed": 0}
        shown = await dead.show(poison.id)
        assert shown.status == "discarded" and shown.resolution is not None
        assert shown.resolution.reason == "garbage from a test producer"
        assert "@" in shown.resolution.by
        assert [x.id for x in await dead.list(Filter(statuses=("discarded",)))] == [poison.id]
        again = await dead.discard([poison.id], reason="twice")
        assert again.counts["skipped"] == 1

        # Replay everything: the resolved ones are skipped; the flaky one fails again and comes
        # back as a new dead letter that names what it replayed.
        everything = await dead.replay()
        outcomes = {i.id: i.outcome for i in everything.items}
        assert outcomes[exhausted.id] == "replayed"
        assert outcomes[poison.id] == "skipped"
        assert [outcomes[x.id] for x in terminal] == ["skipped"] * 3
        letters = await count_letters(dead, 6)
        assert letters[-1].replay_of == exhausted.id
        assert letters[-1].message_id == f"dlq-replay:{exhausted.id}"
        assert (await dead.show(exhausted.id)).status == "replayed"

    # Statuses are durable on the log: a new reader sees them.
    async with DeadLetters(settings) as dead:
        statuses = {x.id: x.status for x in await dead.all()}
        assert statuses[poison.id] == "discarded"
        assert [statuses[x.id] for x in terminal] == ["replayed"] * 3
        assert statuses[letters[-1].id] == "pending"


async def test_interrupted_replay_resumes(settings: Settings, running: tuple[Worker, Client]) -> None:
    _, client = running
    for n in range(5):
        await client.send_raw("orders", f"r{n}", "apply", {"n": n, "bad": True})
    for n in range(5, 10):
        await client.send_raw("orders", f"s{n}", "apply", {"n": n, "bad": True})
    async with DeadLetters(settings) as dead:
        letters = await count_letters(dead, 10)
        first_batch = [x.id for x in letters if (x.object_key or "").startswith("r")]
        second_batch = [x.id for x in letters if (x.object_key or "").startswith("s")]
        order_sessions.CAUSE.fix()

        # A transform that raises on the third item: that item fails, the rest goes on.
        seen: list[str] = []

        def third_fails(payload: dict[str, Any], letter: DeadLetter) -> dict[str, Any]:
            seen.append(letter.id)
            if len(seen) == 3:
                raise RuntimeError("cannot transform this one")
            return payload

        report = await dead.replay(first_batch, transform=third_fails)
        assert [i.outcome for i in report.items] == [
            "replayed",
            "replayed",
            "failed",
            "replayed",
            "replayed",
        ]
        assert "RuntimeError: cannot transform this one" in (report.items[2].reason or "")
        resumed = await dead.replay(first_batch)
        assert resumed.counts == {"replayed": 1, "skipped": 4, "failed": 0}
        assert [i.outcome for i in resumed.items][2] == "replayed"

        # A replay cut off mid-way (Ctrl-C) resumes where it stopped when run again.
        first_done = asyncio.Event()
        task = asyncio.create_task(dead.replay(second_batch, rate=4, progress=lambda item, total: first_done.set()))
        await asyncio.wait_for(first_done.wait(), WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        done = [x for x in await dead.select(second_batch) if x.status == "replayed"]
        assert 1 <= len(done) < 5
        resumed = await dead.replay(second_batch)
        assert resumed.counts["replayed"] + resumed.counts["skipped"] == 5
        assert resumed.counts["replayed"] >= 5 - len(done) and resumed.ok

    for n in range(5):
        await wait_applied(client, f"r{n}", [n])
    for n in range(5, 10):
        await wait_applied(client, f"s{n}", [n])
    await asyncio.sleep(0.5)  # nothing more arrives later
    for n in range(10):
        assert await applied_of(client, f"{'r' if n < 5 else 's'}{n}") == [n]


# -- the CLI ---------------------------------------------------------------------------------
def cli_args(settings: Settings) -> list[str]:
    if settings.resolved_backend == "kafka":
        assert settings.kafka.bootstrap_servers
        return ["-b", settings.kafka.bootstrap_servers, "-n", settings.namespace]
    return ["--data-dir", str(settings.data_dir), "-n", settings.namespace]


def test_cli(settings: Settings, keep_logging: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def produce() -> list[DeadLetter]:
        async with Worker([orders], settings), Client.connect(settings) as client:
            await client.send_raw("orders", "c1", "apply", {"n": 1, "bad": True})
            await client.send_raw("orders", "c2", "apply", {"n": 2, "bad": True})
            await append_poison(settings, "cp")
            async with DeadLetters(settings) as dead:
                return await count_letters(dead, 3)

    letters = asyncio.run(produce())
    bad = [x for x in letters if not x.poison]
    poison = next(x for x in letters if x.poison)
    runner = CliRunner()
    common = cli_args(settings)

    def run(*args: str, code: int = 0) -> Any:
        result = runner.invoke(dlq_cli, [*args, *common], env={"COLUMNS": "200"})
        assert result.exit_code == code, (args, result.exit_code, result.output, result.exception)
        return result

    def run_json(*args: str, code: int = 0) -> Any:
        result = run(*args, "--json", code=code)
        return json.loads(result.stdout)

    listed = run_json("list")
    assert listed["total"] == 3 and {i["id"] for i in listed["items"]} == {x.id for x in letters}
    assert run_json("list", "--category", "poison")["items"][0]["id"] == poison.id
    assert run_json("list", "--limit", "1")["shown"] == 1
    nothing = run_json("list", "--handler", "nope", code=2)
    assert "no dead letter matches" in nothing["error"]["message"]
    stats = run_json("stats", "--by", "error_class")
    assert {g["error_class"]: g["count"] for g in stats["groups"]} == {
        "TerminalError": 2,
        "EnvelopeDecodeError": 1,
    }
    run_json("stats", "--by", "colour", code=2)
    shown = run_json("show", bad[0].id)
    assert shown["payload"]["bad"] is True and shown["stacktrace"]
    assert "no dead letter" in run_json("show", "0-9999", code=2)["error"]["message"]

    assert "say which dead letters" in run_json("replay", code=2)["error"]["message"]
    assert run("replay", bad[0].id, "--rate", "fast", code=2).exit_code == 2
    dry = run_json("replay", bad[0].id, "--dry-run", "--rate", "50/s")
    assert dry["dry_run"] and dry["counts"]["would-replay"] == 1
    # The poison record cannot be replayed without a transform: exit 1, the rest is replayed.
    replayed = run_json("replay", "--all", code=1)
    outcomes = {i["id"]: i["outcome"] for i in replayed["items"]}
    assert outcomes == {bad[0].id: "replayed", bad[1].id: "replayed", poison.id: "failed"}
    poison_item = next(i for i in replayed["items"] if i["id"] == poison.id)
    assert "poison record" in poison_item["reason"]
    again = run_json("replay", bad[0].id)
    assert again["counts"] == {"replayed": 0, "skipped": 1, "failed": 0}

    # A transform in a module on the path can turn the poison record into a real message.
    module = tmp_path / "dlq_cli_fix.py"
    module.write_text(
        "from dlq import ReplayTarget\n"
        "def fix(payload, letter):\n"
        "    return ReplayTarget('orders', letter.object_key, 'apply', {'n': 7})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fixed = run_json("replay", poison.id, "--transform", "dlq_cli_fix:fix", "--dry-run")
    assert fixed["counts"]["would-replay"] == 1 and fixed["items"][0]["handler"] == "apply"
    run_json("replay", poison.id, "--transform", "dlq_cli_fix:nope", code=2)

    discarded = run_json("discard", poison.id, "--reason", "junk")
    assert discarded["counts"]["discarded"] == 1
    assert run_json("list", "--status", "discarded")["items"][0]["id"] == poison.id
    assert runner.invoke(dlq_cli, ["discard", poison.id, *common]).exit_code == 2  # no --reason

    # People get tables and a progress bar; the same exit codes.
    assert bad[0].id in run("list").stdout
    assert "TerminalError" in run("stats").stdout
    assert "stack trace" in run("show", bad[1].id).stdout
    assert "skipped" in run("replay", "--all", "--status", "replayed").stdout
    run("show", "nope", code=2)

    missing = runner.invoke(dlq_cli, ["list", "--json", *common[:-1], "other-namespace"])
    assert missing.exit_code == 2 and "no dead-letter topic" in missing.stdout


def test_cli_broker_unreachable(keep_logging: None) -> None:
    result = CliRunner().invoke(dlq_cli, ["list", "--json", "-b", "127.0.0.1:1", "-n", "x"])
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout)["error"]["type"] == "LogUnavailableError"


async def test_a_spring_topic_by_time_and_by_index(settings: Settings) -> None:
    """A Spring Kafka DLT with records over ten days: --since reads from offsets-for-times, stats
    come from the index, and a replay with a transform lands in a Tether session type."""
    topic = f"{settings.namespace}-orders.DLT"
    now = int(time.time() * 1000)
    day = 86_400_000
    times = [now - (10 - n) * day for n in range(10)] + [now - 60_000, now - 30_000]
    records = []
    for n, at in enumerate(times):
        headers = (
            ("kafka_dlt-original-topic", b"orders"),
            ("kafka_dlt-original-partition", struct.pack(">i", 0)),
            ("kafka_dlt-original-offset", struct.pack(">q", 100 + n)),
            ("kafka_dlt-original-timestamp", struct.pack(">q", at - 5)),
            ("kafka_dlt-original-timestamp-type", b"CreateTime"),
            ("kafka_dlt-exception-fqcn", b"java.lang.IllegalStateException"),
            ("kafka_dlt-exception-message", f"no stock for order o-{n}".encode()),
        )
        value = json.dumps({"orderId": f"o-{n}"}).encode()
        records.append(OutRecord(topic, 0, f"o-{n}".encode(), value, headers, at))
    log = open_log(settings)
    await log.start()
    try:
        await log.create_topics([*Topics(settings.namespace).specs(settings.partitions), TopicSpec(topic, 1)])
        await log.append(records)
        assert await log.offset_for_time(topic, 0, now - 3_600_000) == 10
        assert await log.offset_for_time(topic, 0, now + day) == 12  # none: the end
    finally:
        await log.close()
    async with DeadLetters(settings, topic=topic) as dead:
        recent, total = await dead.page(Filter(since_ms=now - 3_600_000))
        assert total == 2 and [x.original_offset for x in recent] == [110, 111]
        assert recent[0].id == f"{topic}:0-10" and recent[0].producer == "spring"
        rows = await dead.stats()
        assert [(r.error_class, r.count) for r in rows] == [("IllegalStateException", 12)]
        assert dead.inspector.index is not None and dead.inspector.index.read_records == 12
        again = await dead.stats()
        assert sum(r.count for r in again) == 12 and dead.inspector.index.read_records == 0

        def to_item(payload: Any, letter: DeadLetter) -> ReplayTarget:
            return ReplayTarget("orders", json.loads(payload)["orderId"], "apply", {"n": letter.original_offset})

        report = await dead.replay(where=Filter(since_ms=now - 3_600_000), transform=to_item, dry_run=True)
        assert [i.outcome for i in report.items] == ["would-replay", "would-replay"]
        assert [i.object_key for i in report.items] == ["o-10", "o-11"]
