"""Stubs of steps by name: a fixed result, another function, or failures at chosen calls.

A test kit hands its `StepStubs` to the runtime (`Worker(step_overrides=...)`), which asks it
for the function of every step that runs live; a journaled step returns its recorded result
and is never asked about. Calls are counted per step name across the kit (each attempt of a
step is one call), so ``fail("llm", RetryableError("429"), times=2)`` fails the first two
attempts of every ``llm`` step the kit runs and lets the third through.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from eventstore.errors import UsageError

ErrorSpec = BaseException | type[BaseException] | Callable[[], BaseException]


def _make(error: ErrorSpec) -> BaseException:
    if isinstance(error, BaseException):
        return error
    made = error()
    if not isinstance(made, BaseException):
        raise UsageError(f"a step failure must be an exception, got {made!r}")
    return made


UNSET: Any = object()
"""No stubbed result (the stub calls a function, or only fails)."""
_UNSET = UNSET


@dataclass
class StepStub:
    """What the kit does instead of (or before) a step's function."""

    name: str
    result: Any = _UNSET
    """Returned instead of calling the function (unless `fn` is given)."""
    fn: Callable[[], Any] | None = None
    """Called instead of the step's function."""
    error: ErrorSpec | None = None
    """Raised on the failing calls."""
    times: int = 0
    """The first `times` calls fail with `error`."""
    at: frozenset[int] = frozenset()
    """These calls (1-based, per step name) fail with `error`."""
    calls: int = 0
    """Calls so far (attempts of this step name, live)."""

    def fails(self, call: int) -> bool:
        """Whether call number `call` fails."""
        return self.error is not None and (call <= self.times or call in self.at)


@dataclass
class StepStubs:
    """The stubs of a kit by step name (`actors.invocation.StepOverrides`)."""

    stubs: dict[str, StepStub] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    """Live calls per step name, stubbed or not."""

    def stub(self, name: str, result: Any = _UNSET, *, fn: Callable[[], Any] | None = None) -> StepStub:  # noqa: ANN401
        """Make step `name` return `result` (or call `fn`) instead of running its function."""
        if result is _UNSET and fn is None:
            raise UsageError(f"stub of step {name!r} needs a result or a fn")
        found = self.stubs.get(name)
        stub = StepStub(name, result, fn, found.error if found else None, found.times if found else 0)
        self.stubs[name] = stub
        return stub

    def fail(self, name: str, error: ErrorSpec, *, times: int | None = None, at: Collection[int] = ()) -> StepStub:
        """Make calls of step `name` fail with `error`: the first `times`, or those numbered in `at`.

        With neither, every call fails. The other calls run the step's function (or its stub).
        """
        if times is None and not at:
            times = 1 << 62
        found = self.stubs.get(name)
        stub = StepStub(
            name,
            found.result if found else _UNSET,
            found.fn if found else None,
            error,
            times or 0,
            frozenset(at),
            found.calls if found else 0,
        )
        self.stubs[name] = stub
        return stub

    def clear(self, name: str | None = None) -> None:
        """Drop the stub of `name` (every stub without a name)."""
        if name is None:
            self.stubs.clear()
        else:
            self.stubs.pop(name, None)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """The function the runtime runs for step `name` (counts its calls, applies its stub)."""
        stubs = self

        def target() -> Callable[..., Any] | None:
            stubs.counts[name] = stubs.counts.get(name, 0) + 1
            stub = stubs.stubs.get(name)
            if stub is None:
                return None
            stub.calls += 1
            if stub.fails(stub.calls):
                assert stub.error is not None
                raise _make(stub.error)
            if stub.fn is not None:
                return stub.fn
            if stub.result is not _UNSET:
                value = stub.result
                return lambda: value
            return None

        if _wants_heartbeat(fn):

            def with_heartbeat(heartbeat: Callable[[], None]) -> Any:  # noqa: ANN401 - a step's result
                replacement = target()
                return fn(heartbeat) if replacement is None else replacement()

            return with_heartbeat

        def plain() -> Any:  # noqa: ANN401 - a step's result
            replacement = target()
            return fn() if replacement is None else replacement()

        return plain


def _wants_heartbeat(fn: Callable[..., Any]) -> bool:
    try:
        required = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return False
    return len(required) == 1
