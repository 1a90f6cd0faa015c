"""A restore longer than the group's session timeout runs once, never blocks the worker's event
loop, and the partition then answers.

The restore used to run inside aiokafka's rebalance callback, which sends no heartbeat until it
returns: a restore longer than the session timeout got the worker expelled from the group, its
partition reassigned to it, and restored again, in a loop (seen: 7 restores in 150 s, 11 of 28
calls answered). Here one partition holds 400,000 events and no snapshot (a restore of about
4-8 s on this machine) and the session timeout is 6 s.

A checkpoint is due with every transaction (``checkpoint_every=1``), so the first commit after
the restore snapshots all 1,000 sessions, whose 400,000 restored entries are still encoded: it
used to fold them inside one synchronous stretch, which blocked the loop for 3 s (and the stall
watchdog blamed a handler). It folds them a slice at a time now (`checkpointing.fold_tails`).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness import isolation_sessions as iso
from harness.session_harness import WorkerProcess, assert_eventually, settings_for, worker_env

from actors import Client, RuntimeSettings  # noqa: E402
from actors.messages import session_key  # noqa: E402
from actors.protocol.entries import Done  # noqa: E402
from eventstore import OutRecord, Topics, open_log  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

EVENTS = 400_000
SESSIONS = 1_000
BATCH = 10_000


async def test_a_restore_longer_than_the_session_timeout_runs_once(
    request: pytest.FixtureRequest, namespace: str, tmp_path: Path
) -> None:
    settings = settings_for(
        request, "kafka", tmp_path / "data", namespace, partitions=1, runtime=RuntimeSettings(checkpoint_every=1)
    )
    topics = Topics(settings.namespace)
    log = open_log(settings)
    await log.start()
    try:
        await log.create_topics(topics.specs(1))
        envelope = iso.acct.codec.encode_envelope(iso.Added(by=1, tag="t"))
        now = int(time.time() * 1000)
        for first in range(0, EVENTS, BATCH):
            records = []
            for e in range(first, first + BATCH):
                j = e % SESSIONS
                # Inbox offset -1: these invocations consumed no record of this test's inbox.
                value = Done(
                    f"m{e}", "add", [envelope], version=e // SESSIONS + 1, inbox_offset=-1, ended_ms=now
                ).encode()
                records.append(OutRecord(topics.events, 0, session_key("acct", f"k{j}"), value))
            await log.append(records)
    finally:
        await log.close()

    env = worker_env(settings, TETHER_KAFKA__SESSION_TIMEOUT_MS="6000", TETHER_KAFKA__HEARTBEAT_INTERVAL_MS="2000")
    worker = WorkerProcess("harness.isolation_sessions:SERVED", env, tmp_path)
    worker.start()
    try:
        async with Client.connect(settings) as client:
            started = time.monotonic()
            receipt = await client.call(iso.add, "k7", iso.Add(by=1), timeout=120)
            answered_after = time.monotonic() - started
            assert receipt.total == EVENTS // SESSIONS + 1  # the whole history was restored, then this
            for n in range(5):
                assert (await client.call(iso.add, f"k{n}", iso.Add(by=1), timeout=30)).total == EVENTS // SESSIONS + 1
        logs = worker.output()
        took = [line for line in logs.splitlines() if "partition 0 restored" in line]
        print(f"first answer after {answered_after:.1f} s; restores: {took}")
        assert len(took) == 1, f"partition 0 was restored {len(took)} times:\n{worker.logs()}"
        # The restore yields to the event loop as it goes: it never held up the worker's
        # heartbeats (the stall watchdog logs every block of the loop longer than 1 s).
        stalls = [line for line in logs.splitlines() if "event loop was blocked" in line]
        assert not stalls, stalls
        await assert_eventually(lambda: _alive(worker))
    finally:
        worker.cleanup()


def _alive(worker: WorkerProcess) -> None:
    assert worker.alive(), worker.output()[-3000:]
