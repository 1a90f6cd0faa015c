"""`SessionTestKit`: a user's session types on the real runtime, on a temporary log, in virtual time.

The kit runs a real `Worker` (the partition processors, restore, checkpoints, dead letters) on
the embedded log in a temporary directory and a real `Client`, so what a test sees is what
production does; only the clock is virtual (`VirtualClock`) and steps can be stubbed by name
(`StepStubs`). While a test waits for a reply and nothing in the runtime can move without the
clock (every running session is in a backoff, or waits on a timer), the kit moves the clock to
the next due timer or backoff: a handler that sleeps for a day answers in milliseconds.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from eventstore import EventLog, Topics, open_log, partition_for
from eventstore.blobs import BlobStore
from eventstore.codec import pack, unpack
from eventstore.errors import TetherError, UsageError
from eventstore.lifecycle import cancel_and_wait

from ..client import Client
from ..clock import Clock, install
from ..definitions import Handler, VirtualObject
from ..hosting.worker import Worker
from ..protocol import entries
from ..protocol.deadletter import DeadLetterHeaders
from ..protocol.entries import Done, Step, Suspend
from ..protocol.inbox import session_key
from ..protocol.large_values import LargeValues, entry_in_hand
from ..protocol.snapshot import Snapshot
from ..runtime.circuits import Breakers
from ..settings import RuntimeSettings, Settings
from .clock import START_MS, VirtualClock
from .errors import RoundTripError, SessionTestKitError
from .stubs import UNSET, ErrorSpec, StepStub, StepStubs

O = TypeVar("O", bound=BaseModel | None)  # noqa: E741 - a handler's output

_POLL = 0.001
"""Real seconds between two looks at the runtime while the kit waits for it."""
_QUIET_LOOKS = 3
"""Consecutive looks that must find nothing moving before the runtime counts as settled."""


class _TrackedBlobs:
    """The kit client's blob store, counting the reads and writes in flight.

    A call's payload is written before its message is sent and a reply by reference is read
    after it arrives; meanwhile nothing in the log moves, so the kit must not take the
    runtime for settled (and skip time, or give up) while one is in flight.
    """

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.busy = 0

    async def put(self, data: bytes) -> str:
        self.busy += 1
        try:
            return await self.store.put(data)
        finally:
            self.busy -= 1

    async def get(self, ref: str) -> bytes:
        self.busy += 1
        try:
            return await self.store.get(ref)
        finally:
            self.busy -= 1


@dataclass(frozen=True)
class StepRun:
    """One journaled step of a call: its name, attempts, and result (as journaled) or error."""

    name: str
    attempts: int
    result: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter the kit's runtime wrote: its headers, decoded."""

    headers: DeadLetterHeaders
    value: bytes | None

    @property
    def error_class(self) -> str:
        """The class name of the error that dead-lettered the message."""
        return self.headers.error_class or ""

    @property
    def category(self) -> str:
        """``terminal``, ``exhausted``, ``poison`` or ``oversize``."""
        return self.headers.category or ""


@dataclass(frozen=True)
class CallResult(Generic[O]):
    """What one call did: its reply or typed error, the events it emitted, the state after, its steps."""

    message_id: str
    reply: O | None
    error: TetherError | None
    events: list[BaseModel]
    state: BaseModel
    steps: list[StepRun]

    @property
    def ok(self) -> bool:
        """Whether the handler replied (no error)."""
        return self.error is None

    def value(self) -> O | None:
        """The reply; raises the call's error if it failed."""
        if self.error is not None:
            raise self.error
        return self.reply

    def step(self, name: str) -> StepRun:
        """The step run named `name` (the last one, if it ran more than once)."""
        for run in reversed(self.steps):
            if run.name == name:
                return run
        raise KeyError(f"no step {name!r} in this call (steps: {[s.name for s in self.steps]})")


@dataclass
class PendingCall(Generic[O]):
    """A call sent by `SessionTestKit.start` whose reply is not awaited yet."""

    kit: SessionTestKit
    handler: Handler[Any, Any, O]
    key: str
    message_id: str
    task: asyncio.Task[O] = field(repr=False)

    @property
    def done(self) -> bool:
        """Whether the reply (or error) came."""
        return self.task.done()

    async def result(self, *, auto_skip: bool | None = None) -> CallResult[O]:
        """Wait for the reply, moving virtual time on when nothing else can run (unless told not to)."""
        return await self.kit._finish(self, auto_skip=self.kit.auto_skip if auto_skip is None else auto_skip)


@dataclass(frozen=True)
class Wait:
    """An invocation that waits: for its timer (`wake_at`), an awakeable, or both."""

    session: str
    handler: str
    message_id: str
    awakeable: str | None
    wake_at: datetime | None


class SessionTestKit:
    """Run session types (and saga coordinators) on the real runtime in virtual time.

    Example::

        async with SessionTestKit(agent) as kit:
            result = await kit.call(ask, "s1", Ask(question="why?"))
            assert result.reply == Answer(text="...")
            assert [s.name for s in result.steps] == ["llm:draft", "tool:web", "tool:docs", "llm:final"]
            await kit.restart()  # rebuilt from the log; states, events and steps round-trip
    """

    def __init__(
        self,
        *objects: VirtualObject[Any] | Sequence[VirtualObject[Any]],
        start: datetime | None = None,
        partitions: int = 1,
        runtime: RuntimeSettings | None = None,
        data_dir: Path | None = None,
        auto_skip: bool = True,
        call_timeout: float = 60.0,
    ) -> None:
        flat: list[VirtualObject[Any]] = []
        for item in objects:
            flat.extend([item] if isinstance(item, VirtualObject) else item)
        if not flat:
            raise UsageError("a SessionTestKit needs at least one session type")
        self.objects = {o.name: o for o in flat}
        self._owns_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="tether-kit-"))
        self.settings = Settings(
            data_dir=self.data_dir,
            namespace="testkit",
            partitions=partitions,
            backend="embedded",
            runtime=runtime or RuntimeSettings(),
        )
        self.topics = Topics(self.settings.namespace)
        self.clock = VirtualClock(int(start.timestamp() * 1000) if start is not None else START_MS)
        self.stubs = StepStubs()
        self.auto_skip = auto_skip
        self.call_timeout = call_timeout
        self._previous_clock: Clock | None = None
        self._log: EventLog | None = None
        self._worker: Worker | None = None
        self._client: Client | None = None
        self._large: LargeValues | None = None
        """The blob store `runtime` names, if any: the kit reads values kept there back."""
        self._client_blobs: _TrackedBlobs | None = None
        self._calls: set[asyncio.Task[Any]] = set()
        """Calls sent and not answered yet (cancelled when the kit closes)."""

    # -- lifecycle -------------------------------------------------------------------------
    async def __aenter__(self) -> SessionTestKit:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Install the virtual clock, open the log, start the worker and the client."""
        self._previous_clock = install(self.clock)
        Breakers.reset()
        self._large = LargeValues.of(self.settings.runtime)
        self._log = open_log(self.settings)
        await self._log.start()
        await self._start_worker()
        self._client = Client(self.settings, log=self._log)
        large = self._client._large  # noqa: SLF001 - the kit watches the client's blob I/O
        if large is not None:
            self._client_blobs = large.store = _TrackedBlobs(large.store)
        await self._client.start()

    async def close(self) -> None:
        """Stop everything, put the real clock back, delete the temporary directory."""
        try:
            await cancel_and_wait(*self._calls)
            if self._client is not None:
                await self._client.close()
            if self._worker is not None:
                await self._worker.stop()
            if self._log is not None:
                await self._log.close()
        finally:
            self._client = self._worker = self._log = None
            self._client_blobs = None
            if self._previous_clock is not None:
                install(self._previous_clock)
                self._previous_clock = None
            Breakers.reset()
            if self._owns_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)

    async def _start_worker(self) -> None:
        assert self._log is not None
        self._worker = Worker(list(self.objects.values()), self.settings, log=self._log, step_overrides=self.stubs)
        await self._worker.start()
        for _ in range(int(30 / _POLL)):
            if len(self._worker.processors) == self.settings.partitions:
                return
            await asyncio.sleep(_POLL)
        raise SessionTestKitError("the kit's worker did not take its partitions within 30 s")

    @property
    def client(self) -> Client:
        """The kit's client (for what the kit has no method for)."""
        if self._client is None:
            raise UsageError("the kit is not open: use `async with SessionTestKit(...) as kit`")
        return self._client

    @property
    def worker(self) -> Worker:
        """The worker that runs the sessions."""
        if self._worker is None:
            raise UsageError("the kit is not open: use `async with SessionTestKit(...) as kit`")
        return self._worker

    # -- time ------------------------------------------------------------------------------
    @property
    def now(self) -> datetime:
        """The virtual time."""
        return datetime.fromtimestamp(self.clock.now_ms() / 1000, tz=UTC)

    async def advance(
        self,
        delta: timedelta | None = None,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        days: float = 0,
    ) -> None:
        """Move virtual time on, running everything that falls due on the way, in order."""
        span = (delta or timedelta()) + timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days)
        target = self.clock.now_ms() + int(span.total_seconds() * 1000)
        while True:
            await self.settle()
            due = self._next_due()
            if due is None or due > target:
                self.clock.advance_to(target)
                await self.settle()
                return
            self.clock.advance_to(due)

    async def until(
        self, condition: Callable[[], bool], *, auto_skip: bool | None = None, what: str = "the condition"
    ) -> None:
        """Let the runtime work (skipping time when nothing else can run) until `condition()` holds.

        Raises:
            SessionTestKitError: nothing can run or fall due any more and it does not hold.
        """
        await self._until(condition, skip=self.auto_skip if auto_skip is None else auto_skip, what=what)
        if not condition():
            raise SessionTestKitError(f"{what} does not hold, and the runtime settled")

    async def settle(self) -> None:
        """Wait (in real time) until the runtime has done all it can without the clock moving."""
        await self._until(lambda: False, skip=False)

    def _next_due(self) -> int | None:
        due = [self.clock.next_blocking_ms()]
        due += [p.waits.timers.next_ms() for p in self.worker.processors.values()]
        known = [d for d in due if d is not None]
        return min(known) if known else None

    async def _fingerprint(self, strict: bool) -> tuple[int, ...] | None:
        """A summary of what the runtime has done, or None while something runs without the clock."""
        worker = self.worker
        assert self._log is not None
        if len(worker.processors) < self.settings.partitions:
            return None
        if self._client_blobs is not None and self._client_blobs.busy:
            return None  # a call's payload is being stored, or its reply read
        tasks = 0
        marks: list[int] = []
        for p, processor in sorted(worker.processors.items()):
            if processor.committing or processor.failed is not None:
                return None
            inbox_end = await self._log.end_offset(self.topics.inbox, p)
            if inbox_end != processor.offsets.next:
                return None
            tasks += processor.running
            marks += [inbox_end, await self._log.end_offset(self.topics.events, p), processor.stats["transactions"]]
        if strict and tasks > self.clock.blocked + self._calls_into_waits():
            return None
        for p in range(await self._log.partition_count(self.topics.replies)):
            marks.append(await self._log.end_offset(self.topics.replies, p))
        return (*marks, tasks, self.clock.blocked)

    def _calls_into_waits(self) -> int:
        """Handlers blocked in `ctx.call` on a session that waits (for the clock, or an awakeable)."""
        blocked = {
            key.decode()
            for processor in self.worker.processors.values()
            for key, session in processor.sessions.items()
            if session.blocked_by is not None  # it waits, and what was sent to it queues behind
        }
        delayed = {
            (entry.message.session, entry.message.id)
            for processor in self.worker.processors.values()
            for entry in processor.waits.delayed.values()
        }
        return sum(1 for call in self.worker.client.awaiting if call[0] in blocked or call in delayed)

    async def _until(self, done: Any, *, skip: bool, what: str = "") -> None:  # noqa: ANN401 - a predicate
        quiet = 0
        last: tuple[int, ...] | None = None
        while not done():
            await asyncio.sleep(_POLL)
            mark = await self._fingerprint(strict=skip)
            if mark is None or mark != last:
                quiet, last = 0, mark
                continue
            quiet += 1
            if quiet < _QUIET_LOOKS:
                continue
            if not skip:
                return
            due = self._next_due()
            if due is None:
                raise SessionTestKitError(
                    f"{what} waits, and nothing can run or fall due: "
                    + (
                        "; ".join(f"{w.session}.{w.handler} waits for awakeable {w.awakeable}" for w in self.waits())
                        or "no open wait"
                    )
                    + " (resolve it with kit.resolve(id, value), or advance time)"
                )
            self.clock.advance_to(due)
            quiet, last = 0, None

    # -- calling ---------------------------------------------------------------------------
    async def start(
        self,
        handler: Handler[Any, Any, O],
        key: str,
        payload: BaseModel,
        *,
        idempotency_key: str | None = None,
        settle: bool = True,
    ) -> PendingCall[O]:
        """Send a call and let the runtime work on it until it settles; await `.result()` for the reply."""
        message_id = idempotency_key or uuid.uuid4().hex
        task = asyncio.ensure_future(
            self.client.call(handler, key, payload, idempotency_key=message_id, timeout=self.call_timeout)
        )
        pending = PendingCall(self, handler, key, message_id, task)
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
        if settle:
            await self._until(lambda: task.done(), skip=False)
        return pending

    async def call(
        self,
        handler: Handler[Any, Any, O],
        key: str,
        payload: BaseModel,
        *,
        idempotency_key: str | None = None,
        auto_skip: bool | None = None,
    ) -> CallResult[O]:
        """Call `handler` on session `key` and wait for its reply (skipping time as needed)."""
        pending = await self.start(handler, key, payload, idempotency_key=idempotency_key, settle=False)
        return await pending.result(auto_skip=auto_skip)

    async def send(
        self,
        handler: Handler[Any, Any, Any],
        key: str,
        payload: BaseModel,
        *,
        idempotency_key: str | None = None,
        delay: float | None = None,
    ) -> str:
        """Send one-way (`delay` in virtual seconds); returns the message id once the runtime settled."""
        message_id = await self.client.send(handler, key, payload, idempotency_key=idempotency_key, delay=delay)
        await self.settle()
        return message_id

    async def _finish(self, pending: PendingCall[O], *, auto_skip: bool) -> CallResult[O]:
        task = pending.task
        what = f"the call of {pending.handler.object_name}.{pending.handler.name} on {pending.key!r}"
        try:
            await self._until(lambda: task.done(), skip=auto_skip, what=what)
        except BaseException:
            task.cancel()
            raise
        reply: O | None = None
        error: TetherError | None = None
        try:
            reply = task.result()
        except TetherError as exc:
            error = exc
        await self.settle()
        obj = self.objects[pending.handler.object_name]
        events, steps = await self._journal(obj, pending.key, pending.message_id)
        return CallResult(pending.message_id, reply, error, events, self.state(obj, pending.key), steps)

    async def _entries(self, object_name: str, key: str, message_id: str | None = None) -> list[tuple[int, Any]]:
        """The session's events-topic entries (of one message's invocation, if given), in order.

        Values kept in the blob store (step results, replies, events, payloads) are read back
        into them, so a test sees what the handler and the folds saw.
        """
        assert self._log is not None
        wanted = session_key(object_name, key)
        partition = partition_for(wanted, self.settings.partitions)
        found = []
        async for record in self._log.read(self.topics.events, partition):
            if record.key == wanted and record.value is not None:
                entry = entries.read(record.value)
                if message_id is None or getattr(entry, "message_id", None) == message_id:
                    found.append((record.offset, await entry_in_hand(self._large, entry, f"{object_name}/{key}")))
        return found

    async def _journal(
        self, obj: VirtualObject[Any], key: str, message_id: str
    ) -> tuple[list[BaseModel], list[StepRun]]:
        events: list[BaseModel] = []
        steps: list[StepRun] = []
        for _, entry in await self._entries(obj.name, key, message_id):
            if isinstance(entry, Step):
                steps.append(StepRun(entry.name, entry.attempts, entry.result, entry.error))
            elif isinstance(entry, Done | Suspend):
                events += [obj.codec.decode_envelope(e) for e in entry.events]
        return events, steps

    async def resolve(self, awakeable_id: str, value: Any = None) -> bool:  # noqa: ANN401 - any JSON value
        """Complete an awakeable (the first completion wins); returns whether this one did."""
        accepted = await self.client.resolve(awakeable_id, value)
        await self.settle()
        return accepted

    async def reject(self, awakeable_id: str, reason: str) -> bool:
        """Fail an awakeable with `reason`; returns whether this completion was the first."""
        accepted = await self.client.reject(awakeable_id, reason)
        await self.settle()
        return accepted

    # -- stubs -----------------------------------------------------------------------------
    def stub(self, step: str, result: Any = UNSET, *, fn: Callable[[], Any] | None = None) -> StepStub:  # noqa: ANN401
        """Make step `step` return `result` (or call `fn`) instead of running (see `StepStubs.stub`)."""
        return self.stubs.stub(step, result, fn=fn)

    def fail(self, step: str, error: ErrorSpec, *, times: int | None = None, at: Sequence[int] = ()) -> StepStub:
        """Make calls of step `step` fail with `error` (see `StepStubs.fail`)."""
        return self.stubs.fail(step, error, times=times, at=at)

    def calls(self, step: str) -> int:
        """How many times step `step` ran live (each attempt counts)."""
        return self.stubs.counts.get(step, 0)

    # -- looking -------------------------------------------------------------------------
    def state(self, obj: VirtualObject[Any] | str, key: str) -> BaseModel:
        """A copy of the state of session `key` of `obj` now."""
        target = self.objects[obj if isinstance(obj, str) else obj.name]
        wanted = session_key(target.name, key)
        processor = self.worker.processors[partition_for(wanted, self.settings.partitions)]
        session = processor.sessions.get(wanted)
        if session is None:
            fresh: BaseModel = target.initial_state()
            return fresh
        state: BaseModel = session.load(target, self.settings.runtime.retention_ms)
        return state.model_copy(deep=True)

    def waits(self) -> list[Wait]:
        """Every invocation that waits now (timers, awakeables, parked sessions)."""
        found = []
        for processor in self.worker.processors.values():
            for inv_id, wait in processor.waits.suspended.items():
                wake = processor.waits.timers.next_due(inv_id)
                found.append(
                    Wait(
                        wait.message.session,
                        wait.message.handler,
                        wait.message.id,
                        wait.awakeable,
                        datetime.fromtimestamp(wake / 1000, tz=UTC) if wake is not None else None,
                    )
                )
        return found

    async def dead_letters(self) -> list[DeadLetter]:
        """The dead letters written so far, oldest first."""
        assert self._log is not None
        found = []
        async for record in self._log.read(self.topics.dlq, 0):
            headers = dict(record.headers)
            found.append(DeadLetter(DeadLetterHeaders.decode(headers.get), record.value))
        return found

    async def history(self, obj: VirtualObject[Any] | str, key: str) -> dict[str, Any]:
        """The session's history as `tether sessions export` writes it (for `Replayer`).

        It holds the log's records as they are: values kept in the blob store stay references,
        which ``Replayer(..., runtime=kit.settings.runtime)`` reads back.
        """
        from .history import export_history

        assert self._log is not None
        name = obj if isinstance(obj, str) else obj.name
        return await export_history(self._log, self.topics, name, key)

    # -- restart ---------------------------------------------------------------------------
    async def restart(self) -> None:
        """Stop the worker and start a new one that rebuilds every session from the log.

        Before it stops, every session's state must come back equal through its snapshot
        encoding and from folding its events alone, and every event and journaled step must
        decode and encode to the same data; after the restore, every state must equal the one
        before. Anything else raises `RoundTripError`, naming the session.
        """
        await self.settle()
        before = await self._check_round_trips()
        await self.worker.stop()
        Breakers.reset()  # a new process: its breakers start closed
        await self._start_worker()
        await self.settle()
        for (name, key), state in before.items():
            after = self.state(name, key).model_dump(mode="json")
            if after != state:
                raise RoundTripError(f"{name}/{key}: the restored state {after!r} differs from {state!r}")

    async def _check_round_trips(self) -> dict[tuple[str, str], Any]:
        states: dict[tuple[str, str], Any] = {}
        retention = self.settings.runtime.retention_ms
        for processor in self.worker.processors.values():
            for raw_key, session in processor.sessions.items():
                name, _, key = raw_key.decode().partition("/")
                obj = self.objects.get(name)
                if obj is None:
                    continue
                state = session.load(obj, retention)
                dumped = state.model_dump(mode="json")
                snapshot = Snapshot.decode(session.to_snapshot().encode())
                revived = obj.state_type.model_validate(snapshot.state).model_dump(mode="json")
                if revived != dumped:
                    raise RoundTripError(
                        f"{name}/{key}: the state from its snapshot {revived!r} differs from {dumped!r}"
                    )
                folded = obj.initial_state()
                for _, entry in await self._entries(name, key):
                    if isinstance(entry, Step):
                        if unpack(pack(entry.result)) != entry.result:
                            raise RoundTripError(f"{name}/{key}: step {entry.name!r}'s result does not round-trip")
                        continue
                    for envelope in getattr(entry, "events", ()):
                        event = obj.codec.decode_envelope(envelope)
                        again = obj.codec.decode_envelope(unpack(pack(obj.codec.encode_envelope(event))))
                        if again.model_dump(mode="json") != event.model_dump(mode="json"):
                            raise RoundTripError(f"{name}/{key}: event {type(event).__qualname__} does not round-trip")
                        folded = obj.fold(folded, event)
                if folded.model_dump(mode="json") != dumped:
                    raise RoundTripError(f"{name}/{key}: folding its events gives {folded!r}, not {state!r}")
                states[(name, key)] = dumped
        return states
