"""Load and verification for chaos runs of the ledger workload (`ledger_sessions`).

`LedgerLoad` drives sends, calls and relays over many keys, each key in its own task, with
deterministic message ids (idempotency keys) so that a call that timed out is retried safely.
`verify` then proves exactly-once in effect three ways: the runtime's states against what was
sent, an independent fold of the raw events topic, and the external side-effect ledger.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors import CallTimeoutError, Client, RuntimeSettings, Settings
from actors.messages import invocation_id
from eventstore import EventLog, Topics

from .ledger_sessions import Op, apply, ask, relay
from .session_harness import WAIT, Invocations, WorkerProcess, make_settings, read_invocations, worker_env


@dataclass
class TwoLedgerWorkers:
    """Two ledger workers, `a` and `b` (not started), on one Kafka namespace and one side-effect ledger."""

    settings: Settings
    """Kafka, 4 partitions, a checkpoint every 30 events."""
    ledger: Path
    a: WorkerProcess
    b: WorkerProcess

    @classmethod
    def make(
        cls, bootstrap: str, namespace: str, tmp_path: Path, b_env: dict[str, str] | None = None, **env: str
    ) -> TwoLedgerWorkers:
        """Their settings and processes; `env` adds ``TETHER_*`` variables to both, `b_env` to `b` only."""
        settings = make_settings(
            "kafka",
            tmp_path / "data",
            namespace,
            bootstrap=bootstrap,
            partitions=4,
            runtime=RuntimeSettings(checkpoint_every=30),
        )
        ledger = tmp_path / "ledger.jsonl"
        environ = worker_env(settings, TETHER_TEST_LEDGER=str(ledger), **env)
        a = WorkerProcess("harness.ledger_sessions:ledger", environ, tmp_path, name="a")
        b = WorkerProcess("harness.ledger_sessions:ledger", {**environ, **(b_env or {})}, tmp_path, name="b")
        return cls(settings, ledger, a, b)


@dataclass
class LedgerLoad:
    """Operations on each key, in its own task: sends, calls and relays to other keys."""

    client: Client
    keys: list[str]
    ops_per_key: int
    seed: int
    pause: tuple[float, float] = (0.02, 0.25)
    work: tuple[float, float] = (0.0, 0.04)
    call_timeout: float = 45.0
    own: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """Tags each key applies from its own messages, in send order."""
    relayed_in: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """Tags each key applies for other keys' relays (``tag@from``) and asks (``tag?from``)."""
    relays_out: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    asks_out: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    message_ids: set[str] = field(default_factory=set)
    call_retries: int = 0
    done_ops: int = 0
    hold_after: int | None = None
    """Each key stops after this many operations until `release` is set (keeps the load open)."""
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, until: asyncio.Event | None = None) -> None:
        """Run `ops_per_key` operations per key, or with `until` as many as fit until it is set."""
        await asyncio.gather(*(self._key(i, key, until) for i, key in enumerate(self.keys)))

    async def _key(self, index: int, key: str, until: asyncio.Event | None) -> None:
        rng = random.Random(self.seed * 1000 + index)
        for i in itertools.count():
            if until.is_set() if until is not None else i >= self.ops_per_key:
                return
            if i == self.hold_after:
                await self.release.wait()
            tag = f"{key}:{i}"
            work = rng.uniform(*self.work)
            kind = rng.random()
            later = self.keys[index + 1 :]
            if kind < 0.1 and later:
                # Calls only go to later keys: a cycle of calls between sessions would deadlock.
                target = rng.choice(later)
                self.asks_out[key].append(tag)
                self.relayed_in[target].append(f"{tag}?{key}")
                # ctx.call's message id derives from the caller's invocation id (session-scoped).
                self.message_ids.update({tag, f"{invocation_id(f'ledger/{key}', tag)}:call:1"})
                await self.client.send(ask, key, Op(tag=tag, target=target, work=work), idempotency_key=tag)
            elif kind < 0.25:
                target = rng.choice([k for k in self.keys if k != key])
                self.relays_out[key] += 1
                self.relayed_in[target].append(f"{tag}@{key}")
                self.message_ids.update({tag, f"{invocation_id(f'ledger/{key}', tag)}:send:1"})
                await self.client.send(relay, key, Op(tag=tag, target=target, work=work), idempotency_key=tag)
            elif kind < 0.5:
                self.own[key].append(tag)
                self.message_ids.add(tag)
                await self.call(key, tag, work)
            else:
                self.own[key].append(tag)
                self.message_ids.add(tag)
                await self.client.send(apply, key, Op(tag=tag, work=work), idempotency_key=tag)
            self.done_ops += 1
            await asyncio.sleep(rng.uniform(*self.pause))

    async def call(self, key: str, tag: str, work: float = 0.0) -> int:
        """Call `apply` until a reply comes; a retry reuses the id, so it applies once."""
        while True:
            try:
                reply = await self.client.call(
                    apply, key, Op(tag=tag, work=work), timeout=self.call_timeout, idempotency_key=tag
                )
                return int(reply.count)
            except CallTimeoutError:
                self.call_retries += 1

    async def barriers(self) -> dict[str, int]:
        """Two rounds of calls on every key: after them every relayed apply has been applied.

        After round 1 every relay has committed (its apply is in the target's inbox); round 2
        queues behind all of them. Returns the counts round 2 replied with.
        """
        counts: dict[str, int] = {}
        for round_ in range(2):
            for key in self.keys:
                tag = f"barrier{round_}:{key}"
                self.own[key].append(tag)
                self.message_ids.add(tag)
                counts[key] = await self.call(key, tag)
        return counts


def read_ledger(path: Path) -> dict[str, list[str]]:
    """Idempotency key -> tokens of every execution of that effect, in file order."""
    out: dict[str, list[str]] = defaultdict(list)
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                item = json.loads(line)
                out[item["ik"]].append(item["token"])
    return out


def ledger_lines(path: Path) -> int:
    return sum(1 for _ in path.open()) if path.exists() else 0


def fold(done_entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The ledger session state from raw done entries, with no runtime code."""
    state: dict[str, Any] = {"count": 0, "tags": [], "relayed": 0, "asked": []}
    for entry in done_entries:
        for envelope in entry.get("ev", ()):
            if envelope["t"] == "Applied":
                state["count"] += 1
                state["tags"].append(envelope["d"]["tag"])
            elif envelope["t"] == "Relayed":
                state["relayed"] += 1
            elif envelope["t"] == "Asked":
                state["asked"].append(envelope["d"]["count"])
    return state


@dataclass
class Verdict:
    invocations: Invocations
    reexecuted: int
    """Effects that ran more than once because a crash came before their step was journaled."""


def ledger_pids(path: Path) -> dict[str, int]:
    """Token -> the PID of the process whose execution wrote it."""
    out: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                item = json.loads(line)
                out[item["token"]] = item["pid"]
    return out


async def verify(
    load: LedgerLoad,
    client: Client,
    log: EventLog,
    topics: Topics,
    ledger: Path,
    *,
    late_from: frozenset[int] = frozenset(),
) -> Verdict:
    """Assert exactly-once in effect after a chaos run (call after `load.barriers()`).

    `late_from`: PIDs of zombies (a worker frozen past its session timeout, then resumed) whose
    effects may run after the new owner journaled the same step: fencing stops a zombie's
    writes, not the side effects it was in the middle of when it froze.
    """
    states = {key: await client.state("ledger", key, timeout=WAIT) for key in load.keys}
    # 1. What the runtime serves equals what was sent: every message once, own ones in order.
    for key in load.keys:
        state = states[key]["state"]
        tags = state["tags"]
        assert state["count"] == len(load.own[key]) + len(load.relayed_in[key]), (key, state)
        assert [t for t in tags if "@" not in t and "?" not in t] == load.own[key], (key, tags)
        assert sorted(t for t in tags if "@" in t or "?" in t) == sorted(load.relayed_in[key]), (key, tags)
        assert state["relayed"] == load.relays_out[key], (key, state)
        assert len(state["asked"]) == len(load.asks_out[key]), (key, state)

    # 2. An independent fold of the raw events topic agrees, one done entry per message.
    invocations = await read_invocations(log, topics)
    assert invocations.duplicate_done == [], invocations.duplicate_done[:10]
    assert invocations.duplicate_steps == [], invocations.duplicate_steps[:10]
    assert set(invocations.done) == load.message_ids, sorted(set(invocations.done) ^ load.message_ids)[:10]
    failed = [i for i, e in invocations.done.items() if "err" in e]
    assert failed == [], failed[:10]
    for key in load.keys:
        done = invocations.done_by_session[f"ledger/{key}"]
        assert fold(done) == states[key]["state"], key
        assert states[key]["version"] == len(done), key
    # Each ctx.call got the reply of the one apply it caused: the callee's count right after it.
    for key in load.keys:
        for entry in invocations.done_by_session[f"ledger/{key}"]:
            for envelope in entry.get("ev", ()):
                if envelope["t"] == "Asked":
                    asked = envelope["d"]
                    target_tags = states[asked["target"]]["state"]["tags"]
                    assert target_tags[asked["count"] - 1] == f"{asked['tag']}?{key}", (asked, target_tags)

    # 3. The ledger: every finished invocation's effect ran, and the execution its journal
    # recorded is the last one: nothing ran again after the step was journaled. Earlier
    # executions are crashes before the journal commit (at-least-once before journaling).
    executions = read_ledger(ledger)
    # Effect keys derive from ctx.invocation_id: unique per (session, message id).
    effect_key = {i: f"{invocation_id(e['session'], i)}:effect" for i, e in invocations.done.items()}
    expected_iks = set(effect_key.values())
    assert set(executions) == expected_iks, sorted(set(executions) ^ expected_iks)[:10]
    pids = ledger_pids(ledger) if late_from else {}
    reexecuted = 0
    for message_id in invocations.done:
        step = invocations.steps.get((message_id, 0))
        assert step is not None and step["name"] == "effect", (message_id, step)
        tokens = executions[effect_key[message_id]]
        assert step["r"] in tokens, (message_id, step["r"], tokens)
        later = tokens[tokens.index(step["r"]) + 1 :]
        if later and late_from:
            later = [t for t in later if pids.get(t) not in late_from]
        assert not later, f"{message_id}: effect ran again after it was journaled: {tokens}"
        assert len(set(tokens)) == len(tokens)
        reexecuted += len(tokens) - 1
    return Verdict(invocations, reexecuted)
