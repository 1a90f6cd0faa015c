"""Read sagas straight from the log, for operators: no worker and no saga code needed.

A saga's state is the fold of its events, and the folds know nothing of the definition, so any
saga of any definition can be rebuilt here. Per partition: the latest snapshot of each
coordinator session, then the entries after it: ``done`` (a finished invocation and its
events) and ``sus`` (a wait, a durable backoff, with the events before it) are folded; ``step``
entries of an unfinished invocation, and the waits (``sus``, ``q``, ``dly``) not yet ended by a
``done`` entry, are shown as such. Entries of a kind this code does not know are skipped and
named (`SagaRecord.skipped_kinds`). Nothing is written.

The entries and snapshots are read through `actors.protocol`: the one place where the saga layer
meets that wire format.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from actors import Settings
from actors.inspection.reading import partitions_of, read_only_log
from actors.protocol import entries
from actors.protocol.entries import Completion, Done, OpenWaits, Step, Suspend, Unknown, Wait
from actors.protocol.large_values import LargeValues, snapshot_in_hand, with_events
from actors.protocol.snapshot import Snapshot
from eventstore import Record, Topics, partition_for

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
    waits: list[Wait] = field(default_factory=list)
    """Open waits of the coordinator: a durable backoff, and the messages queued behind it."""
    skipped_kinds: list[str] = field(default_factory=list)
    """Kinds of the entries this code could not read (written by a newer Tether), in log order."""

    @property
    def waiting(self) -> str | None:
        """What the saga waits for, in a few words; None when it does not wait."""
        timers = [w for w in self.waits if w.kind != "q"]
        queued = len(self.waits) - len(timers)
        if not self.waits:
            return None
        parts = []
        for w in timers:
            if w.parked:
                parts.append("parked behind a dead letter")
            elif w.until_ms is not None:
                parts.append(f"backoff until {iso_ms(w.until_ms)}")
            else:
                parts.append(f"awakeable {w.awakeable}")
        if queued:
            parts.append(f"{queued} message(s) queued behind it")
        return "; ".join(parts)


def iso_ms(ms: int) -> str:
    """Epoch ms as ISO 8601 UTC, to the second."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _split(key: bytes | None) -> tuple[str, str] | None:
    if key is None or not key.startswith(OBJECT_PREFIX.encode()):
        return None
    text = key.decode(errors="replace")
    obj, _, saga_id = text.partition("/")
    return obj[len(OBJECT_PREFIX) :], saga_id


class _Partition:
    """The sagas of one partition, folded from its snapshots and events records in order."""

    def __init__(self, partition: int, found: dict[bytes, SagaRecord]) -> None:
        self.partition = partition
        self.found = found
        self.codec = codec()
        self.open_steps: dict[bytes, dict[str, list[dict[str, Any]]]] = {}
        self.waits: dict[bytes, OpenWaits] = {}

    def snapshot(self, record: Record, names: tuple[str, str]) -> None:
        assert record.key is not None and record.value is not None
        snapshot = Snapshot.decode(record.value)
        self.found[record.key] = SagaRecord(
            saga=names[0],
            saga_id=names[1],
            partition=self.partition,
            state=SagaState.model_validate(snapshot.state),
            version=snapshot.version,
        )

    def event(self, record: Record, names: tuple[str, str]) -> None:
        assert record.key is not None and record.value is not None
        key = record.key
        rec = self.found.get(key)
        if rec is None:
            rec = self.found[key] = SagaRecord(
                saga=names[0], saga_id=names[1], partition=self.partition, state=SagaState()
            )
        entry = entries.read(record.value)
        if isinstance(entry, Unknown):
            rec.skipped_kinds.append(entry.kind)
            return
        invocation = entry.message_id
        if isinstance(entry, Step):
            self.open_steps.setdefault(key, {}).setdefault(invocation, []).append(_step_view(entry))
            return
        if isinstance(entry, Completion):
            return  # the resumed invocation writes what came of it
        self.waits.setdefault(key, OpenWaits()).see(entry)
        if isinstance(entry, Done):
            self.open_steps.get(key, {}).pop(invocation, None)
            if entry.error is not None:
                rec.failures.append({"handler": entry.handler, "invocation": invocation, "error": entry.error})
        if isinstance(entry, Done | Suspend) and entry.version > rec.version:  # else covered by the snapshot
            rec.version = entry.version
            for envelope in entry.events:
                apply(rec.state, self.codec.decode_envelope(envelope))

    def finish(self) -> None:
        for key, invocations in self.open_steps.items():
            if key in self.found:
                self.found[key].in_flight = [s for steps in invocations.values() for s in steps]
        for key, waits in self.waits.items():
            if key in self.found:
                self.found[key].waits = waits.open


async def read_sagas(settings: Settings, *, saga: str | None = None, saga_id: str | None = None) -> list[SagaRecord]:
    """Every saga in the namespace (optionally one definition, or one id), in log order.

    With both `saga` and `saga_id` only that saga's partition is read.

    Raises:
        NamespaceNotFoundError: the namespace has no topics (nothing is created).
    """
    topics = Topics(settings.namespace)
    async with read_only_log(settings) as log:
        partitions = await partitions_of(log, topics, topics.events)
        await partitions_of(log, topics, topics.snapshots)
        wanted = range(partitions)
        if saga is not None and saga_id is not None:
            key = f"{object_name(saga)}/{saga_id}".encode()
            wanted = range(partition_for(key, partitions), partition_for(key, partitions) + 1)
        found: dict[bytes, SagaRecord] = {}
        large = LargeValues.of(settings.runtime)
        for p in wanted:
            part = _Partition(p, found)
            async for record in log.read(topics.snapshots, p):
                names = _split(record.key)
                if names is not None and record.value is not None and _match(names, saga, saga_id):
                    value = await snapshot_in_hand(large, record.value, record.key or b"")
                    part.snapshot(dataclasses.replace(record, value=value), names)
            async for record in log.read(topics.events, p):
                names = _split(record.key)
                if names is not None and record.value is not None and _match(names, saga, saga_id):
                    part.event(await _events_in_hand(large, record), names)
            part.finish()
    return [r for r in found.values() if r.state.status != "new" or r.failures or r.waits or r.skipped_kinds]


async def _events_in_hand(large: LargeValues | None, record: Record) -> Record:
    """`record`, with the events of a ``done`` or ``sus`` entry that holds their blob reference."""
    assert record.value is not None
    if b"\xa3evb" not in record.value:  # the key ``evb`` (cheap: most entries hold their events)
        return record
    entry = entries.read(record.value)
    if not isinstance(entry, Done | Suspend) or entry.events_blob is None:
        return record
    session = (record.key or b"").decode(errors="replace")
    return dataclasses.replace(record, value=(await with_events(large, entry, session)).encode())


def _match(names: tuple[str, str], saga: str | None, saga_id: str | None) -> bool:
    return (saga is None or names[0] == saga) and (saga_id is None or names[1] == saga_id)


def _step_view(entry: Step) -> dict[str, Any]:
    view: dict[str, Any] = {
        "invocation": entry.message_id,
        "index": entry.index,
        "name": entry.name,
        "attempts": entry.attempts,
        "ms": (entry.ended_ms or 0) - (entry.started_ms or 0),
    }
    if entry.error is not None:
        view["error"] = entry.error
    else:
        view["result"] = entry.result
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
