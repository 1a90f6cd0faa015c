"""`Replayer`: run the current code of a session type against recorded histories, before deploying it.

For every invocation in a history, the replayer runs the handler as the runtime would resume
it, with the journal the old code recorded: at each recorded wait it must wait again, and at
its end it must ask for no step the old code did not run. Steps never run live: a step the
journal does not hold is reported, not executed (no LLM call, no email). What it reports, with
the recorded and the new step side by side: a step renamed or moved (`JournalMismatchError`),
a step inserted or removed, a wait that is gone, and finished invocations whose events or reply
differ. The fold of the recorded events gives the state each invocation starts from.

Values that the recording runtime kept in its blob store (payloads, step results, replies,
events: references in the history's records) are read back from the store that `runtime`
names before the replay compares anything; a history holding such references with no store
named fails with `BlobError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic
from pydantic import BaseModel

from eventstore.errors import DecodeError, UsageError

from ..clock import install
from ..definitions import VirtualObject
from ..errors import JournalMismatchError
from ..protocol.entries import Completion, Done, Step, Suspend
from ..protocol.inbox import Message
from ..protocol.large_values import LargeValues, entry_in_hand, message_in_hand
from ..protocol.streams import StreamChunk
from ..runtime.invocation import Invocation, StepOverrides
from ..runtime.step_blobs import StepBlobs
from ..runtime.waits import Suspended
from ..settings import RuntimeSettings
from .clock import VirtualClock
from .errors import ReplayDiverged, UnrecordedStepError
from .history import SessionHistory

if TYPE_CHECKING:
    from ..client import Client


@dataclass(frozen=True)
class Mismatch:
    """One difference between a recorded invocation and what the current code does."""

    message_id: str
    handler: str
    kind: str
    """``step`` (renamed, moved, inserted or removed), ``wait``, ``events``, ``reply`` or ``error``."""
    index: int | None
    recorded: str | None
    new: str | None
    detail: str = ""

    def __str__(self) -> str:
        at = f" step {self.index}" if self.index is not None else ""
        return (
            f"{self.handler} ({self.message_id}){at}: {self.kind}: recorded {self.recorded or '-'} | "
            f"new {self.new or '-'}{': ' + self.detail if self.detail else ''}"
        )


@dataclass
class ReplayReport:
    """The outcome of replaying one history."""

    object_name: str
    key: str
    source: str = ""
    invocations: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether the current code replays the whole history."""
        return not self.mismatches

    def render(self) -> str:
        """A plain-text report: one line per mismatch, recorded and new side by side."""
        head = f"{self.source or self.object_name + '/' + self.key}: {self.invocations} invocation(s) replayed"
        if self.ok:
            return f"{head}, no mismatch"
        rows = [("invocation", "step", "recorded", "new", "what")]
        for m in self.mismatches:
            index = "" if m.index is None else str(m.index)
            rows.append(
                (
                    f"{m.handler} {m.message_id}",
                    index,
                    m.recorded or "-",
                    m.new or "-",
                    m.kind + (f": {m.detail}" if m.detail else ""),
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [head + f", {len(self.mismatches)} mismatch(es)"]
        for row in rows:
            lines.append("  " + "  ".join(row[i].ljust(widths[i]) for i in range(4)) + "  " + row[4])
        return "\n".join(lines)


class _ReplayClock(VirtualClock):
    """Time of the replay: set per invocation; backoffs pass at once."""

    async def sleep(self, seconds: float) -> None:
        self.advance_to(self.now_ms() + int(seconds * 1000))


class _ReplayHost:
    """The `InvocationHost` of a replayed invocation: journaled steps only, nothing goes out."""

    def __init__(self, completions: dict[str, Completion]) -> None:
        self.completions = completions
        self.step_overrides: StepOverrides | None = self

    @property
    def client(self) -> Client:
        raise UnrecordedStepError("a replay makes no calls")

    def step_limit(self, message: Message, index: int) -> int:
        return 1 << 40

    async def journal_step(self, message: Message, step: Step) -> None:
        raise ReplayDiverged(step.index, step.name)

    def completion(self, awakeable: str) -> Completion | None:
        return self.completions.get(awakeable)

    async def stream_chunk(self, message: Message, chunk: StreamChunk) -> None:
        return None  # a replay streams nothing

    @property
    def step_blobs(self) -> StepBlobs | None:
        return None  # the replayer reads a history's references back before it runs anything

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def never() -> Any:  # noqa: ANN401 - a step's result
            raise UnrecordedStepError(f"step {name!r} is not in the recorded journal")

        return never


def _dump(models: Iterable[BaseModel]) -> list[Any]:
    return [m.model_dump(mode="json") for m in models]


class Replayer:
    """Replays recorded session histories against the current code of their session types."""

    def __init__(
        self, *objects: VirtualObject[Any] | Sequence[VirtualObject[Any]], runtime: RuntimeSettings | None = None
    ) -> None:
        """Replay histories of `objects`.

        Args:
            objects: The session types (their current code).
            runtime: The settings that name the blob store the recording runtime used (a
                kit's ``kit.settings.runtime``, or the workers' ``TETHER_RUNTIME__*``), for
                histories whose values are kept there; None: histories hold every value.
        """
        flat: list[VirtualObject[Any]] = []
        for item in objects:
            flat.extend([item] if isinstance(item, VirtualObject) else item)
        self.objects = {o.name: o for o in flat}
        self.runtime = runtime
        """The settings naming the blob store that histories' references are read from."""
        self._large: tuple[RuntimeSettings, LargeValues | None] | None = None
        """`runtime` and its blob store, opened on the first replay that needs it."""

    async def replay(self, history: SessionHistory | dict[str, Any] | str | Path) -> ReplayReport:
        """Replay one history (a `SessionHistory`, its JSON document, or a file path).

        Raises:
            HistoryFormatError: not a history this code reads.
            BlobError: a value the history keeps in the blob store cannot be read.
            UsageError: the history is of a session type not given.
        """
        source = ""
        if isinstance(history, str | Path):
            source = str(history)
            history = SessionHistory.load(history)
        elif isinstance(history, dict):
            history = SessionHistory.from_json(history)
        obj = self.objects.get(history.object_name)
        if obj is None:
            raise UsageError(
                f"the history is of session type {history.object_name!r}, which is not among "
                f"{', '.join(sorted(self.objects)) or 'none'}"
            )
        clock = _ReplayClock()
        previous = install(clock)
        try:
            return await self._replay(obj, history, clock, source)
        finally:
            install(previous)

    def _values(self) -> LargeValues | None:
        """The blob store `runtime` names, or None.

        Raises:
            BlobError: the store cannot be opened (an S3 location without the ``s3`` extra).
        """
        if self.runtime is None:
            return None
        if self._large is None or self._large[0] is not self.runtime:
            self._large = (self.runtime, LargeValues.of(self.runtime))
        return self._large[1]

    async def replay_all(self, histories: Iterable[SessionHistory | dict[str, Any] | str | Path]) -> list[ReplayReport]:
        """Replay several histories; one report each."""
        return [await self.replay(h) for h in histories]

    async def _replay(
        self, obj: VirtualObject[Any], history: SessionHistory, clock: _ReplayClock, source: str
    ) -> ReplayReport:
        report = ReplayReport(obj.name, history.key, source)
        large = self._values()
        session = f"{history.object_name}/{history.key}"
        messages: dict[str, Message] = {}
        for record in history.records:
            if record.topic == "inbox":
                try:
                    message = record.message()
                except DecodeError:
                    continue  # a poison record: nothing ran
                if message.id not in messages:
                    messages[message.id] = await message_in_hand(large, message)
        journals: dict[str, dict[int, Step]] = {}
        completions: dict[str, Completion] = {}
        emitted: dict[str, int] = {}
        state: BaseModel = obj.initial_state()
        last_ms = 0
        for record in history.records:
            if record.topic != "events":
                continue
            entry = await entry_in_hand(large, record.entry(), session)
            if isinstance(entry, Step):
                journals.setdefault(entry.message_id, {})[entry.index] = entry
                last_ms = max(last_ms, entry.ended_ms or 0)
            elif isinstance(entry, Completion):
                completions[entry.awakeable] = entry
            elif isinstance(entry, Suspend) and not entry.parked and not entry.message.handler.startswith("__"):
                messages.setdefault(entry.message.id, entry.message)
                at = (entry.wake_ms - 1) if entry.wake_ms is not None else last_ms
                clock._now = max(at, 0)
                recorded_events = [obj.codec.decode_envelope(e) for e in entry.events]
                report.invocations += 1
                await self._check(
                    obj,
                    entry.message,
                    state,
                    journals.get(entry.message.id, {}),
                    dict(completions),
                    emitted.get(entry.message.id, 0),
                    recorded_events,
                    None,
                    None,
                    True,
                    report,
                )
                emitted[entry.message.id] = entry.emitted
                for event in recorded_events:
                    state = obj.fold(state, event)
            elif isinstance(entry, Done):
                done_message = messages.get(entry.message_id)
                recorded_events = [obj.codec.decode_envelope(e) for e in entry.events]
                if done_message is not None and not done_message.handler.startswith("__"):
                    clock._now = max(entry.ended_ms or last_ms, last_ms)
                    report.invocations += 1
                    await self._check(
                        obj,
                        done_message,
                        state,
                        journals.get(entry.message_id, {}),
                        dict(completions),
                        emitted.get(entry.message_id, 0),
                        recorded_events,
                        entry.reply,
                        entry.error,
                        False,
                        report,
                    )
                journals.pop(entry.message_id, None)
                for event in recorded_events:
                    state = obj.fold(state, event)
        return report

    async def _check(
        self,
        obj: VirtualObject[Any],
        message: Message,
        state: BaseModel,
        journal: dict[int, Step],
        completions: dict[str, Completion],
        skip_emits: int,
        recorded_events: list[BaseModel],
        reply: Any,  # noqa: ANN401 - a recorded reply
        error: dict[str, Any] | None,
        waits: bool,
        report: ReplayReport,
    ) -> None:
        handler = obj.handlers.get(message.handler)

        def found(kind: str, index: int | None, recorded: str | None, new: str | None, detail: str = "") -> None:
            report.mismatches.append(Mismatch(message.id, message.handler, kind, index, recorded, new, detail))

        if handler is None:
            found("step", None, message.handler, None, "the handler is gone")
            return
        ctx: Invocation[Any] = Invocation(
            _ReplayHost(completions), obj, message, state.model_copy(deep=True), dict(journal), 1
        )
        ctx.skip_emits = skip_emits
        try:
            payload = handler.input_type.model_validate(message.payload)
        except pydantic.ValidationError as exc:
            found("error", None, "a valid payload", None, f"the recorded payload no longer fits: {exc}")
            return
        try:
            if handler.deadline is not None:
                await ctx.run("deadline", lambda: 0, result_type=int)
            result = await handler.fn(ctx, payload)
        except JournalMismatchError as exc:
            found("step", exc.index, exc.recorded, exc.requested)
            return
        except ReplayDiverged as new:
            recorded = "(a wait)" if waits else "(none: the invocation had finished)"
            found("step", new.index, recorded, new.name, "a step the old code did not run here")
            return
        except Suspended:
            if not waits:
                found("wait", ctx._step, "(finished)", "a wait", "the new code waits where the old one finished")
            else:
                self._compare_events(ctx, recorded_events, found)
            return
        except Exception as exc:
            if error is None and not waits:
                found("error", None, "a reply", type(exc).__name__, str(exc)[:300])
            return
        if waits:
            found("wait", ctx._step, "a wait", "(finished)", "the old code waited here; the new code does not")
            return
        unused = sorted(i for i in journal if i >= ctx._step)
        if unused:
            first = journal[unused[0]]
            found("step", first.index, first.name, "(none)", "a recorded step the new code no longer runs")
            return
        if error is not None:
            found("error", None, str(error.get("type", "an error")), "a reply", "the old code failed here")
            return
        self._compare_events(ctx, recorded_events, found)
        new_reply = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
        if new_reply != reply:
            found("reply", None, repr(reply)[:200], repr(new_reply)[:200])

    @staticmethod
    def _compare_events(ctx: Invocation[Any], recorded: list[BaseModel], found: Callable[..., None]) -> None:
        old, new = _dump(recorded), _dump(ctx.events)
        if old != new:
            found(
                "events",
                None,
                ", ".join(type(e).__name__ for e in recorded) or "(none)",
                ", ".join(type(e).__name__ for e in ctx.events) or "(none)",
                "the emitted events differ",
            )
