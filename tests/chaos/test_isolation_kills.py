"""Sessions stay apart and step results keep their type while the worker is killed with SIGKILL.

Issue 11 on the real broker: 50 sessions called concurrently with one idempotency key per round
while a `tether serve` subprocess is killed five times; and a step returning a model, a list of
dataclasses and a list of models, replayed after a kill -9 between its steps and its reply.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from harness import isolation_sessions as iso
from harness.session_harness import WorkerProcess, assert_eventually, settings_for, worker_env

from actors import CallTimeoutError, Client, RuntimeSettings  # noqa: E402
from eventstore import Topics, open_log, unpack  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

SESSIONS = 50
ROUNDS = 8
KILLS = 5


async def _call_until_answered(client: Client, key: str, by: int, ik: str) -> iso.Receipt:
    """A caller's retry loop: the same idempotency key until a reply comes (across kills)."""
    while True:
        try:
            return await client.call(iso.add, key, iso.Add(by=by, work=0.05), timeout=8, idempotency_key=ik)
        except CallTimeoutError:
            continue


async def test_one_idempotency_key_on_50_sessions_under_kill_9(
    request: pytest.FixtureRequest, namespace: str, tmp_path: Path
) -> None:
    settings = settings_for(
        request, "kafka", tmp_path / "data", namespace, partitions=4, runtime=RuntimeSettings(checkpoint_every=40)
    )
    worker = WorkerProcess("harness.isolation_sessions:SERVED", worker_env(settings), tmp_path)
    worker.start()
    rng = random.Random(11)
    keys = [f"k{n}" for n in range(SESSIONS)]
    log = open_log(settings)
    try:
        await log.start()
        async with Client.connect(settings) as client:
            rounds: list[list[iso.Receipt]] = []

            async def load() -> None:
                for r in range(ROUNDS):
                    # Round r: every session gets by = its index + 1000 * r, under the one key.
                    rounds.append(
                        await asyncio.gather(
                            *(
                                _call_until_answered(client, key, n + 1000 * r, f"order-{r}")
                                for n, key in enumerate(keys)
                            )
                        )
                    )

            running = asyncio.create_task(load())
            for _ in range(KILLS):
                await assert_eventually(worker.assert_restored, timeout=60)
                await asyncio.sleep(rng.uniform(0.3, 1.5))
                worker.kill_and_restart()
            await asyncio.wait_for(running, 300)
            assert worker.starts == KILLS + 1
            for r, receipts in enumerate(rounds):
                for n, (key, receipt) in enumerate(zip(keys, receipts, strict=True)):
                    assert (receipt.key, receipt.by, receipt.step_key) == (key, n + 1000 * r, key), (r, receipt)
                assert len({x.uuid for x in receipts}) == SESSIONS, f"round {r}: uuids collide across sessions"
                assert len({x.invocation_id for x in receipts}) == SESSIONS
            # Every order applied once per session, and each journal holds only its own steps.
            for n, key in enumerate(keys):
                state = (await client.state("acct", key, timeout=30))["state"]
                assert state["n"] == sum(n + 1000 * r for r in range(ROUNDS)), (key, state)
                assert sorted(state["log"]) == sorted(f"{key}:{n + 1000 * r}" for r in range(ROUNDS))
            topics = Topics(settings.namespace)
            for p in range(settings.partitions):
                async for record in log.read(topics.events, p):
                    assert record.key is not None and record.value is not None
                    entry = unpack(record.value)
                    if entry["k"] == "step" and record.key.startswith(b"acct/"):
                        assert entry["r"]["key"] == record.key.decode().split("/", 1)[1], entry
    except AssertionError:
        print(worker.logs())
        raise
    finally:
        worker.cleanup()
        await log.close()


async def test_step_result_types_survive_kill_9(request: pytest.FixtureRequest, namespace: str, tmp_path: Path) -> None:
    settings = settings_for(request, "kafka", tmp_path / "data", namespace, partitions=2)
    worker = WorkerProcess("harness.isolation_sessions:SERVED", worker_env(settings), tmp_path)
    worker.start()
    try:
        async with Client.connect(settings) as client:
            live = await client.call(iso.gather_slowly, "live", iso.Fetch(), timeout=60)
            assert live.kinds == ["Doc", "Hit", "Doc", "equal=True"]
            call = asyncio.ensure_future(client.call(iso.gather_slowly, "killed", iso.Fetch(), timeout=90))
            await asyncio.sleep(1.0)  # the three steps are journaled; the handler sleeps 2 s
            assert not call.done()
            worker.kill_and_restart()
            replayed = await call
            assert replayed.kinds == live.kinds
    except AssertionError:
        print(worker.logs())
        raise
    finally:
        worker.cleanup()
