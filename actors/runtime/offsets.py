"""Which inbox offset a partition may commit: the low watermark of finished messages."""

from __future__ import annotations

from collections import deque

NO_OFFSET = -1
"""The offset of a message adopted into the events log: its inbox offset is already finished."""


class OffsetTracker:
    """The committed inbox offset is the low watermark of finished messages."""

    def __init__(self, start: int, finished: set[int] | None = None) -> None:
        self._order: deque[int] = deque()
        self._done: set[int] = set()
        self.next = start
        self.finished_before = {o for o in finished or () if o >= start}
        """Offsets past the committed one whose effects are already in the log."""

    def add(self, offset: int) -> bool:
        """Track a fetched offset; False if its effects already committed (skip it)."""
        self._order.append(offset)
        self.next = offset + 1
        if offset in self.finished_before:
            self.finished_before.discard(offset)
            self._done.add(offset)
            return False
        return True

    def done_above_watermark(self) -> list[int]:
        """Finished offsets that the committed offset does not cover yet."""
        return sorted(self._done | self.finished_before)

    def finish(self, offset: int) -> None:
        """The message at `offset` is finished (its effects are in the next transaction)."""
        self._done.add(offset)

    def watermark(self) -> int:
        """The offset to commit: every message before it is finished."""
        while self._order and self._order[0] in self._done:
            self._done.discard(self._order.popleft())
        return self._order[0] if self._order else self.next

    def __len__(self) -> int:
        return len(self._order)
