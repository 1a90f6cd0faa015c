"""Exactly-once in effect while the worker is killed with SIGKILL again and again under load.

A `tether serve` subprocess runs the ledger workload, on the real broker and on the embedded log
(where a restarted worker takes over at once instead of after the group's session timeout).
The test sends ~400 messages (sends, calls, relays and journaled calls between sessions) over 20
keys while it kills the worker at random moments and restarts it. Then three independent views
must agree: the states the runtime serves, a fold of the raw events topic, and the external
ledger of side effects.
"""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import pytest
from harness.ledger_chaos import LedgerLoad, ledger_lines, verify
from harness.session_harness import (
    BACKENDS_AND_SCHEMES,
    WorkerProcess,
    assert_eventually,
    backend_and_scheme,
    settings_for,
    worker_env,
)

from actors import Client, RuntimeSettings  # noqa: E402
from eventstore import Topics, open_log  # noqa: E402

pytestmark = [pytest.mark.slow]

KEYS = 20
OPS_PER_KEY = 20
KILLS = 6
SEED = 7
PAUSE = {"embedded": (0.3, 1.2), "kafka": (0.02, 0.25)}
"""Seconds between a key's operations: a restart takes ~2 s on the embedded log, ~12 s on Kafka
(the group waits out the killed member's session), so the load spans the kills on both."""
WORK = {"embedded": (0.05, 0.3), "kafka": (0.0, 0.04)}
"""Seconds a side effect takes: long enough that kills land inside invocations."""


@pytest.mark.parametrize("backend", BACKENDS_AND_SCHEMES)
async def test_exactly_once_under_repeated_kill_9(
    request: pytest.FixtureRequest, backend: str, namespace: str, tmp_path: Path
) -> None:
    # kafka-per-worker: one transaction per worker, fenced by the group (TETHER_KAFKA__TRANSACTIONS).
    backend, transactions = backend_and_scheme(backend)
    rng = random.Random(SEED)
    settings = settings_for(
        request,
        backend,
        tmp_path / "data",
        namespace,
        partitions=4,
        runtime=RuntimeSettings(checkpoint_every=8, max_resident_sessions=3),
    )
    ledger = tmp_path / "ledger.jsonl"
    env = worker_env(settings, TETHER_TEST_LEDGER=str(ledger), TETHER_KAFKA__TRANSACTIONS=transactions)
    worker = WorkerProcess("harness.ledger_sessions:ledger", env, tmp_path)
    log = open_log(settings)
    worker.start()
    try:
        await log.start()
        async with Client.connect(settings) as client:
            # Each key holds its last 3 operations back until the kills are over, so every kill
            # lands while the load runs.
            load = LedgerLoad(
                client,
                [f"k{i}" for i in range(KEYS)],
                OPS_PER_KEY,
                SEED,
                pause=PAUSE[backend],
                work=WORK[backend],
                hold_after=OPS_PER_KEY - 3,
            )
            running = asyncio.create_task(load.run())
            # Kill points spread over the load (by operations done), each at a random moment
            # once the restarted worker has restored a partition.
            total = KEYS * OPS_PER_KEY
            thresholds = sorted(rng.sample(range(total // 10, total * 8 // 10), KILLS))
            kill_times: list[tuple[int, int]] = []
            for threshold in thresholds:
                await assert_eventually(worker.assert_restored, timeout=60)
                await assert_eventually(lambda t=threshold: _reached(load, t), timeout=120)
                await asyncio.sleep(rng.uniform(0.0, 0.5))
                assert not running.done()
                kill_times.append((load.done_ops, ledger_lines(ledger)))
                worker.kill_and_restart()
            load.release.set()
            await asyncio.wait_for(running, 240)
            await load.barriers()
            try:
                verdict = await verify(load, client, log, Topics(settings.namespace), ledger)
            except AssertionError:
                print(worker.logs())
                raise
            open_at_restore = sum(int(n) for n in re.findall(r"(\d+) open invocations", worker.logs(None)))
            print(
                f"kills at (ops done, ledger lines): {kill_times}; {open_at_restore} invocations "
                f"were open at a restore; {verdict.reexecuted} effects ran again after a crash "
                f"before their journal commit; {load.call_retries} call retries; "
                f"{len(verdict.invocations.done)} invocations"
            )
            assert worker.starts == KILLS + 1
    finally:
        worker.cleanup()
        await log.close()


def _reached(load: LedgerLoad, threshold: int) -> None:
    assert load.done_ops >= threshold, f"{load.done_ops} operations done, waiting for {threshold}"
