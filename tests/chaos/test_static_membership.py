"""Static group membership (KIP-345): a worker killed with SIGKILL and restarted at once takes its
partitions back without waiting out the group's session timeout.

The session timeout is 45 s here, so a call answered within 20 s of the restart can only come
from the restarted worker having been handed its partitions back at once (a dynamic member
would wait for the dead member's session to expire first).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness import isolation_sessions as iso
from harness.session_harness import WorkerProcess, settings_for, worker_env

from actors import Client  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.kafka]


async def test_a_restarted_static_member_resumes_before_the_session_timeout(
    request: pytest.FixtureRequest, namespace: str, tmp_path: Path
) -> None:
    settings = settings_for(request, "kafka", tmp_path / "data", namespace, partitions=4)
    env = worker_env(settings, TETHER_KAFKA__GROUP_INSTANCE_ID="worker-a", TETHER_KAFKA__SESSION_TIMEOUT_MS="45000")
    worker = WorkerProcess("harness.isolation_sessions:SERVED", env, tmp_path)
    worker.start()
    try:
        async with Client.connect(settings) as client:
            keys = [f"s{n}" for n in range(8)]  # on every partition
            for key in keys:
                assert (await client.call(iso.add, key, iso.Add(by=1), timeout=60)).total == 1
            worker.kill_and_restart()
            restarted = time.monotonic()
            for key in keys:
                assert (await client.call(iso.add, key, iso.Add(by=1), timeout=20)).total == 2
            print(f"all partitions answered {time.monotonic() - restarted:.1f} s after the restart")
    except AssertionError:
        print(worker.logs())
        raise
    finally:
        worker.cleanup()
