"""W9: dead letters at scale. ``python -m bench.dlq_scale [--letters N] [--quick] [--kafka]``.

Writes N dead letters (as the runtime writes them: `actors.runtime.deadletters.dead_letter`)
whose times spread over 30 days, the last 0.1 % within the last hour, then times what
``tether dlq list --since 1h`` and ``stats`` do (through `dlq.DeadLetters`, which the commands
are a thin layer over) two ways in the same run: a full scan of the topic (what both did
before: ``DeadLetters(index=False)``, no time range) and the current path (offsets-for-times for
``--since``; the local index for ``stats``, built once, cold, then caught up). The ratio is scan
time over current time. ``show ID`` reads one offset (before as now) and is timed alone.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from actors import Settings, TerminalError
from actors.messages import Message
from actors.runtime.deadletters import Failure, dead_letter
from bench._harness import console, record
from dlq import DeadLetters, Filter
from eventstore import OutRecord, Record, Topics, open_log

NS = "dlqscale"
DAY_MS = 86_400_000
BATCH = 10_000


def _failure(n: int, at_ms: int) -> Failure:
    kinds = (TerminalError, ValueError, KeyError, TimeoutError)
    exc = kinds[n % len(kinds)](f"order o-{n} failed at offset {n}")
    return Failure(exc, "terminal", 1, at_ms, at_ms, "orders", f"k{n % 1000}", ("apply", "charge")[n % 2], f"m{n}")


async def write_letters(settings: Settings, count: int) -> None:
    """Append `count` dead letters, oldest first: 30 days, the last 0.1 % in the last hour."""
    topics = Topics(settings.namespace)
    log = open_log(settings)
    await log.start()
    try:
        await log.create_topics(topics.specs(settings.partitions))
        now = int(time.time() * 1000)
        recent = max(1, count // 1000)
        old_span = 30 * DAY_MS
        batch: list[OutRecord] = []
        for n in range(count):
            if n < count - recent:
                at = now - old_span + n * (old_span - 2 * 3_600_000) // max(1, count - recent)
            else:
                at = now - 3_000_000 + (n - (count - recent)) * 2_000_000 // recent
            msg = Message(id=f"m{n}", o="orders", k=f"k{n % 1000}", h="apply", p={"n": n}, ts=at)
            source = Record(topics.inbox, 0, n, b"orders/k", msg.encode(), (), at)
            out = dead_letter(source, _failure(n, at), dlq_topic=topics.dlq, group=topics.group())
            batch.append(OutRecord(out.topic, 0, out.key, out.value, out.headers, at))
            if len(batch) >= BATCH:
                await log.append(batch)
                batch = []
        if batch:
            await log.append(batch)
    finally:
        await log.close()


async def _timed(settings: Settings, index: bool, what: str, letter_id: str) -> tuple[float, Any]:
    started = time.perf_counter()
    async with DeadLetters(settings, index=index) as dead:
        if what == "list":
            if index:
                _, total = await dead.page(Filter(since_ms=int(time.time() * 1000) - 3_600_000), limit=100)
            else:  # the old path: every dead letter read, then filtered
                since = int(time.time() * 1000) - 3_600_000
                everything = await dead.inspector.all()
                total = sum(1 for x in everything if x.seen_ms >= since)
            result: Any = total
        elif what == "stats":
            result = sum(r.count for r in await dead.stats())
        else:
            result = (await dead.show(letter_id)).id
    return time.perf_counter() - started, result


async def run(count: int, kafka: str | None, data_dir: Path) -> dict[str, Any]:
    backend = "kafka" if kafka else "embedded"
    settings = Settings(namespace=NS, data_dir=data_dir, partitions=1, backend=backend)
    if kafka:
        settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": kafka})})
    started = time.perf_counter()
    await write_letters(settings, count)
    write_s = time.perf_counter() - started
    letter_id = f"0-{count // 2}"
    figures: dict[str, Any] = {"letters": count, "backend": backend, "write_s": round(write_s, 2)}
    for what in ("list", "stats"):
        scan_s, scan_result = await _timed(settings, False, what, letter_id)
        new_s, new_result = await _timed(settings, True, what, letter_id)
        assert scan_result == new_result, (what, scan_result, new_result)
        figures[what] = {"scan_s": round(scan_s, 3), "now_s": round(new_s, 3), "ratio": round(scan_s / new_s, 1)}
        if what == "stats":  # the first indexed run built the index: the next ones catch up only
            warm_s, warm_result = await _timed(settings, True, what, letter_id)
            assert warm_result == scan_result
            figures[what].update(cold_s=figures[what]["now_s"], now_s=round(warm_s, 3), ratio=round(scan_s / warm_s, 1))
    show_s, shown = await _timed(settings, True, "show", letter_id)
    assert shown == letter_id
    figures["show"] = {"now_s": round(show_s, 3)}  # a read of one offset, before as now
    figures["correct"] = True
    return figures


@click.command()
@click.option("--letters", default=1_000_000, show_default=True, help="Dead letters to write.")
@click.option("--quick", is_flag=True, help="20,000 dead letters (a smoke run).")
@click.option("--kafka", default=None, metavar="HOST:PORT", help="A broker to use instead of the embedded log.")
def main(letters: int, quick: bool, kafka: str | None) -> None:
    """Time dlq list --since 1h, stats and show against a full scan, and record it as W9."""
    count = 20_000 if quick else letters
    with tempfile.TemporaryDirectory(prefix="tether-dlq-scale-") as tmp:
        result = asyncio.run(run(count, kafka, Path(tmp)))
    if not quick:
        record("tether", {"W9-dlq-scale": {"params": {"letters": count}, "median": result, "runs": [result]}})
    console().print(result)


if __name__ == "__main__":
    main()
