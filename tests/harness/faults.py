"""Faults a test workload injects on purpose."""

from __future__ import annotations


class FailOnce:
    """Session keys whose handler fails once at a chosen point (its retry then replays the journal).

    `add(key)` arms a key; `check(key, why)` raises `RuntimeError(why)` the first time an armed key
    reaches it and disarms it, so the next attempt goes on.
    """

    def __init__(self) -> None:
        self._armed: set[str] = set()

    def add(self, key: str) -> None:
        self._armed.add(key)

    def clear(self) -> None:
        self._armed.clear()

    def check(self, key: str, why: str = "fail once after the run: the retry replays it") -> None:
        if key in self._armed:
            self._armed.discard(key)
            raise RuntimeError(why)


class Cause:
    """The cause of a failure, which a test fixes before it replays (the replay then succeeds).

    A handler fails while `fixed` is False; `fix()` is the operator's repair, `reset()` breaks it
    again for the next test.
    """

    def __init__(self) -> None:
        self.fixed = False

    def fix(self) -> None:
        self.fixed = True

    def reset(self) -> None:
        self.fixed = False
