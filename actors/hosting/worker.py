"""A worker: one process hosting the partition processors of the partitions it is assigned."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from eventstore import EventLog, ProducerFencedError, TopicPartition, Topics, UsageError, open_log
from eventstore.kafka import KafkaLog
from eventstore.kafka.consumer import KafkaConsumer
from eventstore.kafka.group_writer import GroupCommitWriter
from eventstore.lifecycle import AsyncResource, cancel_and_wait
from eventstore.log import LogConsumer, TransactionalWriter

from ..client import Client
from ..definitions import VirtualObject
from ..observability import redaction, tracing
from ..observability.metrics import METRICS, WorkerSnapshot, serve_metrics
from ..runtime.invocation import StepOverrides
from ..runtime.processor import PartitionProcessor
from ..runtime.stalls import LoopWatchdog
from ..settings import Settings
from .logs import broker_answered
from .parking import LogMark, Parked, Tenure, may_check, may_resume

log = logging.getLogger(__name__)

SUBMIT_SLICE = 256
"""Inbox records routed between two yields to the event loop."""


class Worker(AsyncResource):
    """Consumes the inbox as a member of the namespace's group and runs its partitions.

    Use as ``async with Worker([agent]) as worker: await worker.wait()``, or `tether serve`.
    """

    def __init__(
        self,
        objects: Sequence[VirtualObject[Any]],
        settings: Settings | None = None,
        *,
        log: EventLog | None = None,
        step_overrides: StepOverrides | None = None,
    ) -> None:
        """Serve `objects`; `step_overrides` replaces steps by name (test kits only)."""
        if not objects:
            raise UsageError("a worker needs at least one session type to serve")
        self.objects = {o.name: o for o in objects}
        if len(self.objects) != len(objects):
            raise UsageError("two session types share a name")
        self.settings = settings or Settings()
        self.topics = Topics(self.settings.namespace)
        self._log = log or open_log(self.settings)
        self._owns_log = log is None
        self.step_overrides = step_overrides
        self.processors: dict[int, PartitionProcessor] = {}
        self._consumer: LogConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._failed: dict[int, BaseException] = {}
        self._restoring: dict[int, asyncio.Task[None]] = {}
        """Restores in flight, by partition: they run outside the group's rebalance callback."""
        self._restore_failed: set[int] = set()
        self._parked: dict[int, Parked] = {}
        """Processors of revoked partitions, paused until the group says whose they are now."""
        self._installs: dict[int, int] = {}
        """How many times a processor was put in place for each partition (fetch hand-out)."""
        self.kept = 0
        """Partitions that came back in the next generation and resumed without a restore."""
        self._partitions = 0
        self._group_writer: GroupCommitWriter | None = None
        """With ``kafka.transactions=per_worker``: the one producer of all partitions."""
        self.client = Client(self.settings, log=self._log)
        self._stopping = asyncio.Event()
        kafka = self.settings.resolved_backend == "kafka"
        self.watchdog = LoopWatchdog(
            self.settings.runtime.stall_warning,
            session_timeout=self.settings.kafka.session_timeout_ms / 1000 if kafka else None,
        )
        """Counts (and logs) the times handler code blocked this worker's event loop."""
        self.metrics_snapshot = WorkerSnapshot()
        """Gauges for the metrics endpoint, refreshed every `metrics_interval` s while it is served."""
        self._gauges: asyncio.Task[None] | None = None
        self.metrics_port: int | None = None
        """The port metrics are served on (None: not served)."""

    async def start(self) -> None:
        """Join the group; partitions are restored as they are assigned."""
        runtime = self.settings.runtime
        redaction.install(redaction.load_redactor(runtime.redact))
        tracing.trace_unsampled(runtime.trace_unsampled)
        if runtime.metrics_port is not None:
            self.metrics_port = serve_metrics(runtime.metrics_port)
            log.info("metrics on http://0.0.0.0:%d/metrics", self.metrics_port)
            METRICS.watch(self)
            self._gauges = asyncio.create_task(self._refresh_gauges(runtime.metrics_interval), name="tether-gauges")
        if self._owns_log:
            await self._log.start()
        await self._log.create_topics(self.topics.specs(self.settings.partitions))
        self._partitions = await self._log.partition_count(self.topics.inbox)
        self.settings.check_partitions(self.topics.inbox, self._partitions)
        await self.client.start()
        self._consumer = await self._log.consumer(self.topics.inbox, group_id=self.topics.group(), listener=self)
        self._group_writer = await self._open_group_writer(self._consumer)
        self._task = asyncio.create_task(self._run(), name="tether-worker")
        self.watchdog.start()
        log.info(
            "worker %d started: namespace %s, serving %s", os.getpid(), self.settings.namespace, ", ".join(self.objects)
        )

    @property
    def stats(self) -> dict[str, int]:
        """Invocations finished and transactions committed by the partitions this worker owns now.

        With ``kafka.transactions=per_worker`` the transactions are those of the worker's one
        producer, which its partitions share (each counted once); the ratio of the two is how many
        invocations a transaction carried (see `commit_interval`).
        """
        stats = [p.stats for p in list(self.processors.values())]
        invocations = sum(st["invocations"] for st in stats)
        if self._group_writer is not None:
            transactions = self._group_writer.transactions
        else:
            transactions = sum(st["transactions"] for st in stats)
        return {"invocations": invocations, "transactions": transactions, "partitions": len(stats)}

    async def _open_group_writer(self, consumer: LogConsumer) -> GroupCommitWriter | None:
        """One transactional producer for every partition, fenced by the group (``per_worker``)."""
        if self.settings.kafka.transactions != "per_worker":
            return None
        if not isinstance(self._log, KafkaLog) or not isinstance(consumer, KafkaConsumer):
            return None  # the embedded log: `kafka.*` settings are the Kafka backend's, not its
        # A static member's restart fences its previous producer by id as well.
        instance = self.settings.kafka.group_instance_id or uuid.uuid4().hex[:12]
        return await self._log.group_writer(f"{self.settings.namespace}-worker-{instance}", consumer.group_metadata)

    async def wait(self) -> None:
        """Run until `stop` is called (or the fetch loop fails)."""
        assert self._task is not None
        stop = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({self._task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if self._task.done() and not self._task.cancelled() and self._task.exception():
            raise self._task.exception()  # type: ignore[misc]

    async def stop(self) -> None:
        """Commit what finished, leave the group, release every partition."""
        self._stopping.set()
        await self.watchdog.stop()
        await cancel_and_wait(self._gauges)
        self._gauges = None
        METRICS.unwatch(self)
        await cancel_and_wait(self._task)
        self._task = None
        await self._cancel_restores(set(self._restoring))
        if self._consumer is not None:
            await self._consumer.close()  # revokes, which stops the processors
            self._consumer = None
        await self.on_revoked(set(self.processors))
        await self._drop_parked(set(self._parked))
        if self._group_writer is not None:
            await self._group_writer.close()
            self._group_writer = None
        await self.client.close()
        if self._owns_log:
            await self._log.close()

    async def close(self) -> None:
        """The same as `stop`: how ``async with`` (`AsyncResource`) ends a worker."""
        await self.stop()

    # -- PartitionListener -----------------------------------------------------------------
    async def on_assigned(self, partitions: set[int]) -> None:
        """Fence, restore and start the processors of newly assigned partitions.

        Restores run as tasks of their own and this returns at once: a restore inside the
        group's rebalance callback sends no heartbeat until it ends, so one longer than the
        session timeout got the worker expelled, and restored again, in a loop. Until its
        restore ends, a partition's fetched records are dropped; the restore then seeks the
        partition back to where it resumes, so nothing is skipped.
        """
        now = self._tenure()
        candidates = [p for p in sorted(set(self._parked) & partitions) if self._parked[p].processor.failed is None]
        checked = await asyncio.gather(*(self._may_resume(self._parked[p], now) for p in candidates))
        for p, resumable in zip(candidates, checked, strict=True):
            if not resumable or now is None:
                continue
            parked = self._parked.pop(p)
            self._install(p, parked.processor)
            parked.processor.resume()
            assert self._consumer is not None
            # Where it stopped reading: every earlier record was handed to it.
            self._consumer.seek(p, parked.processor.offsets.next)
            self.kept += 1
            METRICS.kept()
            log.info(
                "partition %d kept across the rebalance (generation %d -> %d): resumed, not restored",
                p,
                parked.tenure.generation,
                now.generation,
            )
        await self._drop_parked(set(self._parked))
        for p in sorted(partitions):
            if p not in self.processors and p not in self._restoring:
                self._start_restore(p)

    async def on_revoked(self, partitions: set[int]) -> None:
        """Pause (or stop) the processors of partitions taken away, committing what finished.

        With ``kafka.rebalance=sticky`` a Kafka group member parks them: `on_assigned` resumes
        those it gets back in the next generation and stops the others (see `parking`).
        """
        await self._cancel_restores(partitions)
        tenure = self._tenure() if not self._stopping.is_set() else None
        if tenure is None:
            await asyncio.gather(*(self._release(p) for p in partitions))
        else:
            await asyncio.gather(*(self._park(p, tenure) for p in partitions))

    def _tenure(self) -> Tenure | None:
        """This worker's group membership now, if its processors may be kept across rebalances."""
        consumer = self._consumer
        if self.settings.kafka.rebalance != "sticky" or not isinstance(consumer, KafkaConsumer):
            return None  # the embedded log has no group; "eager" restores every time
        try:
            membership = consumer.group_metadata()
        except UsageError:
            return None
        if membership.generation < 0:
            return None  # no longer a member (expelled): whatever it held may have moved
        return Tenure(membership.generation, membership.member_id)

    async def _park(self, p: int, tenure: Tenure) -> None:
        processor = self.processors.pop(p, None)
        if processor is None:
            return
        if processor.failed is None and await processor.pause():
            try:
                mark = await self._mark(p)
            except Exception as exc:  # cannot tell later whether the log changed: restore then
                log.warning("partition %d: not parked (%r)", p, exc)
            else:
                self._parked[p] = Parked(processor, tenure, mark)
                return
        await processor.stop(flush=False)

    async def _mark(self, p: int) -> LogMark:
        events_end = await self._log.end_offset(self.topics.events, p)
        committed = await self._log.committed(self.topics.group(), TopicPartition(self.topics.inbox, p))
        return LogMark(events_end, committed)

    async def _may_resume(self, parked: Parked, now: Tenure | None) -> bool:
        """Whether `parked` can go on without a restore (see `parking`)."""
        if now is None:
            return False
        if may_resume(parked.tenure, now):
            return True
        if not may_check(parked.tenure, now):
            return False
        p = parked.processor.partition
        try:
            # Fences whoever wrote the partition meanwhile, so the log read next is final.
            writer = await self._fence_previous_owners(p)
            if writer is not None:
                old, parked.processor.writer = parked.processor.writer, writer
                await old.close()
            mark = await self._mark(p)
        except Exception as exc:
            log.warning("partition %d: cannot check its log (%r); restoring it", p, exc)
            return False
        if mark != parked.mark:
            log.info("partition %d was written meanwhile (%s, parked at %s); restoring it", p, mark, parked.mark)
            return False
        return True

    async def _drop_parked(self, partitions: set[int]) -> None:
        """Stop parked processors without committing: their partitions will be restored."""
        dropped = [self._parked.pop(p) for p in partitions if p in self._parked]
        for parked in dropped:
            log.info("partition %d: its parked processor is dropped (restored if assigned)", parked.processor.partition)
        stops = [parked.processor.stop(flush=False) for parked in dropped]
        for parked, result in zip(dropped, await asyncio.gather(*stops, return_exceptions=True), strict=True):
            if isinstance(result, Exception):  # its writer is closed or fenced either way
                log.warning("partition %d: stopping a parked processor failed: %r", parked.processor.partition, result)

    def _install(self, p: int, processor: PartitionProcessor) -> None:
        self.processors[p] = processor
        self._installs[p] = self._installs.get(p, 0) + 1

    def _start_restore(self, p: int, *, delay: float = 0.0) -> None:
        task = asyncio.create_task(self._take(p, delay=delay), name=f"tether-restore-p{p}")
        self._restoring[p] = task

        def done(finished: asyncio.Task[None]) -> None:
            if self._restoring.get(p) is finished:
                del self._restoring[p]
            if not finished.cancelled() and finished.exception() is not None:
                exc = finished.exception()
                assert exc is not None
                log.error("partition %d: restore failed (%r); will retry", p, exc)
                self._failed[p] = exc
                self._restore_failed.add(p)

        task.add_done_callback(done)

    async def _fence_previous_owners(self, p: int) -> TransactionalWriter | None:
        """Fence every earlier writer of partition `p`, whichever transaction scheme it ran.

        Returns this worker's writer for `p` under ``per_partition``, None under ``per_worker``
        (its processors share `_group_writer`). Both fences are made under both schemes, so a
        rolling switch between them (owners of both kinds in the group for a while) is safe:
        a ``per_partition`` zombie is fenced only by a newer producer of ``{ns}-pp-{p}`` (which
        also ends its open transaction); a ``per_worker`` zombie's transaction that passed its
        offset commit before the rebalance may still commit, so the new owner waits until
        nothing is open on the partition's events (`KafkaLog.settle`), and any transaction
        the zombie begins later is refused at its offset commit.
        """
        writer = await self._log.writer(f"{self.settings.namespace}-pp-{p}")
        try:
            if isinstance(self._log, KafkaLog):
                await self._log.settle(self.topics.events, p)
        except BaseException:
            await writer.close()
            raise
        if self._group_writer is None:
            return writer
        await writer.close()
        return None

    def _group_writer_shared(self) -> TransactionalWriter:
        assert self._group_writer is not None
        return self._group_writer.shared()

    async def _cancel_restores(self, partitions: set[int]) -> None:
        await cancel_and_wait(*[self._restoring.pop(p) for p in partitions if p in self._restoring])

    async def _take(self, p: int, *, delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)
        own = await self._fence_previous_owners(p)
        writer: TransactionalWriter = own if own is not None else self._group_writer_shared()
        processor = PartitionProcessor(
            partition=p,
            partitions=self._partitions,
            log=self._log,
            writer=writer,
            topics=self.topics,
            objects=self.objects,
            settings=self.settings.runtime,
            client=self.client,
            on_failure=self._on_failure,
            on_commit=broker_answered,
            step_overrides=self.step_overrides,
            offsets_in_every_commit=self._group_writer is not None,
        )
        try:
            resume = await processor.restore()
        except BaseException:
            await writer.close()
            raise
        assert self._consumer is not None
        if p not in self._consumer.assignment():  # revoked while it restored
            log.info("partition %d was revoked while it restored; released", p)
            await writer.close()
            return
        processor.start()
        self._install(p, processor)
        self._consumer.seek(p, resume)

    async def _release(self, p: int, *, flush: bool = True) -> None:
        processor = self.processors.pop(p, None)
        if processor is not None:
            await processor.stop(flush=flush)

    def _on_failure(self, p: int, exc: BaseException) -> None:
        if isinstance(exc, ProducerFencedError):
            log.warning("partition %d: fenced by a newer owner (%s)", p, exc)
        else:
            log.error("partition %d failed (%r); restoring it from the log", p, exc)
        self._failed[p] = exc

    async def _recover(self) -> None:
        failed, self._failed = self._failed, {}
        assert self._consumer is not None
        # A group-fenced writer is refused when the group has moved on; the partitions it still
        # holds after the rejoin are its own again (a newer producer with its id ends it all).
        group_fenced = self._group_writer is not None and not self._group_writer.fenced
        for p, exc in failed.items():
            parked = self._parked.get(p)
            if parked is not None:
                if parked.processor.failed is not None:
                    await self._drop_parked({p})  # the next assignment restores it
                continue  # the next assignment decides
            current = self.processors.get(p)
            if current is not None and current.failed is None:
                continue  # an older processor's failure: the partition was taken again since
            await self._release(p, flush=False)
            if p in self._restoring:
                continue  # (re)assigned meanwhile: its restore is under way
            if group_fenced and isinstance(exc, ProducerFencedError) and p in self._consumer.assignment():
                self._start_restore(p, delay=1.0)
            elif not isinstance(exc, ProducerFencedError) and p in self._consumer.assignment():
                # A failed restore waits a second before it is tried again; a failed partition not.
                self._start_restore(p, delay=1.0 if p in self._restore_failed else 0.0)
            self._restore_failed.discard(p)

    # -- gauges ----------------------------------------------------------------------------
    async def _refresh_gauges(self, interval: float) -> None:
        """Take `metrics_snapshot` on the event loop (a scrape thread must not walk the sessions)."""
        while True:
            if not METRICS.enabled:  # turned off in this process (`METRICS.enable(False)`)
                await asyncio.sleep(interval)
                continue
            snap = WorkerSnapshot(partitions=len(self.processors))
            for p, processor in list(self.processors.items()):
                snap.resident += sum(1 for s in list(processor.sessions.values()) if s.state is not None)
                snap.suspended += len(processor.waits.suspended)
                snap.timers += len(processor.waits.timers)
                try:
                    end = await self._log.end_offset(self.topics.inbox, p)
                except asyncio.CancelledError:
                    raise
                except Exception:  # an outage: keep the last value of this partition
                    end = None
                if end is not None:
                    snap.lag[p] = max(0, end - self._finished_to(p, processor))
                elif p in self.metrics_snapshot.lag:
                    snap.lag[p] = self.metrics_snapshot.lag[p]
            self.metrics_snapshot = snap
            await asyncio.sleep(interval)

    def _finished_to(self, p: int, processor: PartitionProcessor) -> int:
        """The inbox offset of partition `p` before which everything is finished, for the lag.

        The watermark, or, when every record fetched so far is finished, the consumer's
        position: the last record of a transactional write is followed by its commit marker,
        which the watermark (last record + 1) does not pass, so a partition at rest would show
        a lag of one per write otherwise.
        """
        watermark = processor.offsets.watermark()
        if len(processor.offsets) == 0 and self._consumer is not None:
            position = self._consumer.position(p)
            if position is not None and position > watermark:
                return position
        return watermark

    # -- fetch loop ------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        limit = self.settings.runtime.max_backlog
        fetch_failing = False
        while True:
            if self._failed:
                await self._recover()
            if sum(p.backlog for p in self.processors.values()) >= limit:
                await asyncio.sleep(0.005)
                continue
            try:
                records = await consumer.fetch(self.settings.runtime.fetch_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not fetch_failing:  # once per outage, not twice a second
                    log.warning("fetching the inbox failed (%r); retrying every 0.5 s", exc, exc_info=True)
                fetch_failing = True
                await asyncio.sleep(0.5)
                continue
            if fetch_failing:
                log.warning("fetching the inbox again")
                fetch_failing = False
            # Only the processors that owned their partition when the batch was fetched get
            # its records. A restore that ends while the batch is handed out (at a slice
            # boundary below) seeks its partition back to where it resumes: the records of
            # this batch before that point were dropped, and handing it the ones after would
            # make it see offset n+1 before n, and skip n when the consumer re-reads it.
            # A processor parked and resumed meanwhile is the same object, put in place again.
            owners = {p: (processor, self._installs.get(p, 0)) for p, processor in self.processors.items()}
            for n, record in enumerate(records, 1):
                processor, installs = owners.get(record.partition, (None, 0))
                if (
                    processor is not None
                    and processor.failed is None
                    and self.processors.get(record.partition) is processor
                    and self._installs.get(record.partition) == installs
                ):
                    processor.submit(record)
                if n % SUBMIT_SLICE == 0:
                    # A fetch can hold thousands of records (a backlog after a restore): let
                    # heartbeats, commits and running sessions in between slices.
                    await asyncio.sleep(0)


def load_objects(spec: str) -> list[VirtualObject[Any]]:
    """Import ``module:attribute`` naming a `VirtualObject` or an iterable of them."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"expected MODULE:OBJECT, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name!r}: {exc}") from exc
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"{module_name!r} has no attribute {attr!r}") from None
    if isinstance(target, VirtualObject):
        return [target]
    if isinstance(target, Iterable) and all(isinstance(o, VirtualObject) for o in target):
        return list(target)
    raise UsageError(f"{spec} is neither a VirtualObject nor a list of them")


async def serve(
    objects: Sequence[VirtualObject[Any]],
    settings: Settings | None = None,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run a worker until SIGTERM or SIGINT, then stop it cleanly.

    `on_ready` is called once the worker has started, with one line saying what it serves:
    namespace, backend (and where), partitions and process id.
    """
    async with Worker(objects, settings) as worker:
        if on_ready is not None:
            s = worker.settings
            if s.resolved_backend == "kafka":
                where = f"kafka at {s.kafka.bootstrap_servers}"
            else:
                where = f"embedded log in {Path(s.data_dir).resolve()}"
            partitions = await worker._log.partition_count(worker.topics.inbox)
            on_ready(
                f"tether serve: ready; namespace {s.namespace}, {where}, {partitions} partitions, pid {os.getpid()}"
            )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker._stopping.set)
        await worker.wait()
