"""W9: dead letters at scale. ``python -m bench.dlq_scale [--letters N] [--quick] [--kafka]``.

Writes N dead letters (with the headers the runtime writes: `actors.protocol.deadletter`)
whose times spread over 30 days, the last 0.1 % within the last 20 minutes, then times what
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

from actors import Settings
from actors.messages import Message
from actors.protocol.deadletter import DeadLetterHeaders
from bench._harness import console, record
from dlq import DeadLetters, Filter
from eventstore import OutRecord, Topics, open_log

NS = "dlqscale"
DAY_MS = 86_400_000
BATCH = 10_000


KINDS = ("actors.errors.TerminalError", "builtins.ValueError", "builtins.KeyError", "builtins.TimeoutError")
TRACE = 'Traceback (most recent call last):\n  File "app.py", line 12, in apply\n    raise error\n'


def _headers(n: int, at_ms: int, topics: Topics) -> list[tuple[str, bytes]]:
    """The headers the runtime writes for a failed message (the bench may not import the engine)."""
    fqcn = KINDS[n % len(KINDS)]
    return DeadLetterHeaders(
        original_topic=topics.inbox,
        original_partition=0,
        original_offset=n,
        original_timestamp_ms=at_ms,
        original_timestamp_type="CreateTime",
        consumer_group=topics.group(),
        exception_fqcn=fqcn,
        exception_message=f"order o-{n} failed at offset {n}",
        stacktrace=TRACE + f"{fqcn}: order o-{n} failed at offset {n}\n",
        object_name="orders",
        key=f"k{n % 1000}",
        handler=("apply", "charge")[n % 2],
        message_id=f"m{n}",
        attempts=1,
        first_failure_ms=at_ms,
        last_failure_ms=at_ms,
        error_class=fqcn.rsplit(".", 1)[-1],
        category="terminal",
    ).encode()


async def write_letters(settings: Settings, count: int) -> None:
    """Append `count` dead letters, oldest first: 30 days, the last 0.1 % in the last 20 minutes."""
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
                at = now - 1_200_000 + (n - (count - recent)) * 1_000_000 // recent  # 20 to 3 min ago
            msg = Message(id=f"m{n}", o="orders", k=f"k{n % 1000}", h="apply", p={"n": n}, ts=at)
            batch.append(OutRecord(topics.dlq, 0, b"orders/k", msg.encode(), tuple(_headers(n, at, topics)), at))
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


async def run(count: int, kafka: str | None, data_dir: Path, *, scan: bool = True) -> dict[str, Any]:
    backend = "kafka" if kafka else "embedded"
    # A broker outlives a run: each run on Kafka writes into a namespace of its own.
    namespace = f"{NS}-{int(time.time())}" if kafka else NS
    settings = Settings(namespace=namespace, data_dir=data_dir, partitions=1, backend=backend)
    if kafka:
        settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap_servers": kafka})})
    started = time.perf_counter()
    await write_letters(settings, count)
    write_s = time.perf_counter() - started
    letter_id = f"0-{count // 2}"
    figures: dict[str, Any] = {"letters": count, "backend": backend, "write_s": round(write_s, 2)}
    expected = {"list": max(1, count // 1000), "stats": count}
    for what in ("list", "stats"):
        new_s, new_result = await _timed(settings, True, what, letter_id)
        assert new_result == expected[what], (what, new_result)
        figures[what] = {"now_s": round(new_s, 3)}
        if what == "stats":  # the first indexed run built the index: the next ones catch up only
            warm_s, warm_result = await _timed(settings, True, what, letter_id)
            assert warm_result == new_result
            figures[what].update(cold_s=figures[what]["now_s"], now_s=round(warm_s, 3))
        if scan:
            scan_s, scan_result = await _timed(settings, False, what, letter_id)
            assert scan_result == new_result, (what, scan_result, new_result)
            figures[what].update(scan_s=round(scan_s, 3), ratio=round(scan_s / figures[what]["now_s"], 1))
    show_s, shown = await _timed(settings, True, "show", letter_id)
    assert shown == letter_id
    figures["show"] = {"now_s": round(show_s, 3)}  # a read of one offset, before as now
    figures["correct"] = True
    return figures


@click.command()
@click.option("--letters", default=1_000_000, show_default=True, help="Dead letters to write.")
@click.option("--quick", is_flag=True, help="20,000 dead letters (a smoke run).")
@click.option("--kafka", default=None, metavar="HOST:PORT", help="A broker to use instead of the embedded log.")
@click.option("--no-scan", is_flag=True, help="Skip the full-scan baseline (it holds every letter in memory).")
@click.option("--no-record", is_flag=True, help="Print the figures only (bench/results/latest.json untouched).")
def main(letters: int, quick: bool, kafka: str | None, no_scan: bool, no_record: bool) -> None:
    """Time dlq list --since 1h, stats and show against a full scan, and record it as W9.

    With --kafka the broker at HOST:PORT is used as it is (start one with ``tether kafka up``;
    nothing is started or stopped here), in a new namespace ``dlqscale-<time>`` per run.
    """
    count = 20_000 if quick else letters
    with tempfile.TemporaryDirectory(prefix="tether-dlq-scale-") as tmp:
        result = asyncio.run(run(count, kafka, Path(tmp), scan=not no_scan))
    if not quick and not no_record:
        name = "W9-dlq-scale-kafka" if kafka else "W9-dlq-scale"
        record("tether", {name: {"params": {"letters": count}, "median": result, "runs": [result]}})
    console().print(result)


if __name__ == "__main__":
    main()
