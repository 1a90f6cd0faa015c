"""Sagas under kill -9 on the real broker: every action and compensation takes effect once.

Workers are `tether serve saga_workload:workers` subprocesses; effects go to a ledger file that
honours idempotency keys (the outside world), with a ``call`` line per execution. Two tests:

- A kill at each kind of boundary: before an effect, after an effect but before its journal
  entry (the key absorbs the re-execution), with a parallel sibling already journaled (replayed,
  not re-run), and inside the compensation. The saga ends right, and the ledger shows exactly
  which executions repeated.
- Many concurrent sagas with scripted failures while workers are killed at random: each saga
  ends completed, compensated, or stuck and dead-lettered (then retried after the fix), and the
  ledger balances: no half trip, no double effect.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest
from harness.saga_workload import ALL_ACTIONS, DIR_ENV, LEDGER_ENV, Order, booking, expected_compensations, repair
from harness.session_harness import REPO, TESTS, WorkerProcess, assert_eventually, make_settings, worker_env

from actors import Client, Settings  # noqa: E402
from actors.runtime.deadletters import HANDLER, KEY  # noqa: E402
from eventstore import Topics, open_log  # noqa: E402
from sagas import SagaClient, SagaRecord, read_sagas  # noqa: E402
from sagas.testing import Ledger  # noqa: E402

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

TARGET = "harness.saga_workload:workers"


def _env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return worker_env(
        settings,
        **{
            LEDGER_ENV: str(tmp_path / "ledger.jsonl"),
            DIR_ENV: str(tmp_path),
            "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]),
        },
    )


def _calls(ledger: Ledger) -> Counter[str]:
    return Counter(e["key"] for e in ledger.entries() if e["kind"] == "call")


async def _saga(settings: Settings, saga_id: str) -> SagaRecord:
    records = await read_sagas(settings, saga="booking", saga_id=saga_id)
    assert records, f"saga {saga_id} is not in the log yet"
    return records[0]


SIBLING = {"hotel": "car", "car": "hotel"}
"""The parallel group's other step: the test waits for its journal entry before the kill, so
that it is replayed, not run again."""


def _boundaries() -> dict[str, tuple[str, str | None, list[str], list[str]]]:
    """Every step boundary: before and after the effect of each action, and of each compensation.

    Value: (pause point, failing step or None, executions that run twice, keys journaled before
    the kill). A kill after an effect but before its journal entry re-runs that execution, and
    its idempotency key absorbs it; a kill before an effect re-runs nothing that took effect.
    """
    out: dict[str, tuple[str, str | None, list[str], list[str]]] = {}
    for phase, steps, failing in (
        ("action", ["flight", "hotel", "car", "charge", "email"], None),
        ("compensation", ["hotel", "car", "flight"], "charge"),  # charge fails: undo the rest
    ):
        for step in steps:
            for when in ("before", "after"):
                sibling = SIBLING.get(step)
                out[f"{step}-{phase}-{when}"] = (
                    f"{step}:{phase}:{when}",
                    failing,
                    [f"{step}:{phase}"] if when == "after" else [],
                    [f"{sibling}:{phase}"] if sibling else [],
                )
    return out


BOUNDARIES = _boundaries()


@pytest.mark.parametrize("boundary", list(BOUNDARIES))
async def test_kill_9_at_a_step_boundary(kafka_bootstrap: str, namespace: str, tmp_path: Path, boundary: str) -> None:
    pause, failing, repeated, journaled = BOUNDARIES[boundary]
    settings = make_settings("kafka", tmp_path / "data", namespace, bootstrap=kafka_bootstrap, partitions=2)
    # The broker's floor: the restarted worker waits this long for the killed one to be expelled.
    fast = settings.kafka.model_copy(update={"session_timeout_ms": 6000, "heartbeat_interval_ms": 1500})
    settings = settings.model_copy(update={"kafka": fast})
    ledger = Ledger(tmp_path / "ledger.jsonl")
    worker = WorkerProcess(TARGET, _env(settings, tmp_path), tmp_path)
    saga_id = f"trip-{boundary}"
    script = {f"{failing}:action": ["fatal"]} if failing else {}
    worker.start()
    try:
        async with Client.connect(settings) as client:
            handle = await SagaClient(client).start(booking, saga_id, Order(script=script, pause=pause))

            def paused() -> None:
                assert worker.alive(), worker.output()[-3000:]
                assert list(tmp_path.glob("paused-*")), "the worker has not reached the pause point"

            await assert_eventually(paused, timeout=90)

            async def siblings_journaled() -> None:
                names = {e["name"] for e in (await _saga(settings, saga_id)).in_flight if e.get("result", {}).get("ok")}
                assert set(journaled) <= names, names

            await assert_eventually(siblings_journaled, timeout=30)
            worker.kill_and_restart()
            outcome = await handle.result(timeout=120)
    finally:
        worker.cleanup()
    try:
        assert outcome.status == ("compensated" if failing else "completed")
        effects = {k.split(":", 1)[1] for k in ledger.effects() if k.startswith(f"booking/{saga_id}:")}
        assert effects == _final_effects(f"fail:{failing}" if failing else "ok")
        # Each effect once; re-executions only where the kill left no journal entry.
        assert sorted(d["key"].split(":", 1)[1] for d in ledger.duplicates()) == sorted(repeated)
        calls = _calls(ledger)
        pause_key = f"booking/{saga_id}:{pause.rsplit(':', 1)[0]}"
        assert calls[pause_key] == 2, calls
        for key in journaled:
            assert calls[f"booking/{saga_id}:{key}"] == 1, f"{key} ran again although it was journaled: {calls}"
        assert all(n == 1 for k, n in calls.items() if k != pause_key), calls
        # An independent view: the fold of the raw log agrees with the worker.
        assert (await _saga(settings, saga_id)).state.status == outcome.status
    except AssertionError:
        print(worker.logs())
        raise


SAGAS = int(os.environ.get("TETHER_CHAOS_SAGAS", "1000"))
KILLS = 3
SEED = 11


def _plan(rng: random.Random, i: int) -> tuple[str, Order]:
    roll = rng.random()
    delay = rng.uniform(0.0, 0.04)
    if roll < 0.45:
        return "ok", Order(delay=delay)
    if roll < 0.9:
        failing = rng.choice(["flight", "hotel", "car", "charge"])
        return f"fail:{failing}", Order(script={f"{failing}:action": ["fatal"]}, delay=delay)
    return "stuck", Order(script={"charge:action": ["fatal"]}, down=["flight:compensation"], delay=delay)


async def test_many_sagas_while_workers_are_killed(kafka_bootstrap: str, namespace: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    settings = make_settings("kafka", tmp_path / "data", namespace, bootstrap=kafka_bootstrap, partitions=4)
    ledger = Ledger(tmp_path / "ledger.jsonl")
    env = _env(settings, tmp_path)
    workers = [WorkerProcess(TARGET, env, tmp_path, name=f"w{i}") for i in range(2)]
    plans = {f"s{i:03d}": _plan(rng, i) for i in range(SAGAS)}
    for w in workers:
        w.start()
    kills: list[tuple[str, int]] = []
    try:
        async with Client.connect(settings) as client:
            sagas = SagaClient(client)
            started = time.monotonic()
            await asyncio.gather(*(sagas.start(booking, sid, order) for sid, (_, order) in plans.items()))
            total = _effects_before_repair(plans)
            for n in range(1, KILLS + 1):
                # Kill a random worker at evenly spread points of the work, then start it again.
                at = total * n // (KILLS + 1)
                await assert_eventually(lambda at=at: _reached(ledger, at), timeout=90)
                await asyncio.sleep(rng.uniform(0.1, 1.0))
                victim = rng.choice(workers)
                kills.append((victim.name, len(ledger.effects())))
                victim.kill_and_restart()

            async def settled() -> dict[str, SagaRecord]:
                records = {r.saga_id: r for r in await read_sagas(settings, saga="booking")}
                pending = [s for s in plans if s not in records or not records[s].state.settled]
                assert not pending, f"{len(pending)} sagas not settled, e.g. {pending[:5]}"
                return records

            records = await assert_eventually(settled, timeout=150, interval=2.0)
            elapsed = time.monotonic() - started
            stuck = sorted(s for s, (kind, _) in plans.items() if kind == "stuck")
            assert sorted(s for s, r in records.items() if r.state.status == "stuck") == stuck
            await _check_dead_letters(settings, stuck)

            repair(tmp_path)  # the operator fixes the refund service, then retries each saga
            for sid in stuck:
                assert (await sagas.retry("booking", sid, timeout=60)).resumed

            async def all_final() -> dict[str, SagaRecord]:
                records = {r.saga_id: r for r in await read_sagas(settings, saga="booking")}
                assert all(records[s].state.status == "compensated" for s in stuck)
                return records

            records = await assert_eventually(all_final, timeout=90, interval=1.0)
        _check_outcomes(plans, records, ledger)
        duplicates = ledger.duplicates()
        print(
            f"{SAGAS} sagas settled in {elapsed:.1f} s with kills {kills}; {len(ledger.effects())} "
            f"effects, {len(duplicates)} re-executions absorbed by their idempotency key"
        )
        assert kills[-1][1] < len(ledger.effects()), "the kills landed after the work was done"
    except AssertionError:
        for w in workers:
            print(w.logs())
        raise
    finally:
        for w in workers:
            w.cleanup()


def _failing(kind: str) -> str:
    """The step whose action fails in a plan of this kind (stuck sagas fail at the charge)."""
    return kind.split(":")[1] if kind.startswith("fail:") else "charge"


def _final_effects(kind: str) -> set[str]:
    """What a plan's saga leaves in the ledger in the end (``step:phase`` keys)."""
    if kind == "ok":
        return set(ALL_ACTIONS)
    compensations = set().union(*expected_compensations(_failing(kind)))
    # Balanced: every action that took effect is compensated, and nothing else happens.
    return {c.replace(":compensation", ":action") for c in compensations} | compensations


def _effects_before_repair(plans: dict[str, tuple[str, Order]]) -> int:
    """Effects the run takes before the operator's repair (the flight refunds of stuck sagas wait)."""
    return sum(len(_final_effects(kind)) - (kind == "stuck") for kind, _ in plans.values())


def _reached(ledger: Ledger, effects: int) -> None:
    assert len(ledger.effects()) >= effects, "the work has not reached the next kill point yet"


async def _check_dead_letters(settings: Settings, stuck: list[str]) -> None:
    log = open_log(settings)
    await log.start()
    try:
        topics = Topics(settings.namespace)

        async def letters() -> None:
            records = [r async for r in log.read(topics.dlq, 0)]
            parked = Counter((r.header(KEY) or b"").decode() for r in records if r.header(HANDLER) == b"park")
            assert sorted(parked) == stuck and set(parked.values()) == {1}, parked

        await assert_eventually(letters, timeout=30)
    finally:
        await log.close()


def _check_outcomes(plans: dict[str, tuple[str, Order]], records: dict[str, SagaRecord], ledger: Ledger) -> None:
    effects: dict[str, set[str]] = {}
    for key in ledger.effects():
        saga, rest = key.split(":", 1)  # booking/{saga_id}:{step}:{phase}
        effects.setdefault(saga.split("/", 1)[1], set()).add(rest)
    for saga_id, (kind, _) in plans.items():
        state = records[saga_id].state
        done = effects.get(saga_id, set())
        assert done == _final_effects(kind), (saga_id, kind, done)
        if kind == "ok":
            assert state.status == "completed", (saga_id, state.status)
            continue
        assert state.status == "compensated" and state.failed_step == _failing(kind), (saga_id, state.status)
        order: list[str] = [
            k.split(":", 1)[1] for k in _in_ledger_order(ledger, saga_id) if k.endswith(":compensation")
        ]
        if "flight:compensation" in order:
            assert order[-1] == "flight:compensation", (saga_id, order)  # reverse order: flight last


def _in_ledger_order(ledger: Ledger, saga_id: str) -> list[str]:
    return [e["key"] for e in ledger.entries() if e["kind"] == "effect" and e["key"].startswith(f"booking/{saga_id}:")]
