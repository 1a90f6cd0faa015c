"""Read-only views of a session for operators: its state and its history, from the log."""

from __future__ import annotations

import time
import uuid
from typing import Any

from eventstore import Topics, UsageError, open_log, partition_for, unpack

from .client import Client
from .errors import CallTimeoutError
from .messages import Message, session_key
from .settings import Settings


async def session_history(settings: Settings, object_name: str, key: str) -> list[dict[str, Any]]:
    """Every journaled step and finished invocation of one session, in log order."""
    topics = Topics(settings.namespace)
    log = open_log(settings)
    await log.start()
    try:
        wanted = session_key(object_name, key)
        partitions = await log.partition_count(topics.events)
        out: list[dict[str, Any]] = []
        async for record in log.read(topics.events, partition_for(wanted, partitions)):
            if record.key != wanted or record.value is None:
                continue
            entry = unpack(record.value)
            item: dict[str, Any] = {
                "offset": record.offset,
                "inbox_offset": entry.get("o"),
                "kind": entry["k"],
                "invocation": entry["i"],
                "attempts": entry.get("a"),
                "duration_ms": (entry.get("t1") or 0) - (entry.get("t0") or 0),
            }
            if entry["k"] == "step":
                item.update(name=entry["name"], index=entry["n"])
            elif entry["k"] in ("sus", "q", "dly"):
                item.update(name=entry["m"].get("h", ""), wake_ms=entry.get("t"), awakeable=entry.get("a"))
            elif entry["k"] == "awk":
                item.update(name=f"awakeable {entry['id']}")
            else:
                item.update(name=entry.get("h", ""), version=entry.get("sv"), events=entry.get("ev"))
            if "err" in entry:
                item["error"] = entry["err"]
            else:
                item["result"] = entry.get("r")
            out.append(item)
        return out
    finally:
        await log.close()


async def session_view(settings: Settings, object_name: str, key: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """State and version (asked of the owning worker) plus in-flight steps (from the log)."""
    history = await session_history(settings, object_name, key)
    finished = {e["invocation"] for e in history if e["kind"] == "done"}
    waits: dict[str, dict[str, Any]] = {}
    for e in history:
        if e["kind"] in ("sus", "dly") and e["invocation"] not in finished:
            # Every wait has a bound or names what ends it: a timer, an awakeable, or both.
            waits[e["invocation"]] = {
                "kind": "delayed message" if e["kind"] == "dly" else "suspended invocation",
                "handler": e["name"],
                "until_ms": e.get("wake_ms"),
                "awakeable": e.get("awakeable"),
            }
    in_flight: dict[str, list[dict[str, Any]]] = {}
    for e in history:
        if e["kind"] == "step" and e["invocation"] not in finished:
            in_flight.setdefault(e["invocation"], []).append(
                {"step": e["index"], "name": e["name"], "result": e.get("result"), "error": e.get("error")}
            )
    async with Client.connect(settings) as client:
        try:
            current = await client.state(object_name, key, timeout=timeout)
        except CallTimeoutError:
            current = {"state": None, "version": None, "note": "no worker answered; is one running?"}
    return {
        "state": current.get("state"),
        "version": current.get("version"),
        "in_flight": in_flight,
        "waits": waits,
        "history_length": len(history),
    }


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
        {"k": "step", "i": old_id, "n": e["index"], "name": e["name"], "r": e.get("result"), "a": e.get("attempts", 1)}
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
                "reply_partition": None,
                "seed_journal": seed,
                "timestamp_ms": int(time.time() * 1000),
            }
        )
        async with Client.connect(settings, log=log) as client:
            await client._append(message)
        return message.id
    finally:
        await log.close()
