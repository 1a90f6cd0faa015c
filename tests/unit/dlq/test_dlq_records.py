"""Dead-letter parsing, filters, grouping, statuses and reports, on records built by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import dlq
from actors import Settings, TerminalError
from actors.messages import Message, session_key
from actors.runtime.deadletters import Failure, dead_letter
from dlq import DeadLetter, Filter, Resolution, group_stats, parse_time
from dlq.records import parse_id, render_bytes
from dlq.replayer import POISON, Replayer, ReplayTarget, Transform
from dlq.reports import ItemResult, Report
from dlq.status import StatusStore, decode, resolve
from eventstore import EmbeddedLog, OutRecord, Record, Topics

NS = "unit"
TOPICS = Topics(NS)


def message(key: str = "k1", handler: str = "apply", payload: Any = None, mid: str = "m1") -> Message:
    return Message(id=mid, o="orders", k=key, h=handler, p=payload if payload is not None else {"n": 1}, ts=1)


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def letter_record(
    source: Record,
    failure: Failure,
    *,
    offset: int,
    partition: int = 0,
    timestamp_ms: int = 1_700_000_000_000,
) -> Record:
    out = dead_letter(source, failure, dlq_topic=TOPICS.dlq, group=TOPICS.group())
    return Record(out.topic, partition, offset, out.key, out.value, out.headers, timestamp_ms=timestamp_ms)


def inbox_record(msg: Message, offset: int = 7, headers: tuple[tuple[str, bytes], ...] = ()) -> Record:
    return Record(TOPICS.inbox, 3, offset, session_key(msg.object, msg.key), msg.encode(), headers, 1234)


def failed(
    msg: Message,
    exc: BaseException,
    *,
    offset: int,
    category: str = "terminal",
    attempts: int = 1,
    first: int = 1_700_000_000_000,
    last: int = 1_700_000_000_000,
) -> DeadLetter:
    failure = Failure(raised(exc), category, attempts, first, last, msg.object, msg.key, msg.handler, msg.id)
    return DeadLetter.from_record(letter_record(inbox_record(msg), failure, offset=offset))


# -- parsing ---------------------------------------------------------------------------------
def test_parses_every_header_of_a_runtime_dead_letter() -> None:
    msg = message(payload={"n": 5, "bad": True})
    source = inbox_record(msg, headers=(("trace-id", b"abc"),))
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise TerminalError("bad item 5\nsecond line") from inner
    except TerminalError as exc:
        failure = Failure(exc, "exhausted", 3, 1_000, 2_000, "orders", "k1", "apply", "m1")
    letter = DeadLetter.from_record(letter_record(source, failure, offset=12))

    assert letter.id == "0-12"
    assert (letter.original_topic, letter.original_partition, letter.original_offset) == (
        TOPICS.inbox,
        3,
        7,
    )
    assert letter.original_timestamp_ms == 1234
    assert letter.consumer_group == TOPICS.group()
    assert letter.key == b"orders/k1" and letter.value == msg.encode()
    assert letter.message == msg and letter.payload == {"n": 5, "bad": True}
    assert not letter.poison and letter.decode_error is None
    assert letter.error_class == "TerminalError"
    assert letter.error_fqcn == "actors.errors.TerminalError"
    assert letter.error_cause_fqcn == "builtins.KeyError"
    assert letter.error_message == "bad item 5\nsecond line"
    assert letter.summary_line == "bad item 5"
    assert letter.stacktrace is not None and "TerminalError" in letter.stacktrace
    assert (letter.attempts, letter.first_failure_ms, letter.last_failure_ms) == (3, 1_000, 2_000)
    assert (letter.object_name, letter.object_key, letter.handler) == ("orders", "k1", "apply")
    assert letter.session == "orders/k1"
    assert letter.category == "exhausted" and letter.status == "pending"
    assert letter.message_id == "m1" and letter.replay_of is None
    assert letter.replay_message_id == "dlq-replay:0-12"
    assert letter.original_headers == (("trace-id", b"abc"),)

    summary = letter.to_json()
    assert summary["error_message"] == "bad item 5"
    assert "stacktrace" not in summary and "payload" not in summary
    detail = letter.to_json(detail=True)
    assert detail["payload"] == {"n": 5, "bad": True}
    assert ["trace-id", "abc"] in detail["headers"]
    assert detail["last_failure"] == "1970-01-01T00:00:02.000+00:00"
    json.dumps(detail)  # JSON-ready as it is


def test_poison_record_parses_with_the_session_from_its_key() -> None:
    source = Record(TOPICS.inbox, 1, 4, b"orders/k9", b"\xc1\xff not msgpack", (), 99)
    exc = raised(ValueError("not valid msgpack"))
    letter = DeadLetter.from_record(letter_record(source, Failure(exc, "poison"), offset=3))
    assert letter.poison and letter.message is None and letter.payload is None
    assert letter.decode_error and "msgpack" in letter.decode_error
    assert letter.category == "poison"
    assert (letter.object_name, letter.object_key, letter.handler) == ("orders", "k9", None)
    assert letter.raw_value() == b"\xc1\xff not msgpack"
    detail = letter.to_json(detail=True)
    assert detail["record_value"].startswith("base64:")
    json.dumps(detail)


def test_spring_only_headers_parse_too() -> None:
    headers = (
        ("kafka_dlt-original-topic", b"payments"),
        ("kafka_dlt-original-partition", b"2"),
        ("kafka_dlt-original-offset", b"41"),
        ("kafka_dlt-exception-fqcn", b"com.example.BoomException"),
        ("kafka_dlt-exception-message", b"boom"),
    )
    letter = DeadLetter.from_record(Record(TOPICS.dlq, 0, 5, b"k", b"\x01", headers, 77))
    assert letter.error_class == "BoomException"
    assert letter.original_topic == "payments" and letter.original_offset == 41
    assert letter.attempts == 1 and letter.seen_ms == 77 and letter.first_seen_ms == 77
    assert letter.category == "foreign" and letter.producer == "spring"  # the value is no Tether message


def test_a_failed_replay_knows_what_it_replayed() -> None:
    letter = failed(message(mid="dlq-replay:0-3"), TerminalError("again"), offset=9)
    assert letter.replay_of == "0-3"


def test_ids_and_bytes() -> None:
    assert parse_id("0-17") == (0, 17) and parse_id(" 2-0 ") == (2, 0)
    for bad in ("17", "a-1", "0-", "-1", "0-1-2", ""):
        assert parse_id(bad) is None
    assert render_bytes(b"plain") == "plain"
    assert render_bytes(b"\xff") == "base64:/w=="
    assert render_bytes(None) is None


# -- filters ---------------------------------------------------------------------------------
@pytest.fixture
def letters() -> list[DeadLetter]:
    base = 1_700_000_000_000
    return [
        failed(message("k1"), TerminalError("bad item 1"), offset=0, last=base),
        failed(message("k2"), TerminalError("bad item 2"), offset=1, last=base + 60_000),
        failed(
            message("k1", handler="charge"),
            ValueError("card declined\ndetails"),
            offset=2,
            category="exhausted",
            attempts=3,
            first=base + 100_000,
            last=base + 120_000,
        ),
        failed(
            message("k3", handler="charge"),
            ValueError("card declined"),
            offset=3,
            first=base + 150_000,
            last=base + 180_000,
        ),
    ]


def ids(selected: list[DeadLetter]) -> list[str]:
    return [x.id for x in selected]


def test_filters(letters: list[DeadLetter]) -> None:
    base = 1_700_000_000_000

    def pick(f: Filter) -> list[str]:
        return ids([x for x in letters if f.matches(x)])

    assert pick(Filter()) == ["0-0", "0-1", "0-2", "0-3"] and Filter().empty
    assert pick(Filter.session("orders")) == ["0-0", "0-1", "0-2", "0-3"]
    assert pick(Filter.session("orders/k1")) == ["0-0", "0-2"]
    assert pick(Filter.session("other")) == []
    assert pick(Filter(handlers=("charge",))) == ["0-2", "0-3"]
    assert pick(Filter(handlers=("orders.apply",))) == ["0-0", "0-1"]
    assert pick(Filter(error_classes=("ValueError",))) == ["0-2", "0-3"]
    assert pick(Filter(error_classes=("actors.errors.TerminalError",))) == ["0-0", "0-1"]
    assert pick(Filter(error_classes=("ValueError", "TerminalError"))) == [
        "0-0",
        "0-1",
        "0-2",
        "0-3",
    ]
    assert pick(Filter(categories=("exhausted",))) == ["0-2"]
    assert pick(Filter(statuses=("pending",))) == ["0-0", "0-1", "0-2", "0-3"]
    assert pick(Filter(statuses=("replayed",))) == []
    assert pick(Filter(since_ms=base + 60_000)) == ["0-1", "0-2", "0-3"]
    assert pick(Filter(until_ms=base + 60_000)) == ["0-0"]
    assert pick(Filter(since_ms=base + 1, until_ms=base + 150_000)) == ["0-1", "0-2"]
    assert pick(Filter.session("orders/k1", handlers=("charge",))) == ["0-2"]
    described = Filter.session("orders/k1", handlers=("charge",), statuses=("pending",)).describe()
    assert "session=orders/k1" in described and "handler=charge" in described
    assert "status=pending" in described


def test_status_filter_sees_resolutions(letters: list[DeadLetter]) -> None:
    done = letters[1].with_resolution(resolve("0-1", None, "replayed", by="ops@host"))
    assert done.status == "replayed" and done.resolution is not None
    assert Filter(statuses=("replayed",)).matches(done)
    assert not Filter(statuses=("pending",)).matches(done)
    assert done.with_resolution(None).status == "pending"


def test_parse_time() -> None:
    now = 1_700_000_000.0
    assert parse_time("15m", now=now) == int((now - 900) * 1000)
    assert parse_time("2h", now=now) == int((now - 7200) * 1000)
    assert parse_time("1.5d", now=now) == int((now - 1.5 * 86400) * 1000)
    assert parse_time("1700000000000") == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20") == 1_700_000_000_000  # UTC when no zone
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_time("2023-11-15T00:13:20+02:00") == 1_700_000_000_000
    with pytest.raises(dlq.InvalidFilterError, match="cannot read 'yesterday'"):
        parse_time("yesterday")


# -- grouping --------------------------------------------------------------------------------
def test_stats_group_by_class_handler_and_first_line(letters: list[DeadLetter]) -> None:
    base = 1_700_000_000_000
    # By default: error class and handler (a message line embeds ids and keys).
    assert [(r.error_class, r.handler, r.message, r.count) for r in group_stats(letters)] == [
        ("ValueError", "orders.charge", None, 2),
        ("TerminalError", "orders.apply", None, 2),
    ]
    rows = group_stats(letters, dlq.GROUP_FIELDS)
    assert [(r.error_class, r.handler, r.message, r.count) for r in rows] == [
        ("ValueError", "orders.charge", "card declined", 2),
        ("TerminalError", "orders.apply", "bad item 2", 1),
        ("TerminalError", "orders.apply", "bad item 1", 1),
    ]
    top = rows[0]
    assert top.first_seen_ms == base + 100_000 and top.last_seen_ms == base + 180_000
    assert top.statuses == {"pending": 2, "replayed": 0, "discarded": 0}
    assert top.example_id == "0-3"
    out = top.to_json()
    assert out["first_seen"] and out["last_seen"] and out["count"] == 2

    by_class = group_stats(letters, ["error_class"])
    assert [(r.error_class, r.handler, r.count) for r in by_class] == [
        ("ValueError", None, 2),
        ("TerminalError", None, 2),
    ]
    assert "handler" not in by_class[0].to_json()
    by_handler = group_stats(letters, ["handler"])
    assert {r.handler: r.count for r in by_handler} == {"orders.apply": 2, "orders.charge": 2}
    with pytest.raises(dlq.InvalidFilterError):
        group_stats(letters, ["colour"])  # type: ignore[list-item]


# -- statuses --------------------------------------------------------------------------------
def test_resolution_keeps_its_history_and_round_trips() -> None:
    first = resolve("0-4", None, "discarded", by="ann@ops", reason="duplicate order")
    second = resolve("0-4", first, "replayed", by="bob@ops", replay_message_id="dlq-replay:0-4")
    assert second.status == "replayed" and second.by == "bob@ops"
    assert [t.status for t in second.history] == ["discarded"]
    assert second.history[0].reason == "duplicate order"
    decoded = decode(b"dlq:0-4", second.encode())
    assert decoded == ("0-4", second)
    assert json.loads(second.encode())["status"] == "replayed"  # readable by console tools
    assert decode(b"dlq:0-4", None) == ("0-4", None)  # a tombstone
    assert decode(b"saga:x", b"{}") is None  # someone else's record
    assert decode(b"dlq:0-5", b"not json") is None


async def test_status_store_latest_record_wins(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path)
    await log.start()
    try:
        await log.create_topics([s for s in TOPICS.specs(2) if s.name != TOPICS.control])
        store = StatusStore(log, TOPICS, partitions=2)
        assert await store.load() == {}  # no control topic yet: everything pending
        a = resolve("0-1", None, "discarded", by="x", reason="r")
        await store.write([a, resolve("0-2", None, "replayed", by="x")])
        await store.write([resolve("0-1", a, "replayed", by="y")])
        await log.append([OutRecord(TOPICS.control, 0, b"other:thing", b"\x00")])
        loaded = await store.load()
        assert {k: v.status for k, v in loaded.items()} == {"0-1": "replayed", "0-2": "replayed"}
        assert loaded["0-1"].history[0].reason == "r"
    finally:
        await log.close()


# -- replay planning -------------------------------------------------------------------------
async def test_dry_run_plans_transforms_poison_and_skips(letters: list[DeadLetter], tmp_path: Path) -> None:
    poison = DeadLetter.from_record(
        letter_record(
            Record(TOPICS.inbox, 0, 1, b"orders/p", b"\xc1", (), 1),
            Failure(raised(ValueError("x")), "poison"),
            offset=9,
        )
    )
    replayed = letters[0].with_resolution(resolve(letters[0].id, None, "replayed", by="x"))
    discarded = letters[1].with_resolution(resolve(letters[1].id, None, "discarded", by="x", reason="dup"))
    log = EmbeddedLog(tmp_path)  # never started: a dry run must not touch the log
    store = StatusStore(log, TOPICS, partitions=1)
    replayer = Replayer(log, Settings(namespace=NS, partitions=1), store)
    report = await replayer.replay([replayed, discarded, letters[2], poison], dry_run=True)
    outcomes = [(i.id, i.outcome) for i in report.items]
    assert outcomes == [
        ("0-0", "skipped"),
        ("0-1", "skipped"),
        ("0-2", "would-replay"),
        ("0-9", "failed"),
    ]
    assert report.items[0].reason and report.items[0].reason.startswith("already replayed")
    assert report.items[1].reason and "--include-discarded" in report.items[1].reason
    assert report.items[2].message_id == "dlq-replay:0-2"
    assert report.items[3].reason and report.items[3].reason.startswith("poison record")
    assert not report.ok and report.counts == {"would-replay": 1, "skipped": 2, "failed": 1}

    def fix(payload: Any, letter: DeadLetter) -> Any:
        if letter.poison:
            return ReplayTarget("orders", "p", "apply", {"n": 0})
        if letter.id == "0-3":
            raise RuntimeError("cannot fix this one")
        return {**payload, "fixed": True}

    report = await replayer.replay(letters + [poison], dry_run=True, transform=Transform(fix))
    assert [(i.id, i.outcome) for i in report.items] == [
        ("0-0", "would-replay"),
        ("0-1", "would-replay"),
        ("0-2", "would-replay"),
        ("0-3", "failed"),
        ("0-9", "would-replay"),
    ]
    assert report.items[3].reason and "RuntimeError: cannot fix this one" in report.items[3].reason
    assert report.items[4].session == "orders/p"
    assert report.items[0].payload == {**letters[0].payload, "fixed": True}  # what a dry run would send
    assert report.items[4].payload == {"n": 0}
    raw = ItemResult(id="0-1", outcome="would-replay", payload={"blob": b"\xc1\xff"})
    assert raw.to_json()["payload"] == {"blob": "wf8="}  # bytes that are not UTF-8 still print as JSON

    def bare(payload: Any) -> Any:
        return payload

    report = await replayer.replay([poison], dry_run=True, transform=Transform(bare))
    assert report.items[0].outcome == "failed"
    assert report.items[0].reason and "ReplayTarget" in report.items[0].reason

    def forgetful(payload: Any) -> None:
        payload["n"] = 2

    report = await replayer.replay([letters[0]], dry_run=True, transform=Transform(forgetful))
    assert report.items[0].reason and "returned None" in report.items[0].reason

    report = await replayer.replay([letters[0]], dry_run=True, transform=Transform(lambda p: {"x": object()}))
    assert report.items[0].reason and "cannot be encoded" in report.items[0].reason
    assert POISON.startswith("poison record")


def test_transform_load_errors() -> None:
    with pytest.raises(dlq.TransformLoadError, match="MODULE:FUNC"):
        Transform.load("nocolon")
    with pytest.raises(dlq.TransformLoadError, match="cannot import"):
        Transform.load("no_such_module_here:f")
    with pytest.raises(dlq.TransformLoadError, match="no attribute"):
        Transform.load("json:nope")
    assert Transform.load("json:loads").name == "json:loads"


def test_report_json_and_counts() -> None:
    report = Report(action="discard")
    assert report.ok and report.counts == {"discarded": 0, "skipped": 0, "failed": 0}
    assert json.loads(json.dumps(report.to_json()))["counts"]["discarded"] == 0


def test_exports_are_sorted_and_resolve() -> None:
    assert dlq.__all__ == sorted(dlq.__all__)
    for name in dlq.__all__:
        assert getattr(dlq, name) is not None
    assert issubclass(dlq.DlqError, dlq.TetherError)
    assert Resolution.model_fields["history"].default == ()


def test_a_replay_keeps_the_trace_context_of_the_message_that_failed() -> None:
    from actors.messages import Message, session_key
    from actors.runtime.deadletters import Failure, dead_letter
    from dlq.records import DeadLetter
    from dlq.sender import replay_message
    from eventstore import Record

    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    for tp in (traceparent, None):
        message = Message(id="m-1", o="agent", k="k1", h="ask", p={"q": 1}, ts=1, tp=tp)
        source = Record("ns.inbox", 0, 4, session_key("agent", "k1"), message.encode(), (), 1)
        letter = dead_letter(source, Failure(RuntimeError("down"), "terminal"), dlq_topic="ns.dlq", group="g")
        parsed = DeadLetter.from_record(Record("ns.dlq", 0, 9, letter.key, letter.value, letter.headers, 2))
        replay = replay_message(parsed, "agent", "k1", "ask", {"q": 1})
        assert replay.id == parsed.replay_message_id and replay.trace_parent == tp


def test_a_payload_in_the_blob_store_is_shown_as_its_reference_and_replayed_as_it() -> None:
    from dlq.sender import replay_message

    ref = "sha256:" + "cd" * 32
    big = Message(id="m9", o="orders", k="k1", h="apply", p=None, ts=1, pb=ref)
    letter = failed(big, TerminalError("the blob was missing"), offset=9)
    assert letter.payload is None and letter.payload_shown == {"blob": ref}
    assert letter.to_json(detail=True)["payload"] == {"blob": ref}
    again = replay_message(letter, "orders", "k1", "apply", letter.message.payload if letter.message else None)
    assert again.payload_blob == ref and again.payload is None  # the replay needs that blob
    changed = replay_message(letter, "orders", "k1", "apply", {"n": 2})
    assert changed.payload_blob is None and changed.payload == {"n": 2}
    plain = failed(message(), TerminalError("no"), offset=10)
    assert plain.payload_shown == {"n": 1}
    assert replay_message(plain, "orders", "k1", "apply", plain.payload).payload_blob is None
