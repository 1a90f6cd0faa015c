"""Exactly-once replay of 1,500 dead letters of one session while the replayer is SIGKILLed.

An operator runs ``tether dlq replay --session orders/c-0`` over 1,500 dead letters of one
session, and the process is killed with SIGKILL five times at random points (between chunks,
and inside a chunk's transaction) and started again each time, then once more to completion. A
worker applies the replays meanwhile. Every order must be applied once: each replay message is
in the inbox exactly once (no dead letter was ever sent twice, so the session's dedupe window
is never needed) and the session's state holds each order once. After every kill, the inbox
holds the replay of a dead letter if and only if its status is ``replayed``.

Each run is killed soon after its first chunk committed. Four runs are rate-limited
(``--rate 300/s``: chunks of 30, one every 0.1 s), so that a kill lands anywhere in the chunk
cycle, between chunks or inside a chunk's transaction. The fifth goes at full speed (chunks of
500, more than the 128 message ids the runtime's dedupe window used to keep) and is killed while
it sends its second chunk, as in the issue that found double applications (re-sent copies
pushed the originals out of that window). The last run goes at full speed to the end.

The dead letters are written by hand (`order_sessions.order_dead_letters`), as a worker writes
them, so that producing them costs no 1,500 failing invocations.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from harness.order_sessions import order_dead_letters, orders
from harness.session_harness import REPO, assert_eventually, settings_for

from actors import Client, Settings, Worker  # noqa: E402
from actors.messages import Message  # noqa: E402
from dlq import DeadLetters  # noqa: E402
from dlq.status import StatusStore, decode  # noqa: E402
from eventstore import EventLog, Topics, open_log  # noqa: E402
from eventstore.log import LogConsumer  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

LETTERS = 1500
KEY = "c-0"
SEED = 11
ROUNDS = [*[("300/s", (0.0, 0.1))] * 4, ("2500/s", (0.0, 0.03))]
"""Per killed run: its --rate (chunks of a tenth of it), and how long to wait (a random time in
the range) after its first chunk committed before the kill. The fast run (chunks of 250, about
0.5 s for what is left) is killed while it sends its second chunk; at full speed the rest can
commit before a loaded machine delivers the kill, and the round would prove nothing."""


class Replayer:
    """``tether dlq replay --session orders/c-0`` as a subprocess; each run logs to a new file."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        assert settings.kafka.bootstrap_servers
        self.args = ["-b", settings.kafka.bootstrap_servers, "-n", settings.namespace]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        self.env["PYTHONPATH"] = os.pathsep.join([str(REPO), self.env.get("PYTHONPATH", "")])
        self.log_dir = log_dir
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, rate: str | None) -> None:
        self.runs += 1
        cmd = [sys.executable, "-c", "from actors.cli.main import main; main()", "dlq", "replay"]
        cmd += ["--session", f"{orders.name}/{KEY}", "--json", *self.args]
        if rate is not None:
            cmd += ["--rate", rate]
        with open(self.log_dir / f"replay-{self.runs}.log", "wb") as out:
            self.proc = subprocess.Popen(cmd, env=self.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def output(self) -> str:
        return (self.log_dir / f"replay-{self.runs}.log").read_text(errors="replace")[-3000:]


class StatusTail:
    """Follows the control topic with one consumer: how many dead letters are replayed, now."""

    def __init__(self, consumer: LogConsumer) -> None:
        self.consumer = consumer
        self.replayed: set[str] = set()

    @classmethod
    async def open(cls, log: EventLog, topics: Topics) -> StatusTail:
        count = await log.partition_count(topics.control)
        return cls(await log.consumer(topics.control, partitions=dict.fromkeys(range(count), 0)))

    async def count(self) -> int:
        for record in await self.consumer.fetch(0.02):
            decoded = decode(record.key, record.value)
            if decoded is not None and decoded[1] is not None and decoded[1].status == "replayed":
                self.replayed.add(decoded[0])
        return len(self.replayed)


async def replayed_ids(statuses: StatusStore) -> set[str]:
    return {r.replay_message_id or "" for r in (await statuses.load()).values() if r.status == "replayed"}


async def inbox_replays(log: EventLog, topics: Topics) -> Counter[str]:
    """How often each replay message id is in the inbox."""
    out: Counter[str] = Counter()
    for p in range(await log.partition_count(topics.inbox)):
        async for record in log.read(topics.inbox, p):
            message_id = Message.decode(record.value).id
            if message_id.startswith("dlq-replay:"):
                out[message_id] += 1
    return out


async def check_invariant(log: EventLog, topics: Topics, statuses: StatusStore) -> int:
    """Sent iff replayed, and nothing sent twice; returns how many dead letters are replayed."""
    sent = await inbox_replays(log, topics)
    recorded = await replayed_ids(statuses)
    twice = sorted(m for m, c in sent.items() if c > 1)
    assert not twice, f"{len(twice)} dead letters sent twice, e.g. {twice[:5]}"
    # Commit markers reach the control and inbox partitions at slightly different moments.
    assert set(sent) == recorded, (
        f"{len(set(sent) - recorded)} sent without their status, {len(recorded - set(sent))} "
        "recorded without their send"
    )
    return len(recorded)


async def test_replay_of_one_session_killed_five_times_applies_each_order_once(
    request: pytest.FixtureRequest, namespace: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    settings = settings_for(request, "kafka", tmp_path / "data", namespace, partitions=2)
    topics = Topics(settings.namespace)
    log = open_log(settings)
    await log.start()
    replayer = Replayer(settings, tmp_path)
    tail: StatusTail | None = None
    started = time.monotonic()
    try:
        await log.create_topics(topics.specs(settings.partitions))
        await log.append(order_dead_letters(topics, settings.partitions, KEY, LETTERS))
        statuses = StatusStore(log, topics, partitions=settings.partitions)
        async with Worker([orders], settings), Client.connect(settings) as client:
            kills: list[tuple[str | None, int, int]] = []
            tail = await StatusTail.open(log, topics)
            for rate, (least, most) in ROUNDS:
                before = len(await replayed_ids(statuses))

                async def progressed(wanted: int = before + 1) -> None:
                    assert replayer.alive(), f"the replay ended before the kill:\n{replayer.output()}"
                    done = await tail.count()
                    assert done >= wanted, f"{done} replayed, waiting for {wanted}"

                replayer.start(rate)
                await assert_eventually(progressed, timeout=60, interval=0.0)
                await asyncio.sleep(rng.uniform(least, most))
                replayer.kill()
                done = await assert_eventually(lambda: check_invariant(log, topics, statuses), timeout=30)
                kills.append((rate, before, done))
                print(f"{time.monotonic() - started:.1f} s: killed run {replayer.runs} ({rate}): {before} -> {done}")
            assert kills[-1][2] < LETTERS, f"every kill must interrupt the replay: {kills}"

            print(f"{time.monotonic() - started:.1f} s: the last run starts")
            replayer.start(None)
            assert replayer.proc is not None
            assert await asyncio.to_thread(replayer.proc.wait, 120) == 0, replayer.output()
            assert await check_invariant(log, topics, statuses) == LETTERS
            async with DeadLetters(settings) as dead:
                letters = await dead.all()
                assert Counter(x.status for x in letters) == {"replayed": LETTERS}

            async def all_applied() -> list[int]:
                state = await client.state(orders.name, KEY, timeout=30)
                applied = list(state["state"]["applied"])
                assert len(applied) >= LETTERS, f"{len(applied)} of {LETTERS} orders applied"
                return applied

            print(f"{time.monotonic() - started:.1f} s: the replay is complete")
            await assert_eventually(all_applied, timeout=90, interval=0.2)
            await asyncio.sleep(1.0)  # anything applied twice would show by now
            applied = await all_applied()
            twice = sorted(n for n, c in Counter(applied).items() if c > 1)
            assert not twice, f"{len(twice)} orders applied twice, e.g. {twice[:5]}"
            assert sorted(applied) == list(range(LETTERS))
            print(f"kills (rate, replayed before, after): {kills}; {time.monotonic() - started:.1f} s")
    finally:
        if replayer.proc is not None and replayer.alive():
            replayer.kill()
        if tail is not None:
            await tail.consumer.close()
        await log.close()
