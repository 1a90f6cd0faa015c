"""When a partition writes a checkpoint, what it writes, and the sessions it then passivates.

The cadence (`cadence.CheckpointCadence`, asked through `Checkpoints.due` and
`Checkpoints.committed`): a checkpoint goes into the transaction once enough events records,
events or bytes committed since the last one. What it
holds is `restore.checkpoint_records`; after it commits, idle sessions over
`max_resident_sessions` drop their decoded state (`Checkpoints.passivate`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from eventstore.log import EventLog
from eventstore.records import OutRecord
from eventstore.topics import Topics

from ..definitions import VirtualObject
from ..protocol.large_values import LargeValues
from ..settings import RuntimeSettings
from .cadence import CheckpointCadence
from .partition_state import PartitionState
from .restore import checkpoint_records, snapshot_blobs
from .sessions import Session
from .stalls import runtime_section


class Checkpoints:
    """The checkpoints of one partition: their cadence, their records, passivation after them."""

    def __init__(
        self,
        log: EventLog,
        topics: Topics,
        partition: int,
        objects: dict[str, VirtualObject[Any]],
        settings: RuntimeSettings,
        state: PartitionState,
        start: int,
        large: LargeValues | None = None,
    ) -> None:
        self._log = log
        self._objects = objects
        self._where = (topics, partition)
        self._settings = settings
        self._state = state
        self._large = large
        self.start = start
        """Events offset where the last checkpoint (written or restored) starts a restore."""
        self._cadence = CheckpointCadence(settings, topics.events)
        """When the next checkpoint is due (`cadence`: by events records, events and bytes)."""

    # -- cadence ---------------------------------------------------------------------------
    def due(self, records: Sequence[OutRecord], entries: int, events: int) -> bool:
        """Whether the next transaction (`records`, with `entries` events records carrying `events`) checkpoints."""
        return self._cadence.due(records, entries, events)

    def committed(self, records: Sequence[OutRecord], entries: int, events: int, *, checkpointed: bool) -> None:
        """A transaction committed (with a checkpoint or not)."""
        self._cadence.committed(records, entries, events, checkpointed=checkpointed)

    # -- records ---------------------------------------------------------------------------
    async def records(self) -> list[OutRecord]:
        """Snapshots of the changed sessions and the checkpoint record (empty if it had to be skipped)."""
        topics, partition = self._where
        await fold_tails(self._state.sessions.values(), self._objects, self._settings.retention_ms)
        state_blobs = await snapshot_blobs(self._state.sessions.values(), self._large)
        end = await self._log.end_offset(topics.events, partition)
        with runtime_section(f"a checkpoint of partition {partition}"):
            records, self.start = self._records(state_blobs, end)
        return records

    def _records(self, state_blobs: dict[bytes, tuple[int, str]], start: int) -> tuple[list[OutRecord], int]:
        topics, partition = self._where
        return checkpoint_records(
            state_blobs=state_blobs,
            start=start,
            sessions=self._state.sessions.values(),
            objects=self._objects,
            settings=self._settings,
            topics=topics,
            partition=partition,
            journals=self._state.journals,
            legacy_journals=self._state.legacy_journals,
            offsets=self._state.offsets,
            waits=self._state.waits,
            checkpoint_start=self.start,
        )

    def passivate(self) -> None:
        """Drop the decoded state of the idle, clean sessions over `max_resident_sessions`."""
        with runtime_section(f"passivating sessions of partition {self._where[1]}"):
            passivate(self._state.sessions.values(), self._settings.max_resident_sessions)


FOLD_SLICE_SECONDS = 0.02
"""How long `fold_tails` folds before it lets the event loop run."""


async def fold_tails(sessions: Iterable[Session], objects: dict[str, VirtualObject[Any]], retention_ms: int) -> None:
    """Fold the restored tails of the changed sessions, letting the event loop in between.

    A checkpoint snapshots every changed session, and one right after a long restore finds
    thousands whose restored entries are still encoded (a session folds its tail on first
    use). Folding them all inside the synchronous `checkpoint_records` blocked the loop for as
    long as that took: no heartbeat, no reply, for seconds with a large partition. Here they
    are folded first, a slice at a time; a session's own fold is not split (the restore bounds
    a tail's size, `restore_buffer_bytes`). Folding early is what the session's next message
    would do anyway; `checkpoint_records` then folds only what changed since.
    """
    pending = [s for s in list(sessions) if s.dirty and s.tail and s.object_name in objects]
    loop = asyncio.get_running_loop()
    n = 0
    while n < len(pending):
        until = loop.time() + FOLD_SLICE_SECONDS
        with runtime_section("folding restored sessions for a checkpoint"):
            while n < len(pending) and loop.time() < until:
                pending[n].load(objects[pending[n].object_name], retention_ms)
                n += 1
        await asyncio.sleep(0)


def passivate(sessions: Iterable[Session], max_resident: int) -> None:
    """Passivate the least recently used idle, clean sessions of `sessions` over `max_resident`."""
    resident = [s for s in sessions if s.state is not None]
    excess = len(resident) - max_resident
    if excess <= 0:
        return
    idle = sorted((s for s in resident if not s.running and not s.dirty), key=lambda s: s.last_used)
    for session in idle[:excess]:
        session.passivate(session.to_snapshot().encode())
