"""Read sagas straight from the log, for operators: no worker and no saga code needed.

A saga's state is the fold of its events, and the folds know nothing of the definition, so any
saga of any definition can be rebuilt here. Per partition: the latest snapshot of each
coordinator session, then the ``done`` entries after it (one per finished invocation, carrying
its events), plus the ``step`` entries of an invocation still in flight.

This module reads the runtime's events-topic entries (``k``, ``i``, ``sv``, ``ev``, ``h``,
``err``; steps ``n``, ``name``, ``r``, ``a``, ``t0``, ``t1``) and snapshot values (``s``,
``sv``): the one place where the saga layer depends on that wire format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors import Settings
from eventstore import Topics, open_log, partition_for, unpack

from .definitions import OBJECT_PREFIX, object_name
from .errors import SagaError, SagaNotFoundError
from .events import SagaState, apply, codec


@dataclass
class SagaRecord:
    """One saga as the log has it."""

    saga: str
    """The definition's name."""
    saga_id: str
    """The saga's id."""
    state: SagaState
    """Its state: the fold of its committed events."""
    version: int = 0
    """Invocations the coordinator session finished."""
    partition: int = 0
    """The partition it lives on."""
    in_flight: list[dict[str, Any]] = field(default_factory=list)
    """Journaled attempts of an invocation that has not finished (running now, or crashed)."""
    failures: list[dict[str, Any]] = field(default_factory=list)
    """Invocations that failed for good (each one a dead letter), newest last."""


def _split(key: bytes | None) -> tuple[str, str] | None:
    if key is None or not key.startswith(OBJECT_PREFIX.encode()):
        return None
    text = key.decode(errors="replace")
    obj, _, saga_id = text.partition("/")
    return obj[len(OBJECT_PREFIX) :], saga_id


async def read_sagas(settings: Settings, *, saga: str | None = None, saga_id: str | None = None) -> list[SagaRecord]:
    """Every saga in the namespace (optionally one definition, or one id), in log order.

    With both `saga` and `saga_id` only that saga's partition is read.
    """
    topics = Topics(settings.namespace)
    events_codec = codec()
    log = open_log(settings)
    await log.start()
    try:
        partitions = await log.partition_count(topics.events)
        wanted = range(partitions)
        if saga is not None and saga_id is not None:
            key = f"{object_name(saga)}/{saga_id}".encode()
            wanted = range(partition_for(key, partitions), partition_for(key, partitions) + 1)
        found: dict[bytes, SagaRecord] = {}
        for p in wanted:
            open_steps: dict[bytes, dict[str, list[dict[str, Any]]]] = {}
            async for record in log.read(topics.snapshots, p):
                names = _split(record.key)
                if names is None or record.value is None or not _match(names, saga, saga_id):
                    continue
                value = unpack(record.value)
                assert record.key is not None
                found[record.key] = SagaRecord(
                    saga=names[0],
                    saga_id=names[1],
                    partition=p,
                    state=SagaState.model_validate(value["s"]),
                    version=int(value["sv"]),
                )
            async for record in log.read(topics.events, p):
                names = _split(record.key)
                if names is None or record.value is None or not _match(names, saga, saga_id):
                    continue
                assert record.key is not None
                entry = unpack(record.value)
                rec = found.get(record.key)
                if rec is None:
                    rec = found[record.key] = SagaRecord(
                        saga=names[0], saga_id=names[1], partition=p, state=SagaState()
                    )
                invocation = str(entry["i"])
                if entry["k"] == "step":
                    open_steps.setdefault(record.key, {}).setdefault(invocation, []).append(_step_view(entry))
                    continue
                open_steps.get(record.key, {}).pop(invocation, None)
                if int(entry["sv"]) <= rec.version:
                    continue  # covered by the snapshot
                rec.version = int(entry["sv"])
                for envelope in entry.get("ev", ()):
                    apply(rec.state, events_codec.decode_envelope(envelope))
                if "err" in entry:
                    rec.failures.append({"handler": entry.get("h"), "invocation": invocation, "error": entry["err"]})
            for key, invocations in open_steps.items():
                if key in found:
                    found[key].in_flight = [s for steps in invocations.values() for s in steps]
        return [r for r in found.values() if r.state.status != "new" or r.failures]
    finally:
        await log.close()


def _match(names: tuple[str, str], saga: str | None, saga_id: str | None) -> bool:
    return (saga is None or names[0] == saga) and (saga_id is None or names[1] == saga_id)


def _step_view(entry: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "invocation": entry["i"],
        "index": entry.get("n"),
        "name": entry.get("name"),
        "attempts": entry.get("a"),
        "ms": (entry.get("t1") or 0) - (entry.get("t0") or 0),
    }
    if "err" in entry:
        view["error"] = entry["err"]
    else:
        view["result"] = entry.get("r")
    return view


async def find_saga(settings: Settings, saga_id: str, *, saga: str | None = None) -> SagaRecord:
    """The saga with this id (of definition `saga`, when ids repeat across definitions).

    Raises:
        SagaNotFoundError: no such saga in the log.
        SagaError: the id belongs to sagas of several definitions; pass `saga`.
    """
    records = await read_sagas(settings, saga=saga, saga_id=saga_id)
    if not records:
        raise SagaNotFoundError(
            f"no saga {saga_id!r}{f' of {saga!r}' if saga else ''} in namespace "
            f"{settings.namespace!r} (check --namespace and the backend options)"
        )
    if len(records) > 1:
        names = ", ".join(sorted(r.saga for r in records))
        raise SagaError(f"saga id {saga_id!r} exists in several sagas ({names}); pass --saga NAME")
    return records[0]
