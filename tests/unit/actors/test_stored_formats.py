"""Stored formats that outlive releases: golden bytes of what Tether 0.1 wrote, read by today's
code (upcast), and of what it writes now (pinned).

Tether 0.1 kept a count of recent message ids per session (``rc: [[id, reply]]``), journals in
checkpoints by message id alone (``j``), and replies without their session. Since 0.2: ``rc``
items carry when the message finished, checkpoints hold journals by invocation id (``js``), and
replies name their session (``s``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from harness import isolation_sessions as iso
from harness.session_harness import WAIT, make_settings, open_runtime

from actors import Client, Settings
from actors.protocol import CHECKPOINT_KEY, Message, Reply, invocation_id, session_key
from actors.runtime.sessions import Session
from actors.runtime.waits import now_ms
from eventstore import OutRecord, Topics, pack, partition_for, unpack

DAY_MS = 86_400_000

# Written by Tether 0.1 (f0dfbbc): a snapshot, a checkpoint with one open journal, a reply.
OLD_SNAPSHOT = b"\x83\xa1s\x82\xa1n\x03\xa3log\x91\xa1a\xa2sv\x03\xa2rc\x91\x92\xa7order-7\x81\xa2ok\x81\xa1n\x03"
OLD_REPLY = b"\x82\xa2id\xa7order-7\xa2ok\x81\xa1n\x03"

# Written since 0.2.
NEW_SNAPSHOT = (
    b"\x83\xa1s\x82\xa1n\x03\xa3log\x91\xa1a\xa2sv\x03\xa2rc\x91\x93\xa7order-7\x81\xa2ok\x81\xa1n\x03"
    b"\xcf\x00\x00\x01\x8f4\x06\x9e\x00"
)
NEW_REPLY = b"\x83\xa2id\xa7order-7\xa1s\xa7acct/ka\xa2ok\x81\xa1n\x03"


def test_invocation_ids_are_pinned() -> None:
    # Effect keys in users' systems derive from these (f"{ctx.invocation_id}:{name}"): pinned.
    assert invocation_id("acct/ka", "order-7") == "inv_pzym5psuwaokm42v46afg4b6be"
    assert invocation_id("acct/kb", "order-7") == "inv_7qf3shlpe7zsfplknuipddjroa"
    message = Message(id="order-7", o="acct", k="ka", h="add", p={}, ts=0)
    assert message.invocation_id == invocation_id("acct/ka", "order-7")
    # No choice of key and id makes two sessions' ids meet (a separator would let them).
    assert invocation_id("a/b#c", "d") != invocation_id("a/b", "c#d")


def test_a_tether_0_1_snapshot_keeps_its_message_ids_for_a_retention_from_the_upgrade() -> None:
    session = Session(key=b"acct/ka", object_name="acct", snapshot=OLD_SNAPSHOT)
    before = now_ms()
    state = session.load(iso.acct, DAY_MS)
    assert state == iso.Total(n=3, log=["a"]) and session.version == 3
    assert session.recorded("order-7", now_ms(), DAY_MS) == {"ok": {"n": 3}}
    ((_, (finished, _)),) = session.recent.items()
    assert finished >= before
    assert session.recorded("order-7", finished + DAY_MS + 1, DAY_MS) is None


def test_snapshot_golden_bytes() -> None:
    session = Session(key=b"acct/ka", object_name="acct", state=iso.Total(n=3, log=["a"]), version=3)
    session.remember("order-7", {"ok": {"n": 3}}, 1_714_564_800_000, DAY_MS * 10_000)
    assert session.to_snapshot().encode() == NEW_SNAPSHOT
    again = Session(key=b"acct/ka", object_name="acct", snapshot=NEW_SNAPSHOT)
    again.load(iso.acct, DAY_MS * 10_000)
    assert again.recent == session.recent


def test_message_ids_expire_after_the_retention_oldest_first() -> None:
    session = Session(key=b"acct/ka", object_name="acct", state=iso.Total())
    for n in range(5):
        session.remember(f"m{n}", {"ok": n}, 1000 * n, 2500)
    assert list(session.recent) == ["m2", "m3", "m4"]  # m0 and m1 finished more than 2.5 s before m4
    assert session.recorded("m2", 4000, 2500) == {"ok": 2}
    assert session.recorded("m2", 5000, 2500) is None


def test_reply_golden_bytes() -> None:
    assert Reply("order-7", "acct/ka", {"n": 3}).encode() == NEW_REPLY


async def test_the_client_routes_replies_by_session_and_takes_tether_0_1_replies_when_unambiguous(
    tmp_path: Path,
) -> None:
    client = Client(Settings(backend="embedded", data_dir=tmp_path))
    loop = asyncio.get_running_loop()
    ka, kb = loop.create_future(), loop.create_future()
    client._waiting[("acct/ka", "order-7")] = ka
    client._waiting[("acct/kb", "order-7")] = kb
    client._deliver(NEW_REPLY, 0)
    assert ka.done() and not kb.done() and unpack(NEW_REPLY) == ka.result()
    client._deliver(OLD_REPLY, 1)  # one waiting call left with that id: it is the one
    assert kb.done() and kb.result() == unpack(OLD_REPLY)
    c1, c2 = loop.create_future(), loop.create_future()
    client._waiting[("acct/kc", "order-7")] = c1
    client._waiting[("acct/kd", "order-7")] = c2
    client._deliver(OLD_REPLY, 2)  # ambiguous: delivered to neither (the call times out, retries)
    assert not c1.done() and not c2.done()
    for garbage in (b"\xc1", b"\x93\x01\x02\x03", None, pack({"id": 7})):
        client._deliver(garbage, 3)  # logged and skipped


async def test_a_tether_0_1_checkpoint_journal_is_adopted_by_its_invocation(tmp_path: Path, namespace: str) -> None:
    """An invocation open at the upgrade resumes from the journal a 0.1 checkpoint holds."""
    iso.reset()
    settings = make_settings("embedded", tmp_path, namespace, partitions=2)
    topics = Topics(namespace)
    key = session_key("acct", "ka")
    async with open_runtime([iso.acct], settings, start_worker=False) as rt:
        p = partition_for(key, settings.partitions)
        step = {"k": "step", "i": "order-7", "n": 0, "name": "effect", "r": {"key": "ka", "by": 5}, "a": 1}
        checkpoint = {"x": 0, "j": [["order-7", [[0, step]]]], "d": [], "w": [], "c": []}
        message = Message(id="order-7", o="acct", k="ka", h="add", p={"by": 5}, rp=None, ts=1)
        await rt.log.append(
            [
                OutRecord(topics.snapshots, p, CHECKPOINT_KEY, pack(checkpoint)),
                OutRecord(topics.inbox, p, key, message.encode()),
            ]
        )
        await rt.start_worker()
        receipt = await rt.client.call(iso.add, "ka", iso.Add(by=0), timeout=WAIT)
        assert receipt.total == 5  # order-7 applied (before this call), once
        assert iso.STEPS["ka:effect"] == 1  # only this call's step ran: order-7's came from the journal


# Streams records (since 0.3): a chunk, an end with a reply, an end with an error.
STREAM_CHUNK = b"\x86\xa1k\xa5chunk\xa1i\xa5inv_a\xa1r\xcf\x00\x00\x01\x8f4\x06\x9e\x00\xa1a\x02\xa1n\x00\xa1d\xa3tok"
STREAM_END_OK = (
    b"\x86\xa1k\xa3end\xa1i\xa5inv_a\xa1r\xcf\x00\x00\x01\x8f4\x06\x9e\x00\xa1a\x02\xa1c\x03\xa2ok\x81\xa4text\xa2hi"
)
STREAM_END_ERR = (
    b"\x86\xa1k\xa3end\xa1i\xa5inv_a\xa1r\xcf\x00\x00\x01\x8f4\x06\x9e\x00\xa1a\x01\xa1c\x00\xa3err\x83\xa4type"
    b"\xadTerminalError\xa7message\xa2no\xa8attempts\x01"
)


def test_stream_records_golden_bytes() -> None:
    from actors.protocol import StreamChunk, StreamEnd, decode_stream_record

    chunk = StreamChunk("inv_a", 1_714_564_800_000, 2, 0, "tok")
    ok = StreamEnd("inv_a", 1_714_564_800_000, 2, 3, {"text": "hi"})
    err = StreamEnd("inv_a", 1_714_564_800_000, 1, 0, None, {"type": "TerminalError", "message": "no", "attempts": 1})
    for record, golden in ((chunk, STREAM_CHUNK), (ok, STREAM_END_OK), (err, STREAM_END_ERR)):
        assert record.encode() == golden
        assert decode_stream_record(golden) == record
    assert decode_stream_record(pack({"k": "marker", "i": "inv_a"})) is None  # a later release's kind: skipped


def test_malformed_stream_records_raise_a_decode_error() -> None:
    import pytest

    from actors.protocol import decode_stream_record
    from eventstore.errors import DecodeError

    for garbage in (
        b"\xc1",
        pack([1, 2]),
        pack({"k": "chunk", "i": "inv_a"}),
        pack({"k": 7}),
        pack({"k": "chunk", "i": "inv_a", "r": "x", "a": 1, "n": 0}),
        pack({"k": "end", "i": "inv_a", "r": 1, "a": 1, "c": 0, "err": "no"}),
    ):
        with pytest.raises(DecodeError):
            decode_stream_record(garbage)


# Since 0.3: a traced message carries its sender's W3C traceparent (``tp``); an untraced one is
# written without the key, byte for byte as before.
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
NEW_MESSAGE_TRACED = (
    b"\x8a\xa2id\xa2m1\xa1o\xa5agent\xa1k\xa2k1\xa1h\xa3ask\xa1p\x81\xa1q\x01\xa2rp\x03\xa2ts\xcf\x00\x00\x01"
    b"\x8f4\x06\x9e\x00\xa2nb\xc0\xa2sj\xc0\xa2tp\xd9700-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
)


def test_traced_message_golden_bytes_and_messages_without_trace_context() -> None:
    from harness import golden_formats as golden

    traced = Message(id="m1", o="agent", k="k1", h="ask", p={"q": 1}, rp=3, ts=1_714_564_800_000, tp=TRACEPARENT)
    assert traced.encode() == NEW_MESSAGE_TRACED
    assert Message.decode(NEW_MESSAGE_TRACED) == traced
    # Written before ``tp`` existed: decoded without trace context, and written back unchanged.
    old = Message.decode(golden.MESSAGE)
    assert old.trace_parent is None and old.encode() == golden.MESSAGE
    assert old.model_copy(update={"trace_parent": TRACEPARENT}).encode() == NEW_MESSAGE_TRACED
    # The context survives a wait: the suspended message is embedded in its entry.
    from actors.protocol.entries import Suspend, decode

    entry = decode(Suspend(traced, 7, 5, None, [], 0, 2).encode())
    assert isinstance(entry, Suspend) and entry.message.trace_parent == TRACEPARENT


# Since 0.3: values over blob_threshold_bytes are in the blob store and the record carries the
# reference: ``pb`` in a message (``p`` nil), ``okb`` in a reply and a stream's end, ``rb`` in a
# done entry, ``{"okb": ref}`` as a recorded reply (snapshots' ``rc``). Records without them are
# written and read byte for byte as before.
BLOB_REF = "sha256:" + "ab" * 32
NEW_MESSAGE_BY_REFERENCE = (
    b"\x8a\xa2id\xa2m1\xa1o\xa5agent\xa1k\xa2k1\xa1h\xa3ask\xa1p\xc0\xa2rp\x03\xa2ts\xcf\x00\x00\x01\x8f4\x06"
    b"\x9e\x00\xa2nb\xc0\xa2sj\xc0\xa2pb\xd9Gsha256:" + b"ab" * 32
)
NEW_REPLY_BY_REFERENCE = b"\x83\xa2id\xa7order-7\xa1s\xa7acct/ka\xa3okb\xd9Gsha256:" + b"ab" * 32
NEW_DONE_BY_REFERENCE = (
    b"\x8a\xa1k\xa4done\xa2sv\x04\xa1o\x07\xa1i\xa2m1\xa1h\xa3ask\xa2ev\x90\xa1a\x01\xa2t0\xcf\x00\x00\x01"
    b"\x8f4\x06\x9e\x00\xa2t1\xcf\x00\x00\x01\x8f4\x06\x9e\xfa\xa2rb\xd9Gsha256:" + b"ab" * 32
)
NEW_STREAM_END_BY_REFERENCE = (
    b"\x86\xa1k\xa3end\xa1i\xa5inv_a\xa1r\xcf\x00\x00\x01\x8f4\x06\x9e\x00\xa1a\x02\xa1c\x03\xa3okb\xd9Gsha256:"
    + b"ab" * 32
)


def test_values_by_reference_golden_bytes_and_records_without_references() -> None:
    from harness import golden_formats as golden

    from actors.protocol import StreamEnd, decode_stream_record
    from actors.protocol.entries import Done, decode

    message = Message(id="m1", o="agent", k="k1", h="ask", p=None, rp=3, ts=1_714_564_800_000, pb=BLOB_REF)
    assert message.encode() == NEW_MESSAGE_BY_REFERENCE
    assert Message.decode(NEW_MESSAGE_BY_REFERENCE) == message and message.payload_blob == BLOB_REF
    old = Message.decode(golden.MESSAGE)  # written before ``pb``: no reference, the same bytes back
    assert old.payload_blob is None and old.encode() == golden.MESSAGE

    reply = Reply("order-7", "acct/ka", None, None, BLOB_REF)
    assert reply.encode() == NEW_REPLY_BY_REFERENCE
    assert Reply.from_wire(unpack(NEW_REPLY_BY_REFERENCE)) == reply
    assert Reply.of_outcome("order-7", "acct/ka", {"okb": BLOB_REF}) == reply
    assert Reply.from_wire(unpack(NEW_REPLY)).result_blob is None
    assert Reply("order-7", "acct/ka", {"n": 3}).encode() == NEW_REPLY

    done = Done("m1", "ask", [], 4, 7, None, None, 1, 1_714_564_800_000, 1_714_564_800_250, BLOB_REF)
    assert done.encode() == NEW_DONE_BY_REFERENCE
    assert decode(NEW_DONE_BY_REFERENCE) == done
    assert done.recorded_reply() == {"okb": BLOB_REF} and done.outcome == ({"blob": BLOB_REF}, None)
    plain = decode(golden.DONE_OK)
    assert isinstance(plain, Done) and plain.reply_blob is None and plain.encode() == golden.DONE_OK

    end = StreamEnd("inv_a", 1_714_564_800_000, 2, 3, None, None, BLOB_REF)
    assert end.encode() == NEW_STREAM_END_BY_REFERENCE
    assert decode_stream_record(NEW_STREAM_END_BY_REFERENCE) == end
    assert decode_stream_record(STREAM_END_OK) == StreamEnd("inv_a", 1_714_564_800_000, 2, 3, {"text": "hi"})

    # A session remembers such a reply by its reference, and its snapshot keeps it.
    session = Session(key=b"acct/ka", object_name="acct", state=iso.Total(n=3), version=3)
    session.remember("order-7", {"okb": BLOB_REF}, 1_714_564_800_000, DAY_MS * 10_000)
    again = Session(key=b"acct/ka", object_name="acct", snapshot=session.to_snapshot().encode())
    again.load(iso.acct, DAY_MS * 10_000)
    assert again.recorded("order-7", 1_714_564_800_001, DAY_MS * 10_000) == {"okb": BLOB_REF}


# Since 0.3: a live cancellation (`tether sessions cancel` of an invocation that has journaled
# nothing) is an ordinary resolution message whose payload adds ``live``; the processor records
# it as the usual ``awk`` completion of the invocation it picks, so no entry kind is new.
LIVE_CANCEL = (
    b"\x89\xa2id\xadcancel-live-1\xa1o\xa5agent\xa1k\xa2k1\xa1h\xab__resolve__\xa1p\x84\xa2id\xb6awk:agent/k1"
    b"#cancel-#0\xa3err\x82\xa4type\xa8Rejected\xa7message\xa4typo\xa2by\xa8ops@host\xa4live\xc3\xa2rp\x03\xa2ts"
    b"\xcf\x00\x00\x01\x8f4\x06\x9e\x00\xa2nb\xc0\xa2sj\xc0"
)
# A saga cancelled by an operator (`tether saga cancel`): the event envelope in the events topic.
SAGA_CANCELLED = (
    b"\x83\xa1t\xb9tether.saga.SagaCancelled\xa1v\x01\xa1d\x83\xa2by\xa8ops@host\xa6reason\xadcustomer left"
    b"\xa2at\xb42024-05-01T12:00:00Z"
)


def test_live_cancellation_golden_bytes() -> None:
    from actors.protocol.awakeables import cancel_awakeable_id, cancelled_message
    from actors.protocol.inbox import RESOLVE_HANDLER

    awk = cancel_awakeable_id("agent", "k1", "")
    payload = {"id": awk, "err": {"type": "Rejected", "message": "typo"}, "by": "ops@host", "live": True}
    message = Message(id="cancel-live-1", o="agent", k="k1", h=RESOLVE_HANDLER, p=payload, rp=3, ts=1_714_564_800_000)
    assert message.encode() == LIVE_CANCEL
    assert Message.decode(LIVE_CANCEL) == message
    assert cancelled_message(awk) == "", "no message id: the invocation that runs on the key now"


def test_saga_cancelled_golden_bytes_and_states_written_before_it() -> None:
    from datetime import UTC, datetime

    from sagas.events import SagaCancelled, SagaState, apply, codec

    event = SagaCancelled(by="ops@host", reason="customer left", at=datetime(2024, 5, 1, 12, tzinfo=UTC))
    assert pack(codec().encode_envelope(event)) == SAGA_CANCELLED
    assert codec().decode_envelope(unpack(SAGA_CANCELLED)) == event
    old = SagaState.model_validate({"saga_id": "s1", "saga": "trip", "status": "running", "seq": 3})
    assert old.cancelled is None, "a state snapshotted before cancellations existed"
    state = apply(old, event)
    assert state.status == "compensating" and state.cancelled is not None and state.cancelled.by == "ops@host"
