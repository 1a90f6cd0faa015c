"""Bulk actions run in the background of the console, their progress polled by the page."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from dlq import ItemResult, Report

__all__ = ["Job", "Jobs"]


@dataclass
class Job:
    """One bulk replay or discard: how far it is and what came of it."""

    id: str
    action: str
    who: str
    selection: str
    total: int | None = None
    handled: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    report: Report | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the run ended (with a report or an error)."""
        return self.report is not None or self.error is not None

    def progress(self, item: ItemResult, total: int) -> None:
        """The `dlq` progress callback: one more item handled."""
        self.total = total
        self.handled += 1
        self.outcomes[item.outcome] += 1


class Jobs:
    """The console's bulk jobs, newest kept (a restart of the console forgets them)."""

    def __init__(self, keep: int = 50) -> None:
        self._jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._keep = keep

    def get(self, job_id: str) -> Job | None:
        """The job with this id, if the console still has it."""
        return self._jobs.get(job_id)

    def start(self, action: str, who: str, selection: str, run: Callable[[Job], Awaitable[Report]]) -> Job:
        """Run `run` in the background as a new job."""
        job = Job(uuid.uuid4().hex[:12], action, who, selection)
        self._jobs[job.id] = job
        while len(self._jobs) > self._keep:
            oldest = next(iter(self._jobs))
            if not self._jobs[oldest].finished:
                break
            del self._jobs[oldest]

        async def go() -> None:
            try:
                job.report = await run(job)
            except Exception as exc:  # reported on the job's page; the console goes on
                job.error = f"{type(exc).__name__}: {exc}"

        task = asyncio.get_running_loop().create_task(go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def close(self) -> None:
        """Wait for running jobs to end (a replay's chunks commit whole either way)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
