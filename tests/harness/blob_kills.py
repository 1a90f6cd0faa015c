"""The set-up the blob kill tests share: a worker whose blob writes wait on a hold file, so a
test can kill it after a blob is written and before the entry that names it commits."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from actors import Client, RuntimeSettings, Settings
from actors.inspection.views import session_history
from harness.blob_sessions import blob_files
from harness.session_harness import WorkerProcess, assert_eventually, settings_for, worker_env

T = TypeVar("T")


@dataclass(frozen=True)
class HeldBlobRun:
    """A worker serving `harness.blob_sessions` with blobs over 100,000 bytes by reference."""

    settings: Settings
    worker: WorkerProcess
    blobs: Path
    """The blob store's folder."""
    hold: Path
    """While this file exists, the worker waits after each blob write (`hold.written` says one was)."""
    ledger: Path
    """One line per run of the step or handler under test."""

    def blob_written(self) -> None:
        """Fails until the worker has written a blob and waits on the hold."""
        assert self.hold.with_suffix(".written").exists(), self.worker.output()[-2000:]

    async def call_across_a_kill(
        self, call: Callable[[Client], Awaitable[T]], session: tuple[str, str], kind: str, blobs_at_kill: int
    ) -> tuple[T, list[dict[str, Any]]]:
        """Starts the worker and makes `call`; once a blob is written (and held) kills the worker,
        checks that no `kind` entry of `session` (object, key) is visible, that the call waits and
        that `blobs_at_kill` blobs exist; then releases the hold, starts a new worker and returns
        the call's reply and the session's history."""
        self.worker.start()
        try:
            async with Client.connect(self.settings) as client:
                pending = asyncio.ensure_future(call(client))
                await assert_eventually(self.blob_written, timeout=120)
                self.worker.kill()
                history = await session_history(self.settings, *session)
                assert not [e for e in history if e["kind"] == kind], f"nothing of the {kind} is visible"
                assert not pending.done()
                assert len(blob_files(self.blobs)) == blobs_at_kill
                self.hold.unlink()
                self.worker.start()
                reply = await pending
                return reply, await session_history(self.settings, *session)
        except BaseException:
            print(self.worker.logs())
            raise
        finally:
            self.worker.cleanup()


def held_blob_run(
    request: pytest.FixtureRequest, backend: str, namespace: str, tmp_path: Path, app: str
) -> HeldBlobRun:
    """The settings and the (not yet started) worker for `harness.blob_sessions:<app>`."""
    blobs, hold, ledger = tmp_path / "blobs", tmp_path / "hold", tmp_path / "ledger"
    runtime = RuntimeSettings(blob_threshold_bytes=100_000, blob_dir=blobs)
    settings = settings_for(request, backend, tmp_path / "data", namespace, partitions=2, runtime=runtime)
    hold.touch()
    env = worker_env(
        settings,
        TETHER_RUNTIME__BLOB_THRESHOLD_BYTES="100000",
        TETHER_RUNTIME__BLOB_DIR=str(blobs),
        TETHER_TEST_BLOB_HOLD=str(hold),
        TETHER_TEST_LEDGER=str(ledger),
    )
    worker = WorkerProcess(f"harness.blob_sessions:{app}", env, tmp_path)
    return HeldBlobRun(settings, worker, blobs, hold, ledger)
