"""Testing sagas: failures injected at chosen attempts, calls recorded in order, a file-backed world.

With `actors.testing.SessionTestKit` (which runs the coordinator like any session type)::

    async with SessionTestKit(booking.coordinator()) as kit:
        with SagaProbe(booking) as probe:
            probe.fail("car", TerminalError("no convertibles"), at=[1])
            outcome = await run_saga(kit, booking, "trip-2", trip)
        assert outcome.status == "compensated"
        assert probe.compensations == ["hotel", "flight"]   # in the order they ran

`Ledger` is a stand-in for the outside world that honours idempotency keys: every process that
opens the same file sees the same effects, so a test can kill workers and then check that
each effect happened once, and which ones were executed again (and absorbed by their key).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel

from .client import SagaOutcome
from .definitions import Saga

if TYPE_CHECKING:
    from actors.testing import SessionTestKit

I = TypeVar("I", bound=BaseModel)  # noqa: E741 - a saga's input
Phase = Literal["action", "compensation"]


class Ledger:
    """An append-only JSON-lines file of effects, keyed by idempotency key.

    `apply` is what an idempotent API does: the first request with a key takes effect and its
    result is stored; a repeat changes nothing and returns the stored result. Repeats are
    written down as ``duplicate`` lines, so a test sees re-executions that the key absorbed.
    Safe across processes (an exclusive `flock` around each read-and-append); a SIGKILL never
    leaves half a line visible to the next writer. An instance reads only what was appended
    since its last look, so keep one per process (`Ledger.at`): reading the whole file on every
    call would block an event loop for longer and longer as the ledger grows.
    """

    _open: dict[Path, Ledger] = {}

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._pos = 0
        self._entries: list[dict[str, Any]] = []
        self._effects: dict[str, dict[str, Any]] = {}

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> Ledger:
        """This process's ledger at `path` (one instance per file, so reads stay incremental)."""
        key = Path(path).absolute()
        ledger = cls._open.get(key)
        if ledger is None:
            ledger = cls._open[key] = cls(key)
        return ledger

    @contextmanager
    def _locked(self) -> Iterator[int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # releases the lock

    def _catch_up(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size <= self._pos:
            return
        data = os.pread(fd, size - self._pos, self._pos)
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            if line.strip():
                self._seen(json.loads(line))
        self._pos += end

    def _seen(self, entry: dict[str, Any]) -> None:
        self._entries.append(entry)
        if entry.get("kind") == "effect":
            self._effects.setdefault(entry["key"], entry)

    def _append(self, fd: int, entry: dict[str, Any]) -> None:
        # Under the lock, after `_catch_up`: this line is the next one in the file.
        line = (json.dumps(entry, default=str) + "\n").encode()
        os.write(fd, line)
        self._seen(json.loads(line))
        self._pos += len(line)

    def apply(self, key: str, op: str, result: Any = None, **data: Any) -> tuple[bool, Any]:
        """Take effect once per `key`; returns (first time?, the stored result)."""
        with self._locked() as fd:
            self._catch_up(fd)
            done = self._effects.get(key)
            entry = {
                "kind": "effect" if done is None else "duplicate",
                "key": key,
                "op": op,
                "pid": os.getpid(),
                "t": time.time(),
                "result": result,
                **data,
            }
            self._append(fd, entry)
            if done is None:
                return True, result
            return False, done.get("result")

    def note(self, kind: str, key: str, **data: Any) -> None:
        """Write down something that is not an effect (a call, a failure, a pause)."""
        with self._locked() as fd:
            self._catch_up(fd)
            self._append(fd, {"kind": kind, "key": key, "pid": os.getpid(), "t": time.time(), **data})

    def entries(self) -> list[dict[str, Any]]:
        """Every line so far."""
        if not self.path.exists():
            return []
        with self._locked() as fd:
            self._catch_up(fd)
        return list(self._entries)

    def effects(self) -> dict[str, dict[str, Any]]:
        """Key -> the effect it took (one per key, by construction)."""
        self.entries()
        return dict(self._effects)

    def duplicates(self) -> list[dict[str, Any]]:
        """Repeats that the idempotency key absorbed (each one a re-execution)."""
        return [e for e in self.entries() if e["kind"] == "duplicate"]


@dataclass(frozen=True)
class SagaCall:
    """One call of a saga step's action or compensation, as `SagaProbe` saw it."""

    step: str
    phase: Phase
    attempt: int
    """1-based, per step and phase, counted over the probe's life."""
    failed: str | None = None
    """The class name of the error it raised (injected or not), if it failed."""


@dataclass
class _Fault:
    error: BaseException | Callable[[], BaseException]
    at: frozenset[int]
    times: int


class SagaProbe:
    """Wraps a saga's actions and compensations (while entered): records calls, injects failures.

    Works wherever the coordinator runs in this process (a `SessionTestKit`, an in-process
    `Worker`): the coordinator calls the step functions the probe put in place.
    """

    def __init__(self, saga: Saga[Any]) -> None:
        self.saga = saga
        self.calls: list[SagaCall] = []
        self._faults: dict[tuple[str, Phase], _Fault] = {}
        self._counts: dict[tuple[str, Phase], int] = {}
        self._saved: list[tuple[Any, Any]] = []

    def fail(
        self,
        step: str,
        error: BaseException | Callable[[], BaseException],
        *,
        at: Collection[int] = (),
        times: int = 0,
        phase: Phase = "action",
    ) -> None:
        """Make `step`'s action (or compensation) fail with `error` at attempts `at`, or its first `times`.

        With neither, every attempt fails.
        """
        names = [s.name for s in self.saga.steps]
        if step not in names:
            raise KeyError(f"saga {self.saga.name!r} has no step {step!r} (steps: {names})")
        self._faults[(step, phase)] = _Fault(error, frozenset(at), times if times or at else 1 << 62)

    @property
    def compensations(self) -> list[str]:
        """Steps whose compensation ran and succeeded, in the order they did."""
        return [c.step for c in self.calls if c.phase == "compensation" and c.failed is None]

    @property
    def actions(self) -> list[str]:
        """Steps whose action ran and succeeded, in the order they finished."""
        return [c.step for c in self.calls if c.phase == "action" and c.failed is None]

    def _wrap(self, step: str, phase: Phase, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def probed(*args: Any) -> Any:  # noqa: ANN401 - the step's own result
            key = (step, phase)
            attempt = self._counts[key] = self._counts.get(key, 0) + 1
            fault = self._faults.get(key)
            try:
                if fault is not None and (attempt <= fault.times or attempt in fault.at):
                    error = fault.error
                    raise error if isinstance(error, BaseException) else error()
                result = await fn(*args)
            except Exception as exc:
                self.calls.append(SagaCall(step, phase, attempt, type(exc).__name__))
                raise
            self.calls.append(SagaCall(step, phase, attempt))
            return result

        return probed

    def __enter__(self) -> SagaProbe:
        for step in self.saga.steps:
            self._saved.append((step, step.fn))
            step.fn = self._wrap(step.name, "action", step.fn)
            if step.compensation is not None:
                comp = step.compensation
                self._saved.append((comp, comp.fn))
                comp.fn = self._wrap(step.name, "compensation", comp.fn)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for target, fn in reversed(self._saved):
            target.fn = fn
        self._saved.clear()


async def run_saga(kit: SessionTestKit, saga: Saga[I], saga_id: str, input: I) -> SagaOutcome:
    """Start `saga` as `saga_id` on `kit` and let it run (skipping time) until it settles."""
    digest = hashlib.sha256(input.model_dump_json().encode()).hexdigest()[:16]
    await kit.send(saga.start, saga_id, input, idempotency_key=f"saga:{saga_id}:start:{digest}")
    coordinator = saga.start.object_name

    def settled() -> bool:
        return bool(getattr(kit.state(coordinator, saga_id), "settled", False))

    await kit.until(settled, what=f"saga {saga.name} {saga_id!r} settling")
    return SagaOutcome.model_validate(kit.state(coordinator, saga_id).model_dump())
