"""An interrupted replay never leaves a dead letter sent without its status, or the reverse.

Runs on the embedded log with dead letters written by hand (no worker): a replay of many dead
letters of one session is interrupted by Ctrl-C (KeyboardInterrupt) or a cancellation at several
points, inside a chunk's commit, between chunks and in a transform, and then run again. After
every interruption, the inbox holds a replay message of a dead letter if and only if its status
is ``replayed``, and after the last run each dead letter was sent exactly once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from harness.order_sessions import order_dead_letters

from actors import Settings  # noqa: E402
from actors.messages import Message  # noqa: E402
from dlq import DeadLetter, DeadLetters  # noqa: E402
from eventstore import EmbeddedLog, OutRecord, Topics  # noqa: E402

NS = "interrupted"
TOPICS = Topics(NS)
LETTERS = 95
CHUNK = 10


class InterruptingLog(EmbeddedLog):
    """The embedded log, raising `interrupt` instead of the `nth` write that has status records.

    The exception is raised after the write's first half is inserted inside its SQLite
    transaction, as a signal arriving mid-write would.
    """

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.nth: int | None = None
        self.interrupt: type[BaseException] = KeyboardInterrupt
        self._seen = 0

    def interrupt_at(self, nth: int, interrupt: type[BaseException]) -> None:
        """Raise `interrupt` in the `nth` write with status records from now on."""
        self.nth, self.interrupt, self._seen = nth, interrupt, 0

    def _insert(self, db: Any, records: Sequence[OutRecord]) -> None:
        if self.nth is not None and any(r.topic == TOPICS.control for r in records):
            self._seen += 1
            if self._seen == self.nth:
                self.nth = None
                super()._insert(db, records[: len(records) // 2])
                raise self.interrupt()
        super()._insert(db, records)


async def write_dead_letters(log: EmbeddedLog, settings: Settings) -> None:
    await log.create_topics(TOPICS.specs(settings.partitions))
    await log.append(order_dead_letters(TOPICS, settings.partitions, "c-0", LETTERS))


async def sent_and_recorded(log: EmbeddedLog, dead: DeadLetters) -> tuple[Counter[str], set[str]]:
    """Replay messages in the inbox (message id -> copies) and ids of replayed dead letters."""
    sent: Counter[str] = Counter()
    for p in range(await log.partition_count(TOPICS.inbox)):
        async for record in log.read(TOPICS.inbox, p):
            sent[Message.decode(record.value).id] += 1
    recorded = {letter.replay_message_id for letter in await dead.all() if letter.status == "replayed"}
    return sent, recorded


def check_invariant(sent: Counter[str], recorded: set[str]) -> None:
    assert set(sent) == recorded, (
        f"sent without status: {sorted(set(sent) - recorded)}; status without send: {sorted(recorded - set(sent))}"
    )
    assert max(sent.values(), default=1) == 1, f"sent twice: {[m for m, c in sent.items() if c > 1]}"


async def test_interrupted_replays_keep_sends_and_statuses_together(tmp_path: Path) -> None:
    settings = Settings(namespace=NS, data_dir=tmp_path, partitions=2, backend="embedded")
    log = InterruptingLog(tmp_path)
    await log.start()
    try:
        await write_dead_letters(log, settings)
        async with DeadLetters(settings, log=log, chunk_size=CHUNK) as dead:
            letters = await dead.all()
            assert len(letters) == LETTERS

            # Ctrl-C and a cancellation inside a chunk's commit (the second, then the first write).
            for nth, interrupt in ((2, KeyboardInterrupt), (1, asyncio.CancelledError)):
                log.interrupt_at(nth, interrupt)
                with pytest.raises(interrupt):
                    await dead.replay()
                check_invariant(*await sent_and_recorded(log, dead))

            # Ctrl-C between chunks (the progress callback runs after a chunk's commit).
            def stop_after_chunk(item: Any, total: int) -> None:
                if len(replayed) == CHUNK + 3:
                    raise KeyboardInterrupt
                replayed.append(item)

            replayed: list[Any] = []
            with pytest.raises(KeyboardInterrupt):
                await dead.replay(progress=stop_after_chunk)
            check_invariant(*await sent_and_recorded(log, dead))

            # A cancellation while a chunk is being planned (in an async transform).
            calls = 0

            async def cancel_on_the_15th(payload: Any, letter: DeadLetter) -> Any:
                nonlocal calls
                calls += 1
                if calls == 15:
                    task = asyncio.current_task()
                    assert task is not None
                    task.cancel()
                    await asyncio.sleep(0)
                return payload

            task = asyncio.create_task(dead.replay(transform=cancel_on_the_15th))
            with pytest.raises(asyncio.CancelledError):
                await task
            sent, recorded = await sent_and_recorded(log, dead)
            check_invariant(sent, recorded)
            assert 0 < len(recorded) < LETTERS, "every interruption stopped the replay part-way"

            report = await dead.replay()
            assert report.ok and report.counts["replayed"] == LETTERS - len(recorded)
            sent, recorded = await sent_and_recorded(log, dead)
            check_invariant(sent, recorded)
            assert len(recorded) == LETTERS
    finally:
        await log.close()
