"""Views of a session for operators, read from the log: its history and its current state.

`session_history` and `session_view` only read (see `actors.inspection.reading`): they send no message,
create no topic and leave no dead letter, whatever the TYPE and KEY. `restart_invocation` is the
one function here that writes (a new inbox message).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

from eventstore import Record, Topics, UsageError, open_log, partition_for

from ..client import Client
from ..definitions import VirtualObject
from ..errors import SessionNotFoundError
from ..protocol import entries
from ..protocol.awakeables import parse_awakeable_id
from ..protocol.checkpoint import CHECKPOINT_KEY
from ..protocol.entries import (
    Completion,
    Done,
    Entry,
    OpenWaits,
    Step,
    Suspend,
    Unknown,
    attempts_of,
    handler_of,
    outcome_of,
    wait_of,
)
from ..protocol.inbox import Message, session_key
from ..protocol.large_values import LargeValues, snapshot_in_hand, with_events
from ..protocol.snapshot import SNAPSHOT_VERSION_HEADER, Snapshot, snapshot_version
from ..runtime.sessions import Session
from ..settings import Settings
from .reading import partitions_of, read_only_log


class Logged(NamedTuple):
    """A session's events-topic entry with where and when the log holds it."""

    offset: int
    entry: Entry | Unknown
    timestamp_ms: int


def history_item(offset: int, entry: Entry | Unknown) -> dict[str, Any]:
    """One events-topic entry of a session as `tether sessions history` shows it.

    Entries of a kind this code does not know are kept with ``skipped: True`` and their kind.
    """
    if isinstance(entry, Unknown):
        return {"offset": offset, "kind": entry.kind, "invocation": entry.message_id, "skipped": True}
    # A start of 0 (or None) was not recorded: a failure written without its start time.
    timed = isinstance(entry, Done | Step) and bool(entry.started_ms)
    item: dict[str, Any] = {
        "offset": offset,
        "inbox_offset": getattr(entry, "inbox_offset", None),
        "kind": entry.kind,
        "invocation": entry.message_id,
        "attempts": attempts_of(entry),
        "duration_ms": (entry.ended_ms or 0) - (entry.started_ms or 0) if timed else None,  # type: ignore[union-attr]
        "name": handler_of(entry),
    }
    if isinstance(entry, Step):
        item.update(name=entry.name, index=entry.index)
        if entry.blob is not None:
            item["blob"] = entry.blob
    elif isinstance(entry, Completion):
        item.update(name=f"awakeable {entry.awakeable}", by=entry.by)
    wait = wait_of(entry)
    if wait is not None:
        item.update(wake_ms=wait.until_ms, awakeable=wait.awakeable)
    if isinstance(entry, Done | Suspend):
        item.update(version=entry.version, events=entry.events)
        if entry.events_blob is not None:
            item["events_blob"] = entry.events_blob
    result, error = outcome_of(entry)
    if error is not None:
        item["error"] = error
    else:
        item["result"] = result
    return item


async def session_records(
    settings: Settings, object_name: str, key: str
) -> tuple[int, Record | None, list[Logged], set[str]]:
    """The session's partition, its latest snapshot record and its events entries.

    Also the other session types with records on that partition, to help with a typo.
    """
    topics = Topics(settings.namespace)
    wanted = session_key(object_name, key)
    async with read_only_log(settings) as log:
        partitions = await partitions_of(log, topics, topics.events)
        await partitions_of(log, topics, topics.snapshots)
        partition = partition_for(wanted, partitions)
        others: set[str] = set()
        snapshot: Record | None = None
        async for record in log.read(topics.snapshots, partition):
            if record.key == wanted:
                snapshot = record if record.value is not None else None
            elif record.key is not None and record.key != CHECKPOINT_KEY:
                others.add(record.key.decode(errors="replace").partition("/")[0])
        found: list[Logged] = []
        async for record in log.read(topics.events, partition):
            if record.key != wanted:
                if record.key is not None:
                    others.add(record.key.decode(errors="replace").partition("/")[0])
            elif record.value is not None:
                found.append(Logged(record.offset, entries.read(record.value), record.timestamp_ms))
    return partition, snapshot, found, others


async def session_history(settings: Settings, object_name: str, key: str) -> list[dict[str, Any]]:
    """Every journaled step, wait and finished invocation of one session, in log order.

    Raises:
        NamespaceNotFoundError: the namespace has no topics (nothing is created).
    """
    _, _, found, _ = await session_records(settings, object_name, key)
    return [history_item(offset, entry) for offset, entry, _ in found]


AwakeableStatus = Literal["open", "completed", "unknown"]


async def awakeable_status(settings: Settings, awakeable_id: str) -> tuple[AwakeableStatus, Completion | None]:
    """Whether a session waits on `awakeable_id` now, completed it before, or never saw it.

    Read from the session's events entries (the id names its session): ``open`` while a ``sus``
    entry waits on it, ``completed`` (with the completion: its outcome and who) once an ``awk``
    entry recorded it, ``unknown`` otherwise - a typo, or an id not yet committed.

    Raises:
        UsageError: `awakeable_id` is not an awakeable id.
        NamespaceNotFoundError: the namespace has no topics.
    """
    try:
        object_name, key, _ = parse_awakeable_id(awakeable_id)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _, _, found, _ = await session_records(settings, object_name, key)
    waits = OpenWaits()
    completion: Completion | None = None
    for _, entry, _ in found:
        waits.see(entry)
        if isinstance(entry, Completion) and entry.awakeable == awakeable_id and completion is None:
            completion = entry
    if completion is not None:
        return "completed", completion
    if any(w.awakeable == awakeable_id for w in waits.open):
        return "open", None
    return "unknown", None


def not_found(settings: Settings, object_name: str, key: str, partition: int, others: set[str]) -> SessionNotFoundError:
    """The error for a session the log holds no record of, naming the types that partition has."""
    types = ", ".join(sorted(others)) or "none"
    return SessionNotFoundError(
        f"no session {object_name}/{key} in namespace {settings.namespace!r}: partition {partition} "
        f"holds no snapshot and no event of it. Session types with records on that partition: "
        f"{types}. Check TYPE and KEY (and --namespace); nothing was written"
    )


def _envelope(envelope: Any) -> Any:
    if isinstance(envelope, dict) and {"t", "v", "d"} <= envelope.keys():
        return {"event": envelope["t"], "schema": envelope["v"], "data": envelope["d"]}
    return envelope


def _pick(objects: Sequence[VirtualObject[Any]], object_name: str) -> VirtualObject[Any]:
    for obj in objects:
        if obj.name == object_name:
            return obj
    names = ", ".join(sorted(o.name for o in objects)) or "none"
    raise UsageError(f"--app serves no session type {object_name!r} (it serves: {names})")


async def session_view(
    settings: Settings,
    object_name: str,
    key: str,
    *,
    objects: Sequence[VirtualObject[Any]] | None = None,
) -> dict[str, Any]:
    """A session's state, version, open waits and in-flight steps, read from the log as a restore does.

    The state is the latest snapshot's; the events committed after it are listed. With the
    session type's definition in `objects` (what ``tether serve MODULE:OBJECT`` serves) they are
    folded into the state, which is then exactly the session's current one.

    Raises:
        SessionNotFoundError: the log holds no record of the session.
        NamespaceNotFoundError: the namespace has no topics (nothing is created).
        UsageError: `objects` has no session type `object_name`.
        DecodeError: with `objects`, an event that the definition cannot decode.
    """
    partition, snapshot, found, others = await session_records(settings, object_name, key)
    if snapshot is None and not found:
        raise not_found(settings, object_name, key, partition, others)
    covered = 0
    large = LargeValues.of(settings.runtime)
    snapshot_value: bytes | None = None
    if snapshot is not None:
        assert snapshot.value is not None
        covered = snapshot_version(snapshot.value, snapshot.header(SNAPSHOT_VERSION_HEADER))
        snapshot_value = await snapshot_in_hand(large, snapshot.value, snapshot.key or b"")
    tail: list[bytes] = []
    events_since: list[dict[str, Any]] = []
    waits = OpenWaits()
    in_flight: dict[str, list[dict[str, Any]]] = {}
    skipped: list[str] = []
    version = covered
    for offset, entry, _ in found:
        if isinstance(entry, Unknown):
            skipped.append(entry.kind)
            continue
        invocation = entry.message_id
        if isinstance(entry, Done | Suspend) and entry.version > covered:
            entry = await with_events(large, entry, f"{object_name}/{key}")
            tail.append(entry.encode())  # as a restore keeps it: encoded, folded on load
            version = max(version, entry.version)
            events_since.append(
                {
                    "offset": offset,
                    "kind": entry.kind,
                    "invocation": invocation,
                    "handler": handler_of(entry),
                    "version": entry.version,
                    "events": [_envelope(e) for e in entry.events],
                }
            )
        waits.see(entry)
        if isinstance(entry, Step):
            in_flight.setdefault(invocation, []).append(
                {"step": entry.index, "name": entry.name, "result": entry.result, "error": entry.error}
            )
        elif isinstance(entry, Done):
            in_flight.pop(invocation, None)
    view: dict[str, Any] = {
        "session": f"{object_name}/{key}",
        "partition": partition,
        "version": version,
        "snapshot_version": covered if snapshot is not None else None,
        "events_since_snapshot": events_since,
        "in_flight": in_flight,
        "waits": {w.invocation: {**w.to_json(), "completed": waits.completed(w)} for w in waits.open},
        "history_length": len(found),
        "skipped_kinds": skipped,
    }
    if objects is not None:
        obj = _pick(objects, object_name)
        session = Session(session_key(object_name, key), object_name, snapshot_value, tail)
        view.update(state=session.load(obj, 1).model_dump(mode="json"), state_version=version, folded=True)
    else:
        state = Snapshot.decode(snapshot_value).state if snapshot_value is not None else None
        view.update(state=state, state_version=covered if snapshot is not None else None, folded=False)
    return view


async def restart_invocation(
    settings: Settings,
    object_name: str,
    key: str,
    *,
    from_step: int,
    invocation: str | None = None,
    payload: Any = None,
) -> str:
    """Run an invocation again, reusing its journaled steps before `from_step`.

    The original message is read back from the inbox (so it must still be retained there);
    `payload` replaces its input. Returns the new message id. The new invocation is a new
    message: its events apply to the session's current state.
    """
    history = await session_history(settings, object_name, key)
    candidates = [e for e in history if e["kind"] in ("done", "sus")]
    if invocation is not None:
        candidates = [e for e in candidates if e["invocation"] == invocation]
    if not candidates:
        raise UsageError(
            f"{object_name}/{key} has no invocation {invocation or ''} to restart; `tether sessions history` lists them"
        )
    target = candidates[-1]
    old_id = target["invocation"]
    steps = [e for e in history if e["kind"] == "step" and e["invocation"] == old_id]
    seed = [
        Step(
            old_id,
            e["index"],
            e["name"],
            None if e.get("blob") else e.get("result"),
            None,
            e.get("attempts") or 1,
            blob=e.get("blob"),
        ).to_seed()
        for e in steps
        if e["index"] < from_step and "error" not in e
    ]
    topics = Topics(settings.namespace)
    log = open_log(settings)
    await log.start()
    try:
        partitions = await log.partition_count(topics.inbox)
        partition = partition_for(session_key(object_name, key), partitions)
        original: Message | None = None
        async for record in log.read(
            topics.inbox, partition, int(target["inbox_offset"]), int(target["inbox_offset"]) + 1
        ):
            original = Message.decode(record.value)
        if original is None or original.id != old_id:
            raise UsageError(
                f"the message of invocation {old_id} is no longer in the inbox (retention); "
                "restart needs it, or pass the input with --payload and --handler"
            )
        message = original.model_copy(
            update={
                "id": f"{old_id}:restart:{uuid.uuid4().hex[:8]}",
                "payload": original.payload if payload is None else payload,
                "payload_blob": original.payload_blob if payload is None else None,  # a large input: its reference
                "reply_partition": None,
                "seed_journal": seed,
                "timestamp_ms": int(time.time() * 1000),
            }
        )
        async with Client.connect(settings, log=log) as client:
            await client.send_messages(message)
        return message.id
    finally:
        await log.close()
