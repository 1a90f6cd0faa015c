"""A worker frozen with SIGSTOP past its session timeout, its partitions taken over, then resumed.

The frozen worker is a zombie when it wakes: it still holds fetched messages, invocations in
the middle of their steps and records waiting for their transaction, and it does not know yet
that the group gave its partitions to another worker. Whatever it then tries to commit must be
fenced: none of its writes becomes visible, no message is lost, none is applied twice. Its side
effects may still run (fencing stops writes, not code already running), and the ledger check
allows exactly that: late executions by the zombie's PID, never journaled. The worker that
takes over runs either transaction scheme: in a rolling switch of `kafka.transactions` a zombie
of one scheme meets an owner of the other, and each owner fences both kinds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from harness.ledger_chaos import LedgerLoad, TwoLedgerWorkers, ledger_lines, verify
from harness.session_harness import WorkerProcess, assert_eventually

from actors import Client
from eventstore import Topics, open_log

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

SESSION_TIMEOUT_MS = 6_000
"""The broker's minimum (group.min.session.timeout.ms), so the takeover comes quickly."""
FROZEN_FOR = 3 * SESSION_TIMEOUT_MS / 1000
"""Seconds the worker stays stopped: well past its session timeout and the takeover."""


@pytest.mark.parametrize(
    ("transactions", "taken_over_by"),
    [
        ("per_partition", "per_partition"),
        ("per_worker", "per_worker"),
        # A rolling switch of the transaction scheme: the zombie ran the other scheme.
        ("per_partition", "per_worker"),
        ("per_worker", "per_partition"),
    ],
)
async def test_a_worker_frozen_past_its_session_timeout_writes_nothing_after_takeover(
    kafka_bootstrap: str, namespace: str, tmp_path: Path, transactions: str, taken_over_by: str
) -> None:
    workers = TwoLedgerWorkers.make(
        kafka_bootstrap,
        namespace,
        tmp_path,
        b_env={"TETHER_KAFKA__TRANSACTIONS": taken_over_by},
        TETHER_KAFKA__SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS),
        TETHER_KAFKA__HEARTBEAT_INTERVAL_MS="1000",
        TETHER_KAFKA__TRANSACTIONS=transactions,
    )
    settings, ledger, a, b = workers.settings, workers.ledger, workers.a, workers.b
    log = open_log(settings)
    a.start()
    frozen = False
    try:
        await log.start()
        async with Client.connect(settings) as client:
            # Side effects take up to 0.3 s: the freeze lands inside invocations, between a step's
            # effect and its journal commit, and with records waiting for their transaction.
            load = LedgerLoad(client, [f"f{i}" for i in range(16)], 0, seed=23, pause=(0.02, 0.2), work=(0.05, 0.3))
            stop = asyncio.Event()
            running = asyncio.create_task(load.run(until=stop))

            async def progress(lines: int = 20) -> None:
                start = ledger_lines(ledger)

                def grew() -> None:
                    assert b.alive() or b.proc is None, b.output()[-3000:]
                    assert ledger_lines(ledger) >= start + lines, "no progress"

                await assert_eventually(grew, timeout=90)

            await progress()
            b.start()
            await assert_eventually(lambda: b.assert_restored(why="no partition assigned yet"), timeout=60)
            await progress()
            restores_before = b.restored_partitions()

            os.kill(a.pid, signal.SIGSTOP)
            frozen = True
            frozen_at = time.monotonic()
            # b takes the frozen worker's partitions once the group has expelled it.
            await assert_eventually(
                lambda: b.assert_restored(restores_before, "the frozen worker's partitions were not taken over"),
                timeout=60,
            )
            await progress()
            await asyncio.sleep(max(0.0, FROZEN_FOR - (time.monotonic() - frozen_at)))
            os.kill(a.pid, signal.SIGCONT)
            frozen = False

            # The zombie wakes, tries to commit what it held, is fenced, and rejoins the group.
            await assert_eventually(lambda: _was_fenced(a), timeout=60)
            await progress(40)
            stop.set()
            await asyncio.wait_for(running, 180)
            await load.barriers()
            verdict = await verify(load, client, log, Topics(settings.namespace), ledger, late_from=frozenset({a.pid}))
            print(
                f"{load.done_ops} operations, {len(verdict.invocations.done)} invocations, "
                f"{verdict.reexecuted} effects ran again, {load.call_retries} call retries; "
                f"fenced partitions of the zombie: {a.output().count('fenced by a newer owner')}"
            )
            assert a.alive() and b.alive()
    except AssertionError:
        print(a.logs(), b.logs())
        raise
    finally:
        if frozen:
            os.kill(a.pid, signal.SIGCONT)
        a.cleanup()
        b.cleanup()
        await log.close()


def _was_fenced(worker: WorkerProcess) -> None:
    assert worker.alive(), worker.output()[-3000:]
    out = worker.output()
    assert "fenced" in out.lower(), "the resumed zombie never learnt it was fenced"
