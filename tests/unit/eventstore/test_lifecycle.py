"""`cancel_and_wait`: how resources stop their background tasks."""

from __future__ import annotations

import asyncio

from eventstore.lifecycle import cancel_and_wait


async def test_every_task_given_is_cancelled_and_ended_and_none_stands_for_no_task() -> None:
    ended: list[str] = []

    async def loop(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # a task that still has work to do once cancelled
            ended.append(name)

    tasks = [asyncio.create_task(loop(n)) for n in "ab"]
    await asyncio.sleep(0)
    await cancel_and_wait(tasks[0], None, tasks[1])
    assert all(t.cancelled() for t in tasks)
    assert sorted(ended) == ["a", "b"]  # both had finished their clean-up when it returned


async def test_what_the_tasks_raised_or_returned_is_dropped() -> None:
    async def fails() -> None:
        raise ValueError("already failed")

    failed = asyncio.create_task(fails())
    finished = asyncio.create_task(asyncio.sleep(0, result=1))
    await asyncio.sleep(0.01)
    await cancel_and_wait(failed, finished)
    await cancel_and_wait()
    assert isinstance(failed.exception(), ValueError) and finished.result() == 1
