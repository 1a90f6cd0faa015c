"""Resources that are opened and closed: the one ``async with`` behaviour they share."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, Self


class AsyncResource(ABC):
    """Opened by `start()`, released by `close()`; ``async with`` does both, closing on errors too."""

    @abstractmethod
    async def start(self) -> None:
        """Open the resource (connect, start background tasks)."""

    @abstractmethod
    async def close(self) -> None:
        """Release what `start` opened."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel `tasks` (None stands for a task never started) and wait until each has ended.

    How a resource stops its background tasks: what they return or raise, their cancellation
    included, is dropped.
    """
    started = [task for task in tasks if task is not None]
    for task in started:
        task.cancel()
    await asyncio.gather(*started, return_exceptions=True)
