"""Replaying dead letters to the inbox they came from, exactly once and resumably.

Each replay is an inbox message to the same session and handler (the path a user message
takes), with the message id ``dlq-replay:{dead letter id}``. Replays go in chunks, and each
chunk is one transaction (`dlq.sender`) holding the chunk's inbox messages and the
``replayed`` status record of each of its dead letters. So:

- A dead letter's message is in the inbox if and only if its status says ``replayed``, whatever
  stops the replayer (Ctrl-C, SIGKILL, a broker outage) and wherever: a chunk is durable
  entirely or not at all. Replaying again skips what is ``replayed`` and sends the rest, so a
  dead letter is sent once, however often the replay is interrupted and run again, and however
  many dead letters go to one session. (A re-sent copy would rely on the session's dedupe of
  message ids, which remembers only so many.)
- A replay fences every older replay of the namespace (one transactional id per namespace,
  opened before the statuses are read), so a zombie or concurrent replayer cannot send what
  this one sends; it stops with `ReplayTakenOverError`.
- A session parked behind its dead letter is unparked in the same transaction, its replay
  carried in the resolution so that it runs before the messages that queued behind it. The
  same transaction also holds the replay as a plain message, in case the park was resolved
  before (a discard unparks); when the carried replay ran, the runtime's dedupe of message ids
  answers that copy. This is the one case where a replay relies on that dedupe.

Chunks keep pipelining: replaying tens of thousands of dead letters costs one transaction per
chunk of `CHUNK`, not a round trip per item.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import inspect
import logging
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from actors import Client, Settings
from actors.errors import MessageTooLargeError
from actors.inspection.audit import operator
from actors.inspection.times import iso
from actors.protocol.inbox import Message
from actors.protocol.large_values import LargeValues, by_reference, payload_of
from eventstore import EventLog, LogUnavailableError, OutRecord, pack
from eventstore.errors import BlobError

from .errors import InvalidFilterError, TransformLoadError
from .records import DeadLetter
from .reports import ItemResult, Progress, Report
from .sender import UNPARKED, ReplaySender, replay_message
from .status import Resolution, StatusStore, resolve

log = logging.getLogger(__name__)

CHUNK = 500
"""Replays per transaction (each with its status record)."""

POISON = (
    "poison record: its value is not a Tether message ({reason}), so it cannot be replayed as "
    "it is. Replay it with --transform MODULE:FUNC returning dlq.ReplayTarget(object_name, key, "
    "handler, payload), or discard it"
)
NO_TARGET = (
    "the record names no session or handler; the transform must return "
    "dlq.ReplayTarget(object_name, key, handler, payload), not a bare payload"
)


@dataclass(frozen=True)
class ReplayTarget:
    """Where and what a transform wants replayed (instead of only a new payload).

    A transform returns one of these to redirect a replay, and must for poison records, whose
    value names no session or handler.
    """

    object_name: str
    """Session type."""
    key: str
    """Session key."""
    handler: str
    """Handler name."""
    payload: Any
    """The handler's input (JSON-like data or a pydantic model)."""


class Transform:
    """A user function that rewrites a dead letter's payload before it is replayed.

    It is called as ``fn(payload)`` or, if it takes two arguments, ``fn(payload, dead_letter)``,
    with a deep copy of the decoded payload (for a poison record: the value as msgpack data if
    it is msgpack, else the raw bytes). A payload that the message kept in the blob store
    (``pb``) is read from the store the settings name first, so the transform gets the value
    the handler would have got. It returns the new payload, or a `ReplayTarget`, and may be
    async. If it raises, or the payload's blob cannot be read, that dead letter is reported as
    failed and the replay goes on.
    """

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        if not callable(fn):
            raise TransformLoadError(f"transform {name or fn!r} is not callable")
        self.fn = fn
        self.name = name or f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', fn)}"
        self._with_letter = _takes_two(fn)

    @classmethod
    def load(cls, spec: str) -> Transform:
        """Import ``MODULE:FUNC`` (the current directory is on the path, as for `tether serve`).

        Raises:
            TransformLoadError: the module or the function cannot be found.
        """
        module_name, _, attr = spec.partition(":")
        if not module_name or not attr:
            raise TransformLoadError(f"--transform expects MODULE:FUNC, got {spec!r}")
        if "" not in sys.path and "." not in sys.path:
            sys.path.insert(0, ".")
        try:
            target: Any = importlib.import_module(module_name)
        except Exception as exc:
            raise TransformLoadError(f"cannot import transform module {module_name!r}: {exc}") from exc
        for part in attr.split("."):
            try:
                target = getattr(target, part)
            except AttributeError:
                raise TransformLoadError(f"module {module_name!r} has no attribute {attr!r}") from None
        return cls(target, spec)

    async def apply(self, payload: Any, letter: DeadLetter) -> Any:
        """Run the transform on a copy of `payload`."""
        argument = copy.deepcopy(payload)
        result = self.fn(argument, letter) if self._with_letter else self.fn(argument)
        if inspect.isawaitable(result):
            result = await result
        return result


def _takes_two(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


def _resolved(resolution: Resolution | None) -> str:
    if resolution is None:
        return ""
    where = f" as message {resolution.replay_message_id}" if resolution.replay_message_id else ""
    why = f": {resolution.reason}" if resolution.reason else ""
    return f"{resolution.status} at {iso(resolution.at_ms)} by {resolution.by}{where}{why}"


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Replayer:
    """Sends dead letters back to their inbox, each chunk with its statuses in one transaction.

    Use `fenced` around reading the statuses and replaying, so that the statuses include
    everything an older (fenced) replayer committed; `replay` outside it opens the writer for
    the duration of the call.
    """

    def __init__(
        self,
        log: EventLog,
        settings: Settings,
        statuses: StatusStore,
        *,
        chunk_size: int = CHUNK,
    ) -> None:
        self._sender = ReplaySender(log, settings, statuses)
        self._chunk_size = max(1, chunk_size)
        self._runtime = settings.runtime
        self._large: LargeValues | None = None

    def _values(self) -> LargeValues | None:
        """The blob store the settings name (opened on first use), or None.

        Raises:
            BlobError: the store cannot be opened (an S3 location without the ``s3`` extra).
        """
        if self._large is None:
            self._large = LargeValues.of(self._runtime)
        return self._large

    async def payload(self, letter: DeadLetter) -> Any:  # noqa: ANN401 - plain data
        """The payload of `letter` as a transform gets it (before its copy).

        A message's payload, read from the blob store when the message carries a reference
        (``pb``); for a poison record, its value (`DeadLetter.raw_value`).

        Raises:
            BlobError: the blob is missing or corrupt, or no blob store is configured.
            OSError: the blob store's directory cannot be read.
        """
        if letter.message is None:
            return letter.raw_value()
        if letter.message.payload_blob is None:
            return letter.message.payload
        return await payload_of(self._values(), letter.message)

    async def _by_reference(self, message: Message) -> Message:
        """`message` with its payload in the blob store when it is over the threshold.

        The path the client's sends take (`by_reference`); a message that keeps the failed
        message's reference is sent as it is.

        Raises:
            BlobError, OSError: the blob store cannot be opened or written.
        """
        if self._runtime.blob_threshold_bytes is None or message.payload_blob is not None:
            return message
        values = self._values()
        return message if values is None else await by_reference(values, message)

    @asynccontextmanager
    async def fenced(self) -> AsyncIterator[None]:
        """Open the namespace's replay writer for the block, fencing every older replayer.

        Raises:
            LogUnavailableError: the log cannot be reached.
        """
        if self._sender.is_open:
            yield
            return
        await self._sender.open()
        try:
            yield
        finally:
            await self._sender.close()

    async def close(self) -> None:
        """Release the writer if a replay left it open; idempotent."""
        await self._sender.close()

    async def _target(self, letter: DeadLetter, transform: Transform | None) -> ReplayTarget | str:
        """What to send for `letter`, or why it cannot be sent."""
        if transform is None:
            if letter.message is None:
                return POISON.format(reason=letter.decode_error or "no value")
            result: Any = letter.message.payload
        else:
            try:
                payload = await self.payload(letter)
            except (BlobError, OSError) as exc:
                return f"its payload cannot be read from the blob store, so the transform did not run: {_error(exc)}"
            try:
                result = await transform.apply(payload, letter)
            except Exception as exc:
                return f"transform {transform.name} raised {_error(exc)}"
            if result is None:
                return (
                    f"transform {transform.name} returned None; return the new payload (or a "
                    "dlq.ReplayTarget), even when it changed the payload in place"
                )
        if isinstance(result, ReplayTarget):
            target = result
        else:
            if letter.object_name is None or letter.object_key is None or letter.handler is None:
                return NO_TARGET if transform is not None else POISON.format(reason=letter.decode_error)
            target = ReplayTarget(letter.object_name, letter.object_key, letter.handler, result)
        payload = target.payload
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json")
            target = ReplayTarget(target.object_name, target.key, target.handler, payload)
        try:
            pack(payload)
        except Exception as exc:
            return f"the payload cannot be encoded ({_error(exc)})"
        return target

    async def replay(
        self,
        letters: Sequence[DeadLetter],
        *,
        dry_run: bool = False,
        rate: float | None = None,
        transform: Transform | None = None,
        include_discarded: bool = False,
        by: str | None = None,
        progress: Progress | None = None,
    ) -> Report:
        """Replay `letters` in order; see the module docstring for the guarantees.

        Args:
            letters: The dead letters to replay (already selected, with their statuses).
            dry_run: Decide (and run the transform) for every item, but send and write nothing.
            rate: At most this many sends per second (None: as fast as the log takes them).
            transform: Rewrites each payload first; an item whose transform raises fails alone.
            include_discarded: Replay discarded dead letters too (they are skipped otherwise).
            by: Who replays, for the audit trail (default ``user@host``).
            progress: Called after each item.

        Returns:
            One result per dead letter: replayed (or would-replay), skipped with the reason, or
            failed with the reason.

        Raises:
            LogUnavailableError: the log became unreachable; every chunk committed before is
                recorded, the chunk in flight was not sent, and running the same replay again
                resumes.
            ReplayTakenOverError: a newer replay of the namespace fenced this one.
        """
        if rate is not None and rate <= 0:
            raise InvalidFilterError(f"--rate must be a positive number of items per second, got {rate}")
        if dry_run:
            return await self._replay(letters, True, rate, transform, include_discarded, by, progress)
        async with self.fenced():
            return await self._replay(letters, False, rate, transform, include_discarded, by, progress)

    async def _replay(
        self,
        letters: Sequence[DeadLetter],
        dry_run: bool,
        rate: float | None,
        transform: Transform | None,
        include_discarded: bool,
        by: str | None,
        progress: Progress | None,
    ) -> Report:
        by = by or operator()  # once per run: it asks the OS
        report = Report(action="replay", dry_run=dry_run)
        total = len(letters)
        size = self._chunk_size if rate is None else max(1, min(self._chunk_size, int(rate / 10)))
        loop = asyncio.get_running_loop()
        started: float | None = None
        sent = 0

        def replayed(letter: DeadLetter) -> Resolution:
            """The `replayed` status of `letter`, committed with its message."""
            return resolve(
                letter.id,
                letter.resolution,
                "replayed",
                by=by,
                replay_message_id=letter.replay_message_id,
                transform=transform.name if transform is not None else None,
            )

        def done(item: ItemResult) -> None:
            report.items.append(item)
            if progress is not None:
                progress(item, total)

        for first in range(0, total, size):
            chunk = letters[first : first + size]
            plan: list[tuple[DeadLetter, ReplayTarget | str | None]] = []
            for letter in chunk:
                if letter.status == "replayed":
                    plan.append((letter, None))
                elif letter.status == "discarded" and not include_discarded:
                    plan.append((letter, None))
                else:
                    plan.append((letter, await self._target(letter, transform)))
            sendable = [(lt, t) for lt, t in plan if isinstance(t, ReplayTarget)]
            outcomes: dict[str, BaseException | None] = {}
            unavailable: LogUnavailableError | None = None
            if sendable and not dry_run:
                if rate is not None:
                    started = loop.time() if started is None else started
                    delay = started + sent / rate - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                records: list[OutRecord] = []
                resolutions: list[Resolution] = []
                for lt, t in sendable:
                    message = replay_message(lt, t.object_name, t.key, t.handler, t.payload)
                    try:
                        message = await self._by_reference(message)
                        records.extend(self._sender.records(lt, message))
                    except (MessageTooLargeError, BlobError, OSError) as exc:  # this item fails alone, as a send would
                        outcomes[lt.id] = exc
                        continue
                    resolutions.append(replayed(lt))
                try:
                    await self._sender.commit(records, resolutions)
                except LogUnavailableError as exc:
                    # Nothing of the chunk was sent: report it as failed, then stop.
                    unavailable = exc
                for resolution in resolutions:
                    outcomes[resolution.id] = unavailable
            sent += len(sendable)
            for letter, target in plan:
                if target is None:
                    why = _resolved(letter.resolution)
                    if letter.status == "discarded":
                        why += "; pass --include-discarded to replay it anyway"
                    else:
                        why = "already " + why
                    done(ItemResult.of(letter, "skipped", why))
                elif isinstance(target, str):
                    log.info("dead letter %s not replayed: %s", letter.id, target)
                    done(ItemResult.of(letter, "failed", target))
                else:
                    error = outcomes.get(letter.id)
                    fields: dict[str, Any] = {
                        "id": letter.id,
                        "message_id": letter.replay_message_id,
                        "object_name": target.object_name,
                        "object_key": target.key,
                        "handler": target.handler,
                    }
                    if error is not None:
                        done(ItemResult(outcome="failed", reason=f"send failed: {_error(error)}", **fields))
                    else:
                        if dry_run:
                            blob = letter.message.payload_blob if letter.message is not None else None
                            kept = target.payload is None and blob is not None  # sent as the same reference
                            fields["payload"] = {"blob": blob} if kept else target.payload
                        done(ItemResult(outcome="would-replay" if dry_run else "replayed", **fields))
            if unavailable is not None:
                raise unavailable
        if not dry_run:
            count = report.counts.get("replayed", 0)
            log.info("replayed %d of %d dead letter(s); %d failed", count, total, len(report.failed))
        return report


async def unpark(client: Client, letters: Sequence[DeadLetter]) -> None:
    """Resolve the park awakeables of `letters` (a no-op for sessions that are not parked)."""
    parked = [letter.park_awakeable for letter in letters if letter.park_awakeable]
    if parked:
        await asyncio.gather(*(client.resolve(awk, UNPARKED) for awk in parked))
