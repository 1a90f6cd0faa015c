"""The ceiling baseline: a raw aiokafka exactly-once pipeline, with no Tether code at all.

Whatever Tether does per message (decode, fold, journal, reply) comes on top of this: one
consume-transform-produce loop with a transactional producer per input partition, offsets
committed in the same transaction as the output. It bounds what any Kafka-based runtime on
this machine, this broker and this client can reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from bench._harness import LatencyRecorder, console, median_run, progress_bar, sample_this_process
from bench._harness.raw_clients import committed_reader, scratch_topics, transactional_producers

PARTITIONS = 8
DEFAULT_MESSAGES = 100_000
DEFAULT_SESSIONS = 10_000


def _value(seq: int) -> bytes:
    # A small command, about the size of a counter increment with a little envelope.
    return b'{"seq":%d,"op":"add","n":1}' % seq


def _transform(value: bytes) -> bytes:
    # Stand-in for the handler: the reply echoes the command with a result field. Cheap on
    # purpose: the baseline is about Kafka's cost, not the handler's.
    return value[:-1] + b',"ok":true}'


async def _produce(bootstrap: str, topic: str, messages: int, sessions: int) -> tuple[float, float]:
    """Send ``messages`` keyed records as fast as the client allows; return (start, end) times."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        futures = []
        with progress_bar("raw: produce", messages) as advance:
            start = time.perf_counter()
            for seq in range(messages):
                key = b"s%d" % (seq % sessions)
                futures.append(await producer.send(topic, _value(seq), key=key))
                if seq % 1000 == 999:
                    advance(1000)
            await asyncio.gather(*futures)
            end = time.perf_counter()
    finally:
        await producer.stop()
    return start, end


async def _process(
    bootstrap: str,
    in_topic: str,
    out_topic: str,
    messages: int,
    ns: str,
    partitions: int,
    max_records: int | None,
) -> dict[str, Any]:
    """The exactly-once loop: per input partition, one transaction per fetched batch."""
    group_id = f"{ns}-g"
    producers = transactional_producers(bootstrap, f"{ns}-pp", range(partitions), max_batch_size=256 * 1024)
    consumer = committed_reader(in_topic, bootstrap=bootstrap, group_id=group_id)
    setup_start = time.perf_counter()
    # start() runs InitProducerId for each transactional id: it would fence an older owner.
    await asyncio.gather(*(p.start() for p in producers.values()))
    await consumer.start()
    txn_latency = LatencyRecorder()
    batch_sizes: list[int] = []
    processed = 0
    first_record_at: float | None = None
    last_commit_at = 0.0

    async def transact(tp: TopicPartition, records: list[Any]) -> None:
        prod = producers[tp.partition]
        t0 = time.perf_counter()
        async with prod.transaction():
            futures = [
                await prod.send(out_topic, _transform(r.value), key=r.key, partition=tp.partition) for r in records
            ]
            await prod.send_offsets_to_transaction({tp: records[-1].offset + 1}, group_id)
            await asyncio.gather(*futures)
        txn_latency.add(time.perf_counter() - t0)
        batch_sizes.append(len(records))

    try:
        with progress_bar("raw: consume-transform-produce", messages) as advance:
            deadline = time.monotonic() + max(120.0, messages / 500)
            while processed < messages:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"raw pipeline processed {processed} of {messages} before its deadline")
                batch = await consumer.getmany(timeout_ms=500, max_records=max_records)
                if not batch:
                    continue
                if first_record_at is None:
                    first_record_at = time.perf_counter()
                await asyncio.gather(*(transact(tp, recs) for tp, recs in batch.items() if recs))
                last_commit_at = time.perf_counter()
                n = sum(len(r) for r in batch.values())
                processed += n
                advance(n)
    finally:
        await consumer.stop()
        await asyncio.gather(*(p.stop() for p in producers.values()))
    assert first_record_at is not None
    return {
        "setup_s": first_record_at - setup_start,
        "first_record_at": first_record_at,
        "last_commit_at": last_commit_at,
        "processed": processed,
        "transactions": len(batch_sizes),
        "mean_records_per_txn": processed / max(1, len(batch_sizes)),
        "txn_latency": txn_latency.summary(),
    }


async def _verify(bootstrap: str, out_topic: str, messages: int, ns: str) -> dict[str, Any]:
    """Read the output back (read_committed): exactly one reply per input, none twice."""
    consumer = committed_reader(out_topic, bootstrap=bootstrap, group_id=None)
    await consumer.start()
    seen = bytearray(messages)
    count = dupes = 0
    try:
        deadline = time.monotonic() + max(60.0, messages / 2000)
        while count < messages and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    seq = int(r.value.split(b":", 2)[1].split(b",", 1)[0])
                    if seen[seq]:
                        dupes += 1
                    seen[seq] = 1
                    count += 1
    finally:
        await consumer.stop()
    missing = messages - sum(seen)
    return {
        "ok": count == messages and dupes == 0 and missing == 0,
        "read": count,
        "duplicates": dupes,
        "missing": missing,
    }


async def run_raw_pipeline(
    bootstrap: str,
    messages: int = DEFAULT_MESSAGES,
    sessions: int = DEFAULT_SESSIONS,
    *,
    partitions: int = PARTITIONS,
    max_records: int | None = None,
    broker_pid: int | None = None,
) -> dict[str, Any]:
    """Produce ``messages`` records, then run them through the exactly-once loop once.

    Topics are new for each call (``bench-raw-<random>-in``/``-out``) and deleted afterwards.

    Args:
        bootstrap: Kafka bootstrap address.
        messages: Records to produce and process.
        sessions: Distinct keys the records are spread over (round robin).
        partitions: Partitions of both topics (one transactional producer each).
        max_records: Cap on records per ``getmany`` (None: whatever one fetch returns; with
            the whole input already in the topic that is ~1 MiB per partition, so very few,
            very large transactions). A cap gives smaller transactions, closer to a live stream.
        broker_pid: The broker's PID, to sample its CPU and memory too.

    Returns:
        Rates (``end_to_end_msgs_per_s`` from first send to last commit,
        ``processing_msgs_per_s`` from the first fetched record to the last commit,
        ``produce_msgs_per_s``), transaction figures, CPU/RSS, and the output check.
    """
    async with scratch_topics(bootstrap, "bench-raw", ("in", "out"), partitions) as (ns, in_topic, out_topic):
        with sample_this_process("bench", broker_pid) as sampler:
            p_start, p_end = await _produce(bootstrap, in_topic, messages, sessions)
            proc = await _process(bootstrap, in_topic, out_topic, messages, ns, partitions, max_records)
        check = await _verify(bootstrap, out_topic, messages, ns)
    usage = sampler.summary(calls=messages)
    end_to_end = proc["last_commit_at"] - p_start
    figures = pipeline_figures(proc, usage, check)
    return {
        "messages": messages,
        "sessions": sessions,
        "partitions": partitions,
        "max_records": max_records,
        "produce_s": p_end - p_start,
        "produce_msgs_per_s": messages / (p_end - p_start),
        "consumer_setup_s": proc["setup_s"],
        "processing_msgs_per_s": proc["processed"] / figures["processing_s"],
        "end_to_end_s": end_to_end,
        "end_to_end_msgs_per_s": messages / end_to_end,
        **figures,
    }


def pipeline_figures(proc: dict[str, Any], usage: dict[str, Any], check: dict[str, Any]) -> dict[str, Any]:
    """What every raw pipeline's run reports besides its rates: processing time, transactions, load, the check."""
    return {
        "processing_s": proc["last_commit_at"] - proc["first_record_at"],
        "transactions": proc["transactions"],
        "mean_records_per_txn": proc["mean_records_per_txn"],
        "txn_latency": proc["txn_latency"],
        "machine_load": usage.pop("machine", {}),
        "processes": usage,
        "check": check,
        "correct": check["ok"],
    }


async def run_raw(
    runs: int = 3,
    scale: float = 1.0,
    *,
    messages: int = DEFAULT_MESSAGES,
    sessions: int = DEFAULT_SESSIONS,
    max_records: int | None = None,
    broker: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the raw pipeline ``runs`` times on one broker (fresh topics each run); median by rate.

    An unmeasured warm-up run (5% of the messages, at least 1,000) comes first, so the broker's
    JIT and page cache are warm for run 1 as they are for the others. The broker is the one
    named by ``TETHER_KAFKA__BOOTSTRAP_SERVERS``, or a LocalBroker started (and stopped) here.

    Args:
        runs: Measured runs.
        scale: Multiplies the message count (not the session count).
        messages: Messages per run at scale 1.
        sessions: Distinct keys.
        max_records: Cap on records per fetch, hence per transaction (see run_raw_pipeline).
        broker: A running broker (``kafka_bootstrap()``'s dict) to use instead of finding one
            (Tether's W4 runs the ceiling on its own broker, in the same invocation).

    Returns:
        ``{"pipeline": {"params", "median", "runs", "correct"}, "_broker": {...}}``.
    """
    from bench._kafka import kafka_bootstrap

    n = max(1_000, int(messages * scale))
    out = console()
    results = []
    found = contextlib.nullcontext(broker) if broker is not None else kafka_bootstrap()
    async with found as broker:
        await run_raw_pipeline(broker["bootstrap"], max(1_000, n // 20), sessions, max_records=max_records)
        for r in range(runs):
            figures = await run_raw_pipeline(
                broker["bootstrap"],
                n,
                sessions,
                max_records=max_records,
                broker_pid=broker.get("pid"),
            )
            results.append(figures)
            mark = "[green]ok[/green]" if figures["correct"] else f"[red]{figures['check']}[/red]"
            out.print(
                f"raw kafka run {r + 1}/{runs}: "
                f"produce {figures['produce_msgs_per_s']:,.0f} msg/s, "
                f"processing {figures['processing_msgs_per_s']:,.0f} msg/s, "
                f"end-to-end {figures['end_to_end_msgs_per_s']:,.0f} msg/s, "
                f"{figures['transactions']} txns ({figures['mean_records_per_txn']:,.0f} "
                f"records each), check {mark}"
            )
    med = median_run(results, key="end_to_end_msgs_per_s")
    return {
        "_broker": {k: v for k, v in broker.items() if k != "pid"},
        "pipeline": {
            "system": "raw_kafka",
            "params": {
                "messages": n,
                "sessions": sessions,
                "partitions": PARTITIONS,
                "max_records": max_records,
                "runs": runs,
            },
            "median": med,
            "runs": results,
            "correct": all(r["correct"] for r in results),
        },
    }
