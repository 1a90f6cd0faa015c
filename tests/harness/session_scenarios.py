"""Behaviours of the session runtime, written once and run on both backends.

`tests/unit/actors` runs them on the embedded log, `tests/integration/test_sessions.py` on the
real broker. Each takes a started `Runtime` serving `probe_sessions.probe`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from actors import (
    InvalidPayloadError,
    InvocationError,
    UnknownHandlerError,
    UnknownObjectError,
    UsageError,
)
from actors.errors import MessageTooLargeError
from actors.messages import Message, invocation_id
from actors.runtime import deadletters as dl

from .probe_sessions import (
    PROBE,
    Empty,
    Item,
    Items,
    Observed,
    Relay,
    always_fails,
    append,
    ask,
    deterministic,
    mismatched,
    new_id,
    peek,
    relay,
    replayed_steps,
    resumable,
    slow_down,
    slow_step,
)
from .session_harness import WAIT, Runtime, assert_eventually, keys_on_partition


async def order_per_key(rt: Runtime) -> None:
    """Messages to one key apply in the order they were sent."""
    values = [f"m{i}" for i in range(25)]
    for value in values:
        await rt.client.send(append, "ordered", Item(value=value))
    reply = await rt.client.call(append, "ordered", Item(value="last"), timeout=WAIT)
    assert reply.values == [*values, "last"]
    assert (await rt.state("probe", "ordered"))["values"] == [*values, "last"]


async def send_many_in_one_append(rt: Runtime) -> None:
    """A batch reaches every session, in order per session; too large a member sends nothing;
    idempotency keys make a resent batch a no-op."""
    keys = [f"bulk{k}" for k in range(20)]
    batch = [(key, Item(value=f"v{i}")) for i in range(5) for key in keys]  # interleaved keys
    ids = await rt.client.send_many(append, batch)
    assert len(set(ids)) == len(batch)
    for key in keys:
        reply = await rt.client.call(append, key, Item(value="last"), timeout=WAIT)
        assert reply.values == ["v0", "v1", "v2", "v3", "v4", "last"], (key, reply.values)

    huge = "x" * (rt.settings.runtime.max_message_bytes + 1)
    with pytest.raises(MessageTooLargeError):
        await rt.client.send_many(append, [("tiny", Item(value="first")), ("big", Item(value=huge))])
    reply = await rt.client.call(append, "tiny", Item(value="after"), timeout=WAIT)
    assert reply.values == ["after"], "a batch with an oversize member sends nothing"

    once = [("once", Item(value="a")), ("once", Item(value="b"))]
    for _ in range(2):
        await rt.client.send_many(append, once, idempotency_keys=["bulk-once-1", "bulk-once-2"])
    reply = await rt.client.call(append, "once", Item(value="end"), timeout=WAIT)
    assert reply.values == ["a", "b", "end"], "the resent batch was delivered once"
    with pytest.raises(UsageError):
        await rt.client.send_many(append, once, idempotency_keys=["only-one"])


async def keys_run_in_parallel(rt: Runtime) -> None:
    """Two keys of one partition run at once; one key runs one exclusive message at a time;
    a shared handler runs while an exclusive one is blocked."""
    a, b = keys_on_partition("par", 2, rt.settings.partitions, obj="probe")
    await rt.client.send(append, a, Item(value="a1", gate="a1"))
    await rt.client.send(append, a, Item(value="a2", gate="a2"))
    await rt.client.send(append, b, Item(value="b1", gate="b1"))

    def both_keys_started() -> None:
        assert {"a1", "b1"} <= set(PROBE.started), PROBE.started

    await assert_eventually(both_keys_started)
    # a2 was routed before b1 started: had key `a` not been serialized, it would be running.
    assert "a2" not in PROBE.started, PROBE.started

    # Shared handlers read the committed state while the exclusive a1 holds the key.
    assert (await rt.client.call(peek, a, Empty(), timeout=WAIT)).values == []
    assert "a2" not in PROBE.started

    PROBE.open("a1")
    await assert_eventually(lambda: _started(["a1", "b1", "a2"]))
    PROBE.open("a2")
    PROBE.open("b1")
    assert (await rt.client.call(append, a, Item(value="a3"), timeout=WAIT)).values == ["a1", "a2", "a3"]
    assert (await rt.client.call(peek, b, Empty(), timeout=WAIT)).values == ["b1"]


def _started(expected: list[str]) -> None:
    assert sorted(PROBE.started) == sorted(expected), PROBE.started


async def steps_replay_after_retry(rt: Runtime) -> None:
    """A journaled step runs once even though its handler ran twice."""
    reply = await rt.client.call(replayed_steps, "steps", Item(value="r"), timeout=WAIT)
    assert isinstance(reply, Observed)
    assert reply.attempt == 2
    assert reply.step == 1  # the recorded result of the first (and only) execution
    assert PROBE.executions["r:first"] == 1
    assert PROBE.executions["r:second"] == 1
    assert [a for _, a, _ in PROBE.attempts] == [1, 2]
    assert (await rt.state("probe", "steps"))["values"] == ["r:1:1"]


async def journal_mismatch(rt: Runtime) -> None:
    """A retry that asks for another step than the journal holds fails with JournalMismatchError."""
    message_id = new_id()
    with pytest.raises(InvocationError) as failure:
        await rt.client.call(mismatched, "mm", Item(value="x"), timeout=WAIT, idempotency_key=message_id)
    assert failure.value.error_type == "JournalMismatchError"
    assert "'step-1'" in failure.value.message and "'step-2'" in failure.value.message
    assert PROBE.executions == {"x:1": 1}  # step-2 never ran
    letter = await rt.dead_letter(message_id)
    assert letter.header(dl.ERROR_CLASS) == b"JournalMismatchError"
    assert letter.header(dl.CATEGORY) == b"terminal"
    # The session keeps serving, and the failed invocation left no event.
    assert (await rt.client.call(append, "mm", Item(value="after"), timeout=WAIT)).values == ["after"]


async def typed_errors(rt: Runtime) -> None:
    """Unknown type, unknown handler and a bad payload are typed errors; the worker goes on."""
    ids = [new_id() for _ in range(3)]
    with pytest.raises(UnknownObjectError) as unknown_object:
        await rt.client.call_raw("nosuch", "k", "append", {"value": "v"}, timeout=WAIT, idempotency_key=ids[0])
    assert unknown_object.value.object_name == "nosuch"
    assert "nosuch" in str(unknown_object.value)
    with pytest.raises(UnknownHandlerError) as unknown_handler:
        await rt.client.call_raw("probe", "k", "nosuch", {"value": "v"}, timeout=WAIT, idempotency_key=ids[1])
    assert unknown_handler.value.handler == "nosuch"
    with pytest.raises(InvalidPayloadError) as invalid:
        await rt.client.call_raw("probe", "k", "append", {"valu": 1}, timeout=WAIT, idempotency_key=ids[2])
    assert "value" in invalid.value.message
    # The same for a shared handler.
    ids.append(new_id())
    with pytest.raises(InvalidPayloadError) as invalid_shared:
        await rt.client.call_raw("probe", "k", "contains", {"valu": 1}, timeout=WAIT, idempotency_key=ids[3])
    assert invalid_shared.value.handler == "contains" and "value" in invalid_shared.value.message
    # A caller's mistake is answered, not dead-lettered: nobody needs to replay it.
    assert not {r.header(dl.MESSAGE_ID) for r in await rt.dead_letters()} & {i.encode() for i in ids}
    # Still serving, the same key included; the invalid message changed no state.
    assert (await rt.client.call(append, "k", Item(value="ok"), timeout=WAIT)).values == ["ok"]
    assert (await rt.client.call(append, "k2", Item(value="ok2"), timeout=WAIT)).values == ["ok2"]


async def idempotency_key(rt: Runtime) -> None:
    """Two calls with one idempotency key apply once and get the same reply."""
    first = await rt.client.call(append, "idem", Item(value="once"), timeout=WAIT, idempotency_key="idem-1")
    again = await rt.client.call(append, "idem", Item(value="once"), timeout=WAIT, idempotency_key="idem-1")
    assert first == again == Items(values=["once"])
    # A retried send with the same key is deduplicated too, even with another payload.
    await rt.client.send(append, "idem", Item(value="twice"), idempotency_key="idem-1")
    after = await rt.client.call(append, "idem", Item(value="next"), timeout=WAIT)
    assert after.values == ["once", "next"]
    state = await rt.client.state("probe", "idem", timeout=WAIT)
    assert state["state"]["values"] == ["once", "next"]
    assert state["version"] == 2
    # Concurrent calls with one key, from one client: both get the one reply.
    both = await asyncio.gather(
        *(rt.client.call(append, "idem", Item(value="dup"), timeout=10, idempotency_key="idem-2") for _ in range(2))
    )
    assert both == [Items(values=["once", "next", "dup"])] * 2
    assert (await rt.state("probe", "idem"))["values"] == ["once", "next", "dup"]


async def send_delivers_once(rt: Runtime) -> None:
    """ctx.send delivers exactly once, even when the sending attempt failed and was retried."""
    message_id = new_id()
    reply = await rt.client.call(
        relay,
        "sender",
        Relay(target="receiver", value="hello", fail_first=True),
        timeout=WAIT,
        idempotency_key=message_id,
    )
    assert reply.values == ["sent hello"]
    assert [a for v, a, _ in PROBE.attempts if v == "hello"] == [1, 2]
    # The relayed message was committed with the reply, so it is ahead of this call in the inbox.
    after = await rt.client.call(append, "receiver", Item(value="after"), timeout=WAIT)
    assert after.values == ["hello", "after"]
    sent = [
        r
        for r in await rt.records(rt.topics.inbox)
        if r.value is not None
        and Message.decode(r.value).id.startswith(f"{invocation_id('probe/sender', message_id)}:send:")
    ]
    assert len(sent) == 1, sent


async def call_returns_reply(rt: Runtime) -> None:
    """ctx.call returns the other session's reply; a retry of the caller replays it."""
    reply = await rt.client.call(ask, "caller", Relay(target="callee", value="v1", fail_first=True), timeout=WAIT)
    assert reply == Items(values=["v1"])
    assert [a for v, a, _ in PROBE.attempts if v == "v1"] == [1, 2]
    assert (await rt.state("probe", "callee"))["values"] == ["v1"]  # called once, not twice
    assert (await rt.state("probe", "caller"))["values"] == ["asked v1"]
    reply = await rt.client.call(ask, "caller", Relay(target="callee", value="v2"), timeout=WAIT)
    assert reply.values == ["v1", "v2"]


async def deterministic_context(rt: Runtime) -> None:
    """uuid(), now() and random are the same on a replay and differ between invocations."""
    first = await rt.client.call(deterministic, "det", Item(value="x"), timeout=WAIT)
    assert [s["attempt"] for s in PROBE.seen] == [1, 2]
    one, two = PROBE.seen
    assert one["uuids"] == two["uuids"] and one["now"] == two["now"] and one["random"] == two["random"]
    assert one["uuids"][0] != one["uuids"][1]
    assert first.uuids == two["uuids"]
    other = await rt.client.call(deterministic, "det", Item(value="y"), timeout=WAIT)
    assert set(other.uuids).isdisjoint(first.uuids)


async def replay_after_restart(rt: Runtime) -> None:
    """A worker stopped mid-invocation: the next one replays the journaled step from the log
    (it does not run again) and sees the same uuid(), now() and random."""
    call = asyncio.create_task(
        rt.client.call(resumable, "resume", Item(value="fx", gate="g"), timeout=WAIT, idempotency_key=new_id())
    )

    def blocked() -> None:
        assert PROBE.started == ["g"]

    await assert_eventually(blocked)
    await rt.stop_worker()
    assert not call.done()
    PROBE.open("g")
    await rt.start_worker()
    reply = await asyncio.wait_for(call, WAIT)
    assert PROBE.executions["fx"] == 1
    assert reply.step == 1
    first, second = PROBE.seen
    assert first == second, (first, second)
    assert reply.uuids == first["uuids"] and reply.now == first["now"]
    assert (await rt.state("probe", "resume"))["values"] == ["fx:1"]


async def retry_after_honoured(rt: Runtime) -> None:
    """RetryableError(retry_after=...) delays the retry of a handler and of a step."""
    await rt.client.call(slow_down, "ra", Item(value="0.4"), timeout=WAIT)
    (_, a1, t1), (_, a2, t2) = [x for x in PROBE.attempts if x[0] == "handler"]
    assert (a1, a2) == (1, 2)
    assert t2 - t1 >= 0.4, t2 - t1  # the policy alone would wait about 0.01 s
    # A wait longer than the policy's max_interval is not waited out in place: it fails now.
    with pytest.raises(InvocationError) as failure:
        await rt.client.call(slow_down, "ra", Item(value="5"), timeout=WAIT)
    assert failure.value.attempts == 1 and failure.value.error_type == "RetryableError"
    reply = await rt.client.call(slow_step, "ra", Item(value="0.3"), timeout=WAIT)
    assert reply.values == ["ok"]
    (_, _, s1), (_, _, s2) = [x for x in PROBE.attempts if x[0] == "step"]
    assert s2 - s1 >= 0.3, s2 - s1


async def exhausted_retries_dead_letter(rt: Runtime) -> None:
    """A handler that keeps failing: the caller gets InvocationError, the DLQ the original bytes."""
    message_id = new_id()
    with pytest.raises(InvocationError) as failure:
        await rt.client.call(always_fails, "doomed", Item(value="x"), timeout=WAIT, idempotency_key=message_id)
    error = failure.value
    assert type(error) is InvocationError
    assert error.error_type == "RuntimeError"
    assert error.attempts == 3
    assert "broken on purpose" in error.message
    assert [a for _, a, _ in PROBE.attempts] == [1, 2, 3]

    letter = await rt.dead_letter(message_id)
    original = await rt.inbox_record(message_id)
    assert letter.key == original.key
    assert letter.value == original.value  # the original bytes, untouched
    assert letter.header(dl.ORIGINAL_TOPIC) == rt.topics.inbox.encode()
    # Spring Kafka's encoding: a 4-byte and an 8-byte big-endian number.
    assert letter.header(dl.ORIGINAL_PARTITION) == original.partition.to_bytes(4, "big")
    assert letter.header(dl.ORIGINAL_OFFSET) == original.offset.to_bytes(8, "big")
    assert letter.header(dl.ORIGINAL_TIMESTAMP_TYPE) == b"CreateTime"
    assert letter.header(dl.ORIGINAL_CONSUMER_GROUP) == rt.topics.group().encode()
    assert letter.header(dl.EXCEPTION_FQCN) == b"builtins.RuntimeError"
    assert b"broken on purpose" in (letter.header(dl.EXCEPTION_MESSAGE) or b"")
    assert b"always_fails" in (letter.header(dl.EXCEPTION_STACKTRACE) or b"")
    assert letter.header(dl.ATTEMPTS) == b"3"
    assert letter.header(dl.CATEGORY) == b"exhausted"
    assert letter.header(dl.OBJECT) == b"probe"
    assert letter.header(dl.KEY) == b"doomed"
    assert letter.header(dl.HANDLER) == b"always_fails"
    first_ms = int(letter.header(dl.FIRST_FAILURE) or 0)
    last_ms = int(letter.header(dl.LAST_FAILURE) or 0)
    assert 0 < first_ms <= last_ms

    # A retried send of the failed message is answered from the session's history: no 4th run.
    with pytest.raises(InvocationError):
        await rt.client.call(always_fails, "doomed", Item(value="x"), timeout=WAIT, idempotency_key=message_id)
    assert len(PROBE.attempts) == 3
    assert (await rt.client.call(append, "doomed", Item(value="alive"), timeout=WAIT)).values == ["alive"]


async def poison_record(rt: Runtime) -> None:
    """Garbage bytes in the inbox become a dead letter with those bytes; the worker goes on."""
    garbage = b"\xc1\x00 not msgpack \xff"
    key = b"probe/poisoned"
    partition = await rt.append_raw(key, garbage)

    async def letter() -> object:
        found = [r for r in await rt.dead_letters() if r.header(dl.CATEGORY) == b"poison"]
        assert len(found) == 1, found
        return found[0]

    found = await assert_eventually(letter)
    assert found.value == garbage and found.key == key  # type: ignore[attr-defined]
    assert found.header(dl.ORIGINAL_TOPIC) == rt.topics.inbox.encode()  # type: ignore[attr-defined]
    assert found.header(dl.ORIGINAL_PARTITION) == partition.to_bytes(4, "big")  # type: ignore[attr-defined]
    assert found.header(dl.EXCEPTION_FQCN) == b"eventstore.errors.EnvelopeDecodeError"  # type: ignore[attr-defined]
    # The partition keeps going: the same key and another key of the partition.
    assert (await rt.client.call(append, "poisoned", Item(value="fine"), timeout=WAIT)).values == ["fine"]
    other = keys_on_partition("after-poison", 1, rt.settings.partitions, partition=partition, obj="probe")[0]
    assert (await rt.client.call(append, other, Item(value="fine"), timeout=WAIT)).values == ["fine"]
    # A restarted worker does not dead-letter the poison record again.
    await rt.restart_worker()
    assert (await rt.client.call(append, "poisoned", Item(value="again"), timeout=WAIT)).values == ["fine", "again"]
    await asyncio.sleep(0)
    assert len([r for r in await rt.dead_letters() if r.header(dl.CATEGORY) == b"poison"]) == 1


SCENARIOS: tuple[Callable[[Runtime], Awaitable[None]], ...] = (
    order_per_key,
    send_many_in_one_append,
    keys_run_in_parallel,
    steps_replay_after_retry,
    journal_mismatch,
    typed_errors,
    idempotency_key,
    send_delivers_once,
    call_returns_reply,
    deterministic_context,
    replay_after_restart,
    retry_after_honoured,
    exhausted_retries_dead_letter,
    poison_record,
)
"""Every scenario, run on both backends by tests/integration/test_session_scenarios.py."""
