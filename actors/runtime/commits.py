"""The group commit of one partition: one transaction in flight, taking all that finished meanwhile.

Every finished invocation, failure and journaled step adds its records to the pending batch;
the commit loop commits the batch (with the inbox offset now and then, and a checkpoint when
`Checkpoints.due` says so) while the next one fills. A commit that fails loses the partition:
every step waiting for its commit gets `PartitionLost`, and the worker is told.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from eventstore.errors import TetherError
from eventstore.lifecycle import cancel_and_wait
from eventstore.log import TransactionalWriter
from eventstore.records import OutRecord, TopicPartition

from ..clock import wait_for_event
from ..errors import PartitionLost
from ..observability.metrics import METRICS
from ..settings import RuntimeSettings
from .checkpointing import Checkpoints
from .offsets import NO_OFFSET, OffsetTracker

log = logging.getLogger("actors.runtime.processor")  # one logger for the partition's lifecycle


@dataclass
class _Batch:
    records: list[OutRecord] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    events_records: int = 0
    events: int = 0
    """Events (emitted by handlers) that the events records carry."""
    must_commit_offsets: bool = False
    pause_after: bool = False
    """Hold the loop once this batch committed (`pause`)."""


class GroupCommit:
    """The pending batch of partition `inbox.partition` and the loop that commits it."""

    def __init__(
        self,
        writer: TransactionalWriter,
        inbox: TopicPartition,
        group: str,
        settings: RuntimeSettings,
        offsets: OffsetTracker,
        checkpoints: Checkpoints,
        *,
        committed: int,
        on_commit: Callable[[], None],
        on_failure: Callable[[BaseException], None],
        offsets_in_every_commit: bool,
    ) -> None:
        self._writer, self._inbox, self._group = writer, inbox, group
        self.partition = inbox.partition
        """Where the transactions go: the writer, the inbox (whose offset they commit), the group."""
        self._interval = settings.offset_commit_interval
        self._linger = settings.commit_interval
        """The least time from one transaction's begin to the next (`commit_interval`)."""
        self._began = 0.0
        self._offsets = offsets
        """The inbox offsets: `finish` marks one finished, the loop commits their watermark."""
        self._checkpoints = checkpoints
        self._on_commit = on_commit
        """Called after each committed transaction."""
        self._on_failure = on_failure
        """Called once, when the partition is lost."""
        self._offsets_always = offsets_in_every_commit
        """Commit the inbox offset in every transaction: a writer fenced by the consumer group
        (KIP-447) is fenced by its offset commits, so a transaction without one would not be."""
        self._pending = _Batch()
        self._in_flight: list[asyncio.Future[None]] = []
        """The waiters of the transaction in flight (they fail too if the partition is lost)."""
        self._wake = asyncio.Event()
        self.open = asyncio.Event()
        """Cleared while paused: no transaction, and (the parts wait on it) no new invocation,
        attempt or streamed chunk, until `resume`."""
        self.open.set()
        self.committed = committed
        """The inbox offset last committed (or restored)."""
        self._offsets_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.failed: BaseException | None = None
        self.transactions = 0

    def use(self, writer: TransactionalWriter) -> None:
        """Commit through `writer` from now on (while paused: nothing is in flight)."""
        self._writer = writer

    @property
    def committing(self) -> bool:
        """Whether records or step journals wait for the next transaction."""
        return bool(self._pending.records or self._pending.waiters)

    @property
    def pending_records(self) -> int:
        """Records waiting for the next transaction."""
        return len(self._pending.records)

    # -- adding to the batch ---------------------------------------------------------------
    def finish(self, offset: int, records: list[OutRecord], *, events_records: int = 0, events: int = 0) -> None:
        """The message at inbox `offset` (or `NO_OFFSET`) is done: `records` commit with its offset."""
        self._pending.records.extend(records)
        self._pending.events_records += events_records
        self._pending.events += events
        if offset != NO_OFFSET:
            self._offsets.finish(offset)
        self._wake.set()

    def commit_offsets_soon(self) -> None:
        """The next transaction commits the inbox offset (nothing else records what finished)."""
        self._pending.must_commit_offsets = True

    def wake(self) -> None:
        """Let the loop look again (the offset may commit)."""
        self._wake.set()

    async def journal(self, record: OutRecord) -> None:
        """Commit one events record with the next transaction and return once it is committed."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.records.append(record)
        self._pending.waiters.append(waiter)
        self._pending.events_records += 1
        self._wake.set()
        try:
            await asyncio.shield(waiter)
        except TetherError as exc:
            raise PartitionLost(f"partition {self.partition} was lost: {exc}") from exc

    # -- the loop --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the commit loop."""
        self._task = asyncio.create_task(self._loop(), name=f"commit-p{self.partition}")

    async def flush(self) -> bool:
        """Commit what is pending, with the inbox offset (waits up to 30 s; logs if it cannot).

        False: the commit did not complete (or the partition was lost).
        """
        if self._task is None or self.failed is not None:
            return False
        self._pending.must_commit_offsets = True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.waiters.append(waiter)
        self.open.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), 30)
        except (TimeoutError, TetherError, PartitionLost):
            log.warning("partition %d: final commit did not complete", self.partition)
            return False
        return True

    async def pause(self) -> bool:
        """Commit what finished, then hold: no transaction until `resume`.

        False: the commit failed (or the partition was lost); stop the processor then.
        """
        if self.failed is not None or self._task is None:
            return False
        self._pending.pause_after = True
        committed = await self.flush()
        if not committed or self.failed is not None:
            return False
        self.open.clear()  # in case the loop resumed it meanwhile: hold for sure
        return True

    def resume(self) -> None:
        """Go on after `pause`: commit what finished meanwhile."""
        self.open.set()
        self._wake.set()

    @property
    def paused(self) -> bool:
        """Between `pause` and `resume`."""
        return not self.open.is_set()

    async def stop(self) -> None:
        """Stop the loop (what is pending is not committed: `flush` first)."""
        await cancel_and_wait(self._task)

    def fail(self, exc: BaseException) -> None:
        """The partition is lost (its first failure counts): fail the waiting steps, tell the owner."""
        if self.failed is not None:
            return
        self.failed = exc
        for waiter in self._in_flight + self._pending.waiters:
            if not waiter.done():
                waiter.set_exception(PartitionLost(f"partition {self.partition} lost: {exc}"))
        self._on_failure(exc)

    async def _loop(self) -> None:
        try:
            while True:
                await self.open.wait()  # not while paused
                if not await wait_for_event(self._wake, self._interval):
                    self._pending.must_commit_offsets = True  # idle: let the offset catch up
                self._wake.clear()
                watermark = self._offsets.watermark()
                pending = self._pending
                offsets_due = watermark != self.committed and pending.must_commit_offsets
                if not pending.records and not pending.waiters and not offsets_due:
                    continue
                if self._linger and not (pending.pause_after or pending.must_commit_offsets):  # flush, pause: now
                    await self._linger_since_last()
                    watermark = self._offsets.watermark()
                extra: list[OutRecord] = []
                checkpointed = False
                if self._checkpoints.due(pending.records, pending.events_records, pending.events):
                    extra = await self._checkpoints.records()  # empty if it had to be skipped
                    checkpointed = True
                    watermark = self._offsets.watermark()
                batch, self._pending = self._pending, _Batch()
                self._in_flight = batch.waiters
                # Done entries record their inbox offset, so a restore skips what finished even
                # if the committed offset lags; committing it only now and then saves two
                # round trips per transaction. Dead letters carry no done entry: commit then.
                commit_offsets = (
                    self._offsets_always
                    or watermark != self.committed
                    and (
                        bool(extra)
                        or batch.must_commit_offsets
                        or time.monotonic() - self._offsets_at >= self._interval
                    )
                )
                clock = time.perf_counter()
                self._began = time.monotonic()
                await self._commit(batch.records + extra, watermark if commit_offsets else None)
                if METRICS.enabled:
                    METRICS.committed(len(batch.records) + len(extra), time.perf_counter() - clock)
                self._on_commit()
                self._checkpoints.committed(
                    batch.records, batch.events_records, batch.events, checkpointed=checkpointed
                )
                if commit_offsets:
                    self.committed = watermark
                    self._offsets_at = time.monotonic()
                self.transactions += 1
                if batch.pause_after:
                    self.open.clear()
                for waiter in batch.waiters:
                    if not waiter.done():
                        waiter.set_result(None)
                if extra:
                    self._checkpoints.passivate()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.fail(exc)

    async def _linger_since_last(self) -> None:
        """Wait out the rest of `commit_interval` since the last transaction began.

        What finishes meanwhile joins the pending batch.
        """
        left = self._began + self._linger - time.monotonic()
        if left > 0:
            await asyncio.sleep(left)

    async def _commit(self, records: list[OutRecord], watermark: int | None) -> None:
        offsets = None if watermark is None else {self._inbox: watermark}
        await self._writer.commit(records, group_id=self._group, offsets=offsets)
