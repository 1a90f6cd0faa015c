"""The partition processor: the single writer of one partition of inbox, events and snapshots.

Lifecycle: assigned -> fencing (a transactional writer per partition) -> restoring (snapshots,
then events from the last checkpoint) -> running -> revoked. While running, every message of the
partition is routed to its session's FIFO queue; sessions run in parallel; each finished
invocation adds its events, reply and the inbox offset to the next transaction. One transaction
is in flight at a time and takes everything that finished meanwhile (group commit), so the
commit cost is shared by many invocations under load.

The processor composes the parts that do this, each owning its concern:

- `intake`: where each inbox record goes, and the session queues that run them;
- `running`: one handler run (exclusive, with retries and deadline, or shared);
- `suspensions`: invocations that wait and what wakes them (on the `waits` table);
- `failures`: refusals, dead letters, cancellations, parking;
- `commits`: the group commit loop; `checkpointing`: checkpoint cadence, records, passivation;
- `outputs`: the records the partition writes and their size check; `routing`: handler lookup.

Beside them: `restore` (rebuilding a partition, which the processor adopts), `offsets` (the
inbox watermark to commit) and `protocol` (what is written to the topics). The processor itself
is what an invocation sees of its partition (`InvocationHost`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from eventstore.log import EventLog, TransactionalWriter
from eventstore.records import Record, TopicPartition
from eventstore.topics import Topics

from ..definitions import VirtualObject
from ..errors import PartitionLost
from ..observability.metrics import METRICS
from ..protocol.entries import Completion, Step
from ..protocol.inbox import Message
from ..protocol.large_values import LargeValues
from ..protocol.streams import StreamChunk
from ..settings import RuntimeSettings
from .checkpointing import Checkpoints
from .commits import GroupCommit
from .failures import Failures
from .intake import Intake
from .invocation import StepOverrides
from .offsets import OffsetTracker
from .outputs import PartitionOutputs
from .partition import Partition
from .partition_state import PartitionState
from .restore import RestoredPartition, restore
from .sessions import Session
from .step_blobs import StepBlobs
from .streaming import StreamTracker
from .waits import WaitTable

if TYPE_CHECKING:
    from ..client import Client

log = logging.getLogger("actors.runtime.processor")


class PartitionProcessor:
    """Owns partition `partition` of a namespace while its writer is not fenced."""

    def __init__(
        self,
        *,
        partition: int,
        partitions: int,
        log: EventLog,
        writer: TransactionalWriter,
        topics: Topics,
        objects: dict[str, VirtualObject[Any]],
        settings: RuntimeSettings,
        client: Client,
        on_failure: Callable[[int, BaseException], None],
        on_commit: Callable[[], None] = lambda: None,
        step_overrides: StepOverrides | None = None,
        offsets_in_every_commit: bool = False,
    ) -> None:
        self.partition = partition
        self.topics = topics
        self.group = topics.group()
        self.log = log
        self._writer = writer
        self.streams = StreamTracker(log, topics, partition, settings.max_message_bytes)
        self.objects = objects
        self.settings = settings
        self.step_blobs = StepBlobs.of(settings)
        """Where step results over the threshold go (`InvocationHost`)."""
        self.large = LargeValues.of(settings)
        """Where replies and messages over `blob_threshold_bytes` go (claim check)."""
        self.client = client
        """The client that `ctx.call` goes through (`InvocationHost`)."""
        self.step_overrides = step_overrides
        """Stubs of steps by name (`InvocationHost`; a test kit's, None in production)."""
        self._on_failure = on_failure
        self._on_commit = on_commit
        """Called after each committed transaction: the broker answered (ends a logged outage)."""
        self._offsets_always = offsets_in_every_commit
        self._outputs = PartitionOutputs(topics, partition, partitions, settings, self.group)
        self._restored_records = 0
        self._restored_events_records = 0
        self._compose(RestoredPartition(resume=-1))  # nothing committed yet: `restore` or `adopt` tells

    def _compose(self, restored: RestoredPartition) -> None:
        """Build the parts around the partition's state (at construction, and when adopting a restore)."""
        state = PartitionState(
            restored.sessions, restored.journals, restored.legacy_journals, restored.waits, restored.offsets
        )
        self.state = state
        """Sessions, open journals, waits and inbox offsets (the worker and the test kit read them)."""
        self.sessions: dict[bytes, Session] = state.sessions
        self.waits: WaitTable = state.waits
        self.offsets: OffsetTracker = state.offsets
        settings = self.settings
        self._checkpoints = Checkpoints(
            self.log, self.topics, self.partition, self.objects, settings, state, restored.checkpoint_start, self.large
        )
        self.commits = GroupCommit(
            self._writer,
            TopicPartition(self.topics.inbox, self.partition),
            self.group,
            settings,
            state.offsets,
            self._checkpoints,
            committed=restored.resume,
            on_commit=self._on_commit,
            on_failure=lambda exc: self._on_failure(self.partition, exc),
            offsets_in_every_commit=self._offsets_always,
        )
        partition = Partition(self.objects, settings, state, self._outputs, self.commits, self.streams, self.large)
        self._intake = Intake(partition, self, Failures(partition), on_task_failure=self.commits.fail)

    async def restore(self) -> int:
        """Rebuild sessions from snapshots and events; return the inbox offset to resume at."""
        clock = time.perf_counter()
        restored = await restore(
            self.log,
            self.topics,
            self.partition,
            self.group,
            objects=self.objects,
            settings=self.settings,
            large=self.large,
        )
        if METRICS.enabled:
            METRICS.restored(time.perf_counter() - clock, restored.records)
        self.adopt(restored)
        return restored.resume

    def adopt(self, restored: RestoredPartition) -> None:
        """Take over the state of a restore (before `start`)."""
        self._compose(restored)
        self._restored_records = restored.records
        self._restored_events_records = restored.events_records

    @property
    def writer(self) -> TransactionalWriter:
        """This partition's transactional writer (a new owner's writer fences it)."""
        return self._writer

    @writer.setter
    def writer(self, writer: TransactionalWriter) -> None:
        """Commit through `writer` from now on (a parked processor's fresh one; close the old)."""
        self._writer = writer
        self.commits.use(writer)

    @property
    def checkpoint_start(self) -> int:
        """Events offset where the last checkpoint (written or restored) starts a restore."""
        return self._checkpoints.start

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the commit loop, the timers and the queues a restore left with messages."""
        self.commits.start()
        self.waits.timers.start(self._intake.suspensions.wake)
        self._intake.start()

    async def stop(self, *, flush: bool = True) -> None:
        """Stop running sessions; commit what finished (if `flush`), then release the writer."""
        await self.waits.timers.stop()
        await self._intake.stop()
        if flush:
            await self.commits.flush()
        await self.commits.stop()
        await self._writer.close()
        invocations, transactions = self._intake.runner.invocations, self.commits.transactions
        if transactions:  # how well group commit grouped (see `commit_interval`)
            log.info(
                "partition %d stopped: %d invocations in %d transactions (%.1f each)",
                self.partition,
                invocations,
                transactions,
                invocations / transactions,
            )

    async def pause(self) -> bool:
        """Commit what finished, then hold: no transaction, no new invocation until `resume`.

        Running invocations stay in memory and wait at their next journaled step, so the
        processor can `resume` where it stopped (its partition came back to this worker before
        anyone else could own it) or be stopped without committing more (`stop(flush=False)`).
        False: the commit failed (or the processor had failed); stop it then.
        """
        return await self.commits.pause()

    def resume(self) -> None:
        """Go on after `pause`: commit what finished meanwhile, run what waits."""
        self.commits.resume()

    @property
    def paused(self) -> bool:
        """Between `pause` and `resume`."""
        return self.commits.paused

    def submit(self, record: Record) -> None:
        """Route one inbox record to its session (called in offset order)."""
        self._intake.submit(record)

    # -- what the worker, the test kit and bench read ---------------------------------------
    @property
    def failed(self) -> BaseException | None:
        """Why the partition was lost (a failed commit, a crashed task), if it was."""
        return self.commits.failed

    @property
    def stats(self) -> dict[str, int]:
        """Invocations finished and transactions committed here, records read by the restore."""
        return {
            "invocations": self._intake.runner.invocations,
            "transactions": self.commits.transactions,
            "restored_records": self._restored_records,
            "restored_events_records": self._restored_events_records,
        }

    @property
    def running(self) -> int:
        """Session drains and shared handlers running now (a test kit's view of activity)."""
        return self._intake.running

    @property
    def backlog(self) -> int:
        """Messages fetched but not finished."""
        return len(self.offsets)

    @property
    def committing(self) -> bool:
        """Whether records or step journals wait for the next transaction."""
        return self.commits.committing

    # -- InvocationHost --------------------------------------------------------------------
    def completion(self, awakeable: str) -> Completion | None:
        """The completion of `awakeable`, if it was resolved or rejected (`InvocationHost`)."""
        return self.waits.completion(awakeable)

    def step_limit(self, message: Message, index: int) -> int:
        """Bytes a journaled step result of `message` may take (the rest of its record is framing)."""
        return self._outputs.step_limit(message)

    async def stream_chunk(self, message: Message, chunk: StreamChunk) -> None:
        """Append a streamed chunk at once, outside the transactions (`InvocationHost`)."""
        await self.commits.open.wait()  # not while paused
        await self.streams.publish(message, chunk)

    async def journal_step(self, message: Message, step: Step) -> None:
        """Make one step durable (group-committed); returns once it is committed (`InvocationHost`)."""
        if self.failed is not None:
            raise PartitionLost(f"partition {self.partition} was lost: {self.failed}")
        record = self._outputs.event(message.session.encode(), step.encode())
        self.state.journaled(message, step)
        await self.commits.journal(record)
