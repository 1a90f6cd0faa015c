"""W10: how long a surviving worker's sessions stall when another worker dies or joins.

Two ``tether serve`` workers share the 8 partitions of a namespace. One session per partition
(two per partition, in fact) is called in a loop, one call at a time, by the load generator.
Then the second worker is killed with SIGKILL; once the first has taken its partitions over, a
third worker joins. For each event the figure is the longest gap between two answers of a
session that stayed on its worker ("the survivor's sessions"): the dead worker's sessions
wait for the group's session timeout (6 s here) whatever the assignment, and a newcomer's
restore what it takes. Also counted, from the workers' logs: how often the survivor restored
partitions it already held.

Both rebalance modes run in the same invocation: ``eager`` (round robin, every partition
restored after every rebalance: what Tether did before) and ``sticky`` (the default: only what
balance needs moves, and a processor that gets its partition back in the next generation
resumes). ``python -m bench.rebalance_stall [--quick]`` runs it alone (it starts a broker if
none is configured); ``python -m bench tether --only W10-rebalance`` within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from actors import Client
from bench import tether_apps as apps
from bench._harness import console
from bench._tether_harness import (
    PARTITIONS,
    WorkerProcess,
    delete_namespace,
    kafka_settings,
    new_namespace,
    use_broker,
    wait_for_group,
)
from eventstore import partition_for

MODES = ("eager", "sticky")
KEYS_PER_PARTITION = 2
SESSION_TIMEOUT_MS = 6_000
"""The broker's minimum (``group.min.session.timeout.ms``): the dead worker is noticed soonest."""
SETTLE_S = 4.0
"""Probing goes on this long after each event's takeover (answers after the stall)."""
_RESTORED = re.compile(r"partition (\d+) restored: ")


def _restores(worker: WorkerProcess) -> Counter[int]:
    return Counter(int(m.group(1)) for m in _RESTORED.finditer(worker.log_text()))


def _keys() -> dict[int, list[str]]:
    out: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    i = 0
    while any(len(v) < KEYS_PER_PARTITION for v in out.values()):
        key = f"w10-{i}"
        p = partition_for(f"{apps.counter.name}/{key}".encode(), PARTITIONS)
        if len(out[p]) < KEYS_PER_PARTITION:
            out[p].append(key)
        i += 1
    return out


@dataclass
class _Probes:
    client: Client
    keys: dict[int, list[str]]
    answers: dict[str, list[float]] = field(default_factory=dict)
    values: dict[str, list[int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _probe(self, key: str) -> None:
        self.answers[key], self.values[key] = [], []
        while not self.stop.is_set():
            try:
                reply = await self.client.call(apps.add, key, apps.Add(n=1), timeout=120)
            except Exception as exc:  # counted: the run is then not correct
                self.errors.append(f"{key}: {exc!r}")
                await asyncio.sleep(0.5)
                continue
            self.answers[key].append(time.monotonic())
            self.values[key].append(reply.value)
            await asyncio.sleep(0.01)

    def longest_gap(self, partitions: set[int], since: float, until: float) -> float:
        """The longest time without an answer for a session of `partitions` within [since, until]."""
        worst = 0.0
        for p in partitions:
            for key in self.keys[p]:
                times = [since, *(t for t in self.answers[key] if since < t <= until), until]
                worst = max(worst, *(b - a for a, b in zip(times, times[1:], strict=False)))
        return worst

    def correct(self) -> bool:
        return not self.errors and all(v == list(range(1, len(v) + 1)) for v in self.values.values())


async def _until(check: Any, timeout: float, what: str, workers: list[WorkerProcess]) -> None:  # noqa: ANN401
    deadline = time.monotonic() + timeout
    while not check():
        for w in workers:
            w.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"W10: {what} not within {timeout:.0f} s")
        await asyncio.sleep(0.2)


async def _one_mode(bootstrap: str, mode: str, quick: bool) -> dict[str, Any]:
    namespace = new_namespace(f"W10-{mode}")
    settings = kafka_settings(bootstrap, namespace)
    env = {
        "TETHER_KAFKA__REBALANCE": mode,
        "TETHER_KAFKA__SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "TETHER_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
    }
    target = "bench.tether_apps:counter"
    a = WorkerProcess(target, settings, name=f"w10-{mode}-a", env=env)
    b = WorkerProcess(target, settings, name=f"w10-{mode}-b", env=env)
    c = WorkerProcess(target, settings, name=f"w10-{mode}-c", env=env)
    group = namespace + "-workers"
    keys = _keys()
    everything = set(range(PARTITIONS))
    try:
        a.start()
        await _until(lambda: set(_restores(a)) == everything, 120, "the first worker's restores", [a])
        b.start()
        await wait_for_group(bootstrap, group, 2, [a, b], 120)
        await _until(lambda: len(_restores(b)) == PARTITIONS // 2, 120, "the second worker's restores", [a, b])
        b_parts = set(_restores(b))
        a_parts = everything - b_parts
        async with Client.connect(settings) as client:
            probes = _Probes(client, keys)
            tasks = [asyncio.create_task(probes._probe(k)) for ks in keys.values() for k in ks]
            await asyncio.sleep(2.0 if quick else 5.0)
            # SIGKILL the second worker: its partitions wait for the session timeout.
            before = _restores(a)
            os.kill(b.pid, signal.SIGKILL)
            killed = time.monotonic()
            await _until(lambda: all(_restores(a)[p] > before[p] for p in b_parts), 120, "the takeover", [a])
            taken = time.monotonic()
            await asyncio.sleep(SETTLE_S)
            after_kill = _restores(a)
            # A third worker joins the survivor.
            c.start()
            joined = time.monotonic()
            await _until(lambda: len(_restores(c)) >= PARTITIONS // 2, 120, "the newcomer's restores", [a, c])
            await wait_for_group(bootstrap, group, 2, [a, c], 120)
            settled = time.monotonic()
            await asyncio.sleep(SETTLE_S)
            ended = time.monotonic()
            probes.stop.set()
            await asyncio.gather(*tasks)
        c_parts = set(_restores(c))
        after_join = _restores(a)
        return {
            "kill": {
                "survivor_longest_stall_s": probes.longest_gap(a_parts, killed, taken + SETTLE_S),
                "dead_workers_sessions_back_after_s": probes.longest_gap(b_parts, killed, taken + SETTLE_S),
                "takeover_s": taken - killed,
                "survivor_own_partitions_restored_again": sum(after_kill[p] - before[p] for p in a_parts),
            },
            "join": {
                "survivor_longest_stall_s": probes.longest_gap(everything - c_parts, joined, ended),
                "newcomers_partitions": len(c_parts),
                "until_group_stable_s": settled - joined,
                "survivor_kept_partitions_restored_again": sum(
                    after_join[p] - after_kill[p] for p in everything - c_parts
                ),
            },
            "calls": sum(len(v) for v in probes.values.values()),
            "errors": probes.errors[:5],
            "correct": probes.correct(),
        }
    finally:
        for w in (a, b, c):
            with contextlib.suppress(Exception):
                await w.stop()
        with contextlib.suppress(Exception):
            await delete_namespace(bootstrap, namespace)


async def run(quick: bool = False) -> dict[str, Any]:
    """Both modes, eager first; the registry's entry."""
    out: dict[str, Any] = {}
    async with use_broker() as broker:
        for mode in MODES:
            console().print(f"W10 rebalance stall: {mode}")
            out[mode] = await _one_mode(broker["bootstrap"], mode, quick)
    stalls = {
        f"{mode}_{event}_stall_s": out[mode][event]["survivor_longest_stall_s"]
        for mode in MODES
        for event in ("kill", "join")
    }
    median = {"session_timeout_ms": SESSION_TIMEOUT_MS, **stalls, "modes": out}
    return {
        "params": {"partitions": PARTITIONS, "keys": PARTITIONS * KEYS_PER_PARTITION},
        "median": median,
        "runs": [median],
        "correct": all(out[m]["correct"] for m in MODES),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rebalance_stall", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter probing before the kill")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.quick)), indent=2))


if __name__ == "__main__":
    main()
