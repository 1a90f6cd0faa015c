"""A handler that blocks the event loop is named in the worker's log (heartbeats stop with it)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from actors import Client, ObjectContext, RuntimeSettings, VirtualObject, Worker
from actors.runtime.stalls import LoopWatchdog, runtime_section
from actors.settings import Settings


class Nap(BaseModel):
    seconds: float


class Done(BaseModel):
    ok: bool = True


class Nothing(BaseModel):
    pass


sleepy = VirtualObject("sleepy", state=Nothing)


@sleepy.handler()
async def nap(ctx: ObjectContext[Nothing], cmd: Nap) -> Done:
    time.sleep(cmd.seconds)  # the defect under test: blocking code in a handler
    return Done()


async def test_a_blocking_handler_is_reported(tmp_path: Path, namespace: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(
        namespace=namespace,
        data_dir=tmp_path,
        partitions=1,
        backend="embedded",
        runtime=RuntimeSettings(stall_warning=0.2),
    )
    caplog.set_level(logging.WARNING, logger="actors.runtime.stalls")
    async with Worker([sleepy], settings) as worker, Client.connect(settings) as client:
        assert (await client.call(nap, "k", Nap(seconds=0.05), timeout=30)).ok
        assert worker.watchdog.stalls == 0, "a handler that awaits is not a stall"
        assert (await client.call(nap, "k", Nap(seconds=0.6), timeout=30)).ok
        assert worker.watchdog.stalls == 1
        assert 0.4 <= worker.watchdog.longest < 5
    warnings = [r.getMessage() for r in caplog.records if r.name == "actors.runtime.stalls"]
    assert len(warnings) == 1 and "asyncio.to_thread" in warnings[0], warnings


def test_the_warning_names_the_session_timeout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="actors.runtime.stalls")
    watchdog = LoopWatchdog(1.0, session_timeout=10.0)
    watchdog.observe(12.5)
    watchdog.observe(2.0)
    assert (watchdog.stalls, watchdog.longest) == (2, 12.5)
    assert "blocked for 12.5 s; heartbeats stop meanwhile, and at 10 s" in caplog.records[0].getMessage()


async def test_a_stall_of_the_runtimes_own_work_is_not_blamed_on_a_handler(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="actors.runtime.stalls")
    watchdog = LoopWatchdog(0.1)
    watchdog.start()
    try:
        await asyncio.sleep(0.1)
        with runtime_section("a checkpoint of partition 3"):
            time.sleep(0.4)  # what a synchronous checkpoint of many sessions does
        await asyncio.sleep(0.2)
        time.sleep(0.4)  # and this is "handler" code: outside any runtime section
        await asyncio.sleep(0.2)
    finally:
        await watchdog.stop()
    warnings = [r.getMessage() for r in caplog.records if r.name == "actors.runtime.stalls"]
    assert len(warnings) == 2, warnings
    assert "Tether's own work (a checkpoint of partition 3" in warnings[0] and "to_thread" not in warnings[0]
    assert "A handler or step is running blocking code" in warnings[1]
