"""Dead letters other tools wrote, and dead letters at scale, on the embedded log.

Spring Kafka's and Kafka Connect's records are built byte for byte from their documented
formats (Spring's ``DeadLetterPublishingRecoverer``: ``ByteBuffer.putInt`` / ``putLong``
numbers; Connect's ``DeadLetterQueueReporter``: decimal text), not with Tether's encoder.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from actors import Settings, TerminalError
from actors.messages import Message, session_key
from actors.protocol import deadletter as h
from actors.runtime.deadletters import Failure, dead_letter
from dlq import GROUP_FIELDS, DeadLetter, DeadLetters, Filter, ReplayTarget, group_stats
from dlq.records import parse_id
from eventstore import EmbeddedLog, OutRecord, Record, Topics, TopicSpec

NS = "foreign"
TOPICS = Topics(NS)
DLT = "orders.DLT"
T0 = 1_714_564_800_000
TRACE = b"java.lang.IllegalStateException: no stock for sku-7\n\tat com.example.Orders.take(Orders.java:42)\n"


def spring_record(offset: int, *, partition: int = 0, original_offset: int = 1234) -> Record:
    """What Spring Kafka 3.x's DeadLetterPublishingRecoverer writes for a failed JSON order."""
    headers = (
        ("__TypeId__", b"com.example.Order"),
        ("kafka_dlt-original-topic", b"orders"),
        ("kafka_dlt-original-partition", struct.pack(">i", 2)),
        ("kafka_dlt-original-offset", struct.pack(">q", original_offset)),
        ("kafka_dlt-original-timestamp", struct.pack(">q", T0)),
        ("kafka_dlt-original-timestamp-type", b"CreateTime"),
        ("kafka_dlt-original-consumer-group", b"order-service"),
        ("kafka_dlt-exception-fqcn", b"org.springframework.kafka.listener.ListenerExecutionFailedException"),
        ("kafka_dlt-exception-cause-fqcn", b"java.lang.IllegalStateException"),
        ("kafka_dlt-exception-message", b"Listener failed; no stock for sku-7"),
        ("kafka_dlt-exception-stacktrace", TRACE),
    )
    value = json.dumps({"orderId": f"o-{offset}", "sku": "sku-7"}).encode()
    return Record(DLT, partition, offset, f"o-{offset}".encode(), value, headers, T0 + 500)


def connect_record(offset: int) -> Record:
    """What Kafka Connect's DeadLetterQueueReporter writes with errors.deadletterqueue.context.headers.enable."""
    headers = (
        ("__connect.errors.topic", b"orders"),
        ("__connect.errors.partition", b"2"),
        ("__connect.errors.offset", b"1234"),
        ("__connect.errors.connector.name", b"orders-jdbc-sink"),
        ("__connect.errors.task.id", b"0"),
        ("__connect.errors.stage", b"VALUE_CONVERTER"),
        ("__connect.errors.class.name", b"org.apache.kafka.connect.json.JsonConverter"),
        ("__connect.errors.exception.class.name", b"org.apache.kafka.connect.errors.DataException"),
        ("__connect.errors.exception.message", b"Converting byte[] to Kafka Connect data failed"),
        ("__connect.errors.exception.stacktrace", b"org.apache.kafka.connect.errors.DataException: ...\n"),
    )
    return Record(DLT, 0, offset, b"o-1", b"{not json", headers, T0 + 900)


def test_a_spring_dead_letter_parses() -> None:
    letter = DeadLetter.from_record(spring_record(7), foreign_topic=True)
    assert letter.id == "orders.DLT:0-7" and letter.producer == "spring" and letter.category == "foreign"
    assert (letter.original_topic, letter.original_partition, letter.original_offset) == ("orders", 2, 1234)
    assert letter.original_timestamp_ms == T0 and letter.original_timestamp_type == "CreateTime"
    assert letter.consumer_group == "order-service"
    assert letter.error_class == "ListenerExecutionFailedException"
    assert letter.error_cause_fqcn == "java.lang.IllegalStateException"
    assert letter.error_message == "Listener failed; no stock for sku-7" and letter.stacktrace == TRACE.decode()
    assert letter.poison and letter.raw_value() == b'{"orderId": "o-7", "sku": "sku-7"}'
    assert letter.original_headers == (("__TypeId__", b"com.example.Order"),)
    detail = letter.to_json(detail=True)
    assert ["kafka_dlt-original-offset", "1234"] in detail["headers"]  # shown as a number
    json.dumps(detail)


def test_a_kafka_connect_dead_letter_parses() -> None:
    letter = DeadLetter.from_record(connect_record(3), foreign_topic=True)
    assert letter.producer == "connect" and letter.category == "foreign"
    assert (letter.original_topic, letter.original_partition, letter.original_offset) == ("orders", 2, 1234)
    assert letter.error_fqcn == "org.apache.kafka.connect.errors.DataException"
    assert letter.error_class == "DataException"
    assert letter.error_message == "Converting byte[] to Kafka Connect data failed"
    assert letter.connect == {
        "connector": "orders-jdbc-sink",
        "task": "0",
        "stage": "VALUE_CONVERTER",
        "class": "org.apache.kafka.connect.json.JsonConverter",
    }


def test_numbers_in_every_encoding_read_back() -> None:
    # Spring's binary numbers, Tether 0.1/0.2's decimal text, a negative (no timestamp) and junk.
    for raw, expected in (
        (struct.pack(">i", 5), 5),
        (struct.pack(">q", 2**40), 2**40),
        (struct.pack(">q", -1), -1),
        (b"5", 5),
        (b"1234", 1234),  # 4 digits: decimal, not a 4-byte int
        (b"12345678", 12_345_678),  # 8 digits: decimal, not an 8-byte long
        (b"x1", None),
    ):
        decoded = h.DeadLetterHeaders.decode({h.ORIGINAL_OFFSET: raw}.get)
        assert decoded.original_offset == expected, raw


def test_tether_writes_spring_numbers_and_optionally_connect_headers() -> None:
    msg = Message(id="m1", o="orders", k="k1", h="apply", p={"n": 1}, ts=1)
    source = Record(TOPICS.inbox, 3, 7, b"orders/k1", msg.encode(), (), T0)
    failure = Failure(TerminalError("no"), "terminal", 1, T0, T0, "orders", "k1", "apply", "m1")
    plain = dead_letter(source, failure, dlq_topic=TOPICS.dlq, group="g")
    record = Record(TOPICS.dlq, 0, 0, plain.key, plain.value, plain.headers, T0)
    assert record.header(h.ORIGINAL_PARTITION) == b"\x00\x00\x00\x03"
    assert record.header(h.ORIGINAL_OFFSET) == b"\x00\x00\x00\x00\x00\x00\x00\x07"
    assert struct.unpack(">q", record.header(h.ORIGINAL_TIMESTAMP) or b"") == (T0,)
    assert record.header(h.ORIGINAL_TIMESTAMP_TYPE) == b"CreateTime"
    assert record.header(h.SCHEMA_VERSION) == b"2"
    assert not any(name.startswith(h.CONNECT_PREFIX) for name, _ in plain.headers)

    both = dead_letter(source, failure, dlq_topic=TOPICS.dlq, group="g", connect_headers=True)
    connect = {name: value for name, value in both.headers if name.startswith(h.CONNECT_PREFIX)}
    assert connect == {
        h.CONNECT_TOPIC: TOPICS.inbox.encode(),
        h.CONNECT_PARTITION: b"3",
        h.CONNECT_OFFSET: b"7",
        h.CONNECT_CONNECTOR: b"g",
        h.CONNECT_TASK_ID: b"3",
        h.CONNECT_STAGE: b"TASK_PUT",
        h.CONNECT_EXECUTING_CLASS: b"orders.apply",
        h.CONNECT_EXCEPTION: b"actors.errors.TerminalError",
        h.CONNECT_EXCEPTION_MESSAGE: b"no",
        h.CONNECT_EXCEPTION_STACKTRACE: next(v for k, v in both.headers if k == h.EXCEPTION_STACKTRACE),
    }
    letter = DeadLetter.from_record(Record(TOPICS.dlq, 0, 0, both.key, both.value, both.headers, T0))
    assert letter.producer == "tether" and letter.original_offset == 7 and letter.message == msg
    assert letter.original_headers == ()  # Connect's headers are dead-letter headers too


def settings_for(tmp_path: Path) -> Settings:
    return Settings(namespace=NS, data_dir=tmp_path, partitions=2, backend="embedded")


def to_order(payload: Any, letter: DeadLetter) -> ReplayTarget:
    order = json.loads(payload)
    return ReplayTarget("orders", order["orderId"], "apply", {"sku": order["sku"], "from": letter.id})


async def test_a_spring_topic_is_inspected_and_replayed_into_a_session_type(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    log = EmbeddedLog(tmp_path)
    await log.start()
    try:
        await log.create_topics(TOPICS.specs(2))
        await log.create_topics([TopicSpec(DLT, 1)])
        await log.append([OutRecord(DLT, 0, r.key, r.value, r.headers) for r in map(spring_record, range(3))])
        async with DeadLetters(settings, log=log, topic=DLT) as dead:
            letters = await dead.list()
            assert [x.id for x in letters] == ["orders.DLT:0-0", "orders.DLT:0-1", "orders.DLT:0-2"]
            assert (await dead.show("orders.DLT:0-1")).original_offset == 1234
            rows = await dead.stats()
            assert [(r.error_class, r.handler, r.count) for r in rows] == [
                ("ListenerExecutionFailedException", "(none)", 3)
            ]
            without = await dead.replay(["orders.DLT:0-0"], dry_run=True)
            assert without.items[0].outcome == "failed"  # not a Tether message: a transform is needed
            report = await dead.replay(where=Filter(), transform=to_order)
            assert report.ok and report.counts["replayed"] == 3
            again = await dead.replay(transform=to_order)
            assert again.counts["skipped"] == 3  # once only
        sent = []
        for p in range(2):
            async for record in log.read(TOPICS.inbox, p):
                message = Message.decode(record.value)
                sent.append((record.key, message.id, message.handler, message.payload))
        assert sorted(sent) == [
            (
                session_key("orders", f"o-{n}"),
                f"dlq-replay:orders.DLT:0-{n}",
                "apply",
                {"sku": "sku-7", "from": f"orders.DLT:0-{n}"},
            )
            for n in range(3)
        ]
    finally:
        await log.close()


async def write_letters(log: EmbeddedLog, count: int, *, start_ms: int, step_ms: int) -> None:
    out = []
    for n in range(count):
        msg = Message(id=f"m{n}", o="orders", k=f"k{n % 7}", h=("apply", "charge")[n % 2], p={"n": n}, ts=1)
        source = Record(TOPICS.inbox, 0, n, b"orders/k", msg.encode(), (), start_ms)
        exc = (TerminalError, ValueError, KeyError)[n % 3](f"item {n} failed at offset {n}")
        failure = Failure(
            exc, "terminal", 1, start_ms + n * step_ms, start_ms + n * step_ms, "orders", msg.key, msg.handler, msg.id
        )
        letter = dead_letter(source, failure, dlq_topic=TOPICS.dlq, group="g")
        out.append(OutRecord(letter.topic, 0, letter.key, letter.value, letter.headers, start_ms + n * step_ms))
    await log.append(out)


async def test_the_index_agrees_with_a_full_scan_and_catches_up(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    log = EmbeddedLog(tmp_path)
    await log.start()
    try:
        await log.create_topics(TOPICS.specs(2))
        await write_letters(log, 60, start_ms=T0, step_ms=1000)
        async with DeadLetters(settings, log=log) as dead:
            everything = await dead.all()
            await dead.discard(["0-2", "0-5"], reason="test")
            scanned = group_stats(await dead.all())
            indexed = await dead.stats()
            assert [r.model_dump() for r in indexed] == [r.model_dump() for r in scanned]
            assert dead.inspector.index is not None and dead.inspector.index.read_records == 60
            # Filtered stats take the row-level path; they agree too.
            charges = Filter(handlers=("charge",), statuses=("pending",))
            filtered = group_stats([x for x in await dead.all() if charges.matches(x)])
            assert [r.model_dump() for r in await dead.stats(charges)] == [r.model_dump() for r in filtered]
            by_all = await dead.stats(by=GROUP_FIELDS)
            assert len(by_all) == 60  # a message per letter: why the default leaves it out
            where = Filter(handlers=("charge",), statuses=("pending",))
            letters, total = await dead.page(where, limit=5)
            expected = [x for x in await dead.all() if where.matches(x)]
            assert total == len(expected) == 29  # 30 charges, one discarded
            assert [x.id for x in letters] == [x.id for x in expected[-5:]]  # the latest, in log order
            assert os.stat(dead.inspector.index.path).st_mode & 0o777 == 0o600
            assert os.stat(dead.inspector.index.path.parent).st_mode & 0o777 == 0o700

            # New dead letters: only they are read.
            await write_letters(log, 4, start_ms=T0 + 100_000, step_ms=1)
            rows = await dead.stats()
            assert dead.inspector.index.read_records == 4
            assert sum(r.count for r in rows) == len(everything) + 4
    finally:
        await log.close()


def retain_from(log: EmbeddedLog, offset: int) -> None:
    """What Kafka's retention does to partition 0 of the dead-letter topic: records before `offset` go."""
    log.db.execute("DELETE FROM records WHERE topic = ? AND partition = 0 AND offset < ?", (TOPICS.dlq, offset))


async def test_letters_removed_by_retention_leave_the_index(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    log = EmbeddedLog(tmp_path)
    await log.start()
    try:
        await log.create_topics(TOPICS.specs(2))
        await write_letters(log, 20, start_ms=T0, step_ms=1000)
        async with DeadLetters(settings, log=log) as dead:
            assert sum(r.count for r in await dead.stats()) == 20  # indexed
            retain_from(log, 8)
            rows = await dead.stats()
            assert sum(r.count for r in rows) == 12
            assert min(r.first_seen_ms for r in rows) == T0 + 8 * 1000, "the groups are counted again"
            letters, total = await dead.page(Filter(), limit=100)
            assert total == 12 and [x.id for x in letters] == [f"0-{n}" for n in range(8, 20)]
            assert dead.inspector.index is not None and dead.inspector.index.read_records == 0, "nothing re-read"
            retain_from(log, 20)  # every indexed letter is gone, the last one too
            await write_letters(log, 3, start_ms=T0 + 100_000, step_ms=1)
            letters, total = await dead.page(Filter(), limit=100)
            assert total == 3 and [x.id for x in letters] == ["0-20", "0-21", "0-22"]
            assert sum(r.count for r in await dead.stats()) == 3
    finally:
        await log.close()


async def test_an_index_of_another_log_is_rebuilt_not_trusted(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "log")
    log = EmbeddedLog(tmp_path / "log")
    await log.start()
    try:
        await log.create_topics(TOPICS.specs(2))
        await write_letters(log, 10, start_ms=T0, step_ms=1000)
        async with DeadLetters(settings, log=log) as dead:
            assert sum(r.count for r in await dead.stats()) == 10
            index_file = dead.inspector.index.path if dead.inspector.index else None
    finally:
        await log.close()
    # The log is deleted and written again with other dead letters; the index file stays.
    for path in (tmp_path / "log").glob("log.sqlite3*"):
        path.unlink()
    log = EmbeddedLog(tmp_path / "log")
    await log.start()
    try:
        await log.create_topics(TOPICS.specs(2))
        await write_letters(log, 12, start_ms=T0 + 5, step_ms=3)
        async with DeadLetters(settings, log=log) as dead:
            assert dead.inspector.index is not None and dead.inspector.index.path == index_file
            rows = await dead.stats()
            assert sum(r.count for r in rows) == 12
            assert dead.inspector.index.read_records == 12  # rebuilt from the start
    finally:
        await log.close()


async def test_a_time_filter_reads_only_its_range(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    log = EmbeddedLog(tmp_path)
    await log.start()
    try:
        await log.create_topics(TOPICS.specs(2))
        hour = 3_600_000
        await write_letters(log, 40, start_ms=T0, step_ms=hour)  # one an hour, oldest first
        assert await log.offset_for_time(TOPICS.dlq, 0, 0) == 0
        assert await log.offset_for_time(TOPICS.dlq, 0, T0 + 100 * hour) == 40  # none: the end
        assert await log.offset_for_time(TOPICS.dlq, 0, T0 + 30 * hour) == 30
        assert await log.offset_for_time(TOPICS.dlq, 0, T0 + 30 * hour + 1) == 31
        reads: list[tuple[int, int]] = []
        real_read = log.read

        def counting_read(topic: str, partition: int, start: int = 0, end: int | None = None) -> Any:
            if topic == TOPICS.dlq:
                reads.append((partition, start))
            return real_read(topic, partition, start, end)

        log.read = counting_read  # type: ignore[method-assign]
        async with DeadLetters(settings, log=log) as dead:
            since = T0 + 30 * hour
            letters, total = await dead.page(Filter(since_ms=since), limit=100)
            assert total == 10 and all(x.seen_ms >= since for x in letters)
            assert reads == [(0, 30)]  # from offsets-for-times (minus the skew), not from 0
            assert len(await dead.list(Filter(since_ms=since))) == 10
            report = await dead.replay(where=Filter(since_ms=since), dry_run=True)
            assert report.counts["would-replay"] == 10
    finally:
        await log.close()


@pytest.mark.parametrize("bad", ["1-x", "orders.DLT:0-1"])
def test_ids_of_another_topic_are_not_ids_of_this_one(bad: str) -> None:
    assert parse_id(bad) is None
    assert parse_id("orders.DLT:0-1", DLT) == (0, 1) and parse_id("0-1", DLT) is None


async def test_a_damaged_index_is_not_a_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(tmp_path)
    log = EmbeddedLog(tmp_path)
    await log.start()
    try:
        await log.create_topics(TOPICS.specs(2))
        await write_letters(log, 9, start_ms=T0, step_ms=1000)
        async with DeadLetters(settings, log=log) as dead:
            assert sum(r.count for r in await dead.stats()) == 9  # builds the index
            assert dead.inspector.index is not None
            path = dead.inspector.index.path
        path.write_bytes(b"this is not a SQLite file" * 100)
        for name in (path.name + "-wal", path.name + "-shm"):
            (path.parent / name).unlink(missing_ok=True)
        async with DeadLetters(settings, log=log) as dead:
            assert sum(r.count for r in await dead.stats()) == 9  # from the topic itself
            letters, total = await dead.page(limit=3)
            assert total == 9 and [x.id for x in letters] == ["0-6", "0-7", "0-8"]
        assert "unusable" in caplog.text and str(path) in caplog.text
    finally:
        await log.close()


def test_the_index_summary_reads_what_the_full_decode_reads() -> None:
    """`DeadLetterSummary` (the index's rows) reads 9 headers alone; they agree with the full decode."""
    from harness import golden_formats as golden

    from actors.protocol.deadletter import DeadLetterHeaders, DeadLetterSummary

    tether = dead_letter(
        Record(TOPICS.inbox, 0, 3, b"orders/k", b"x", (), T0),
        Failure(ValueError("bad\nline two"), "terminal", 2, T0, T0 + 5, "orders", "k", "apply", "m1"),
        dlq_topic=TOPICS.dlq,
        group="g",
    )
    forms = [tether.headers, spring_record(0).headers, connect_record(1).headers]
    forms += [tuple(golden.DEAD_LETTER_HEADERS), tuple(golden.DEAD_LETTER_HEADERS_V2)]
    for headers in forms:
        get = dict(headers).get
        full, summary = DeadLetterHeaders.decode(get), DeadLetterSummary.decode(get)
        for field in DeadLetterSummary.__dataclass_fields__:
            assert getattr(summary, field) == getattr(full, field), (field, headers)
