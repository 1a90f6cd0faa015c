"""Exactly-once ceilings by Kafka client and transaction scheme, with no Tether code.

Two raw pipelines, each run with four client set-ups on the same broker, in the same run:

- **pipeline**: the input is produced first (as in ``bench.raw_kafka``), then a read_committed
  group consumer reads it and a transactional producer writes one output record per input,
  committing the consumed offsets in the same transaction. At most ``max_records`` records per
  fetch, so per transaction (500 by default: a live stream's batches, not 8 giant ones).
- **request/reply** (the W2 ceiling): a server process reads requests, adds to an in-memory
  counter per key and produces the reply in a transaction with the request offsets, group
  committing whatever arrived meanwhile; the load generator is W2's (``bench._harness.drive``,
  64 calls in flight, the same seeded draw of 1,000 keys) with a plain idempotent producer for
  requests and a read_committed reader of the replies.

Variants (``VARIANTS``):

- ``aiokafka-partition``: aiokafka 0.14, one transactional producer per input partition, one
  transaction in flight per partition (today's Tether scheme; aiokafka speaks only
  ``TxnOffsetCommit`` v0, so this is how it fences a zombie);
- ``aiokafka-worker``: aiokafka, one transactional producer for all partitions, one
  transaction in flight (no zombie fencing by the group generation: speed only);
- ``kafka-python``: kafka-python 3.0.12 (threads, blocking calls), one producer, offsets sent
  with ``KafkaConsumer.group_metadata()`` (KIP-447);
- ``confluent``: confluent-kafka (librdkafka), one producer, offsets sent with
  ``consumer_group_metadata()`` (KIP-447).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench._harness import LatencyRecorder, console, drive, median_run, sample_this_process
from bench._harness.raw_clients import committed_reader, scratch_topics, transactional_producers
from bench.raw_kafka import DEFAULT_SESSIONS, PARTITIONS, _produce, _transform, _verify, pipeline_figures

VARIANTS = ("aiokafka-partition", "aiokafka-worker", "kafka-python", "confluent")
DEFAULT_MESSAGES = 50_000
DEFAULT_MAX_RECORDS = 500
RR_CALLS = 20_000
RR_CONCURRENCY = 64
RR_KEYS = 1_000


# --------------------------------------------------------------------------------------------
# pipeline: consume -> transactional produce, per variant
# --------------------------------------------------------------------------------------------


class _Tally:
    """What a processing loop measured, from its set-up (when the tally is made) on."""

    def __init__(self, messages: int) -> None:
        self.messages = messages
        self.deadline: float | None = None
        """Set when the loop starts (`more`): at least two minutes, longer for many messages."""
        self.setup_start = time.perf_counter()
        self.first_record_at: float | None = None
        self.last_commit_at = 0.0
        self.processed = 0
        self.transactions = 0
        self.txn_latency = LatencyRecorder()

    def more(self) -> bool:
        """Whether records are left to process; past the deadline, TimeoutError."""
        if self.deadline is None:
            self.deadline = time.monotonic() + max(120.0, self.messages / 200)
        if self.processed >= self.messages:
            return False
        if time.monotonic() > self.deadline:
            raise TimeoutError(f"processed {self.processed} of {self.messages} before the deadline")
        return True

    def fetched(self) -> None:
        """A batch was fetched: the first one ends the set-up."""
        if self.first_record_at is None:
            self.first_record_at = time.perf_counter()

    def transacted(self, t0: float) -> None:
        """A transaction begun at `t0` committed."""
        self.txn_latency.add(time.perf_counter() - t0)
        self.transactions += 1

    def applied(self, records: int) -> None:
        """A fetched batch of `records` is committed."""
        self.last_commit_at = time.perf_counter()
        self.processed += records

    def figures(self) -> dict[str, Any]:
        assert self.first_record_at is not None
        return {
            "setup_s": self.first_record_at - self.setup_start,
            "first_record_at": self.first_record_at,
            "last_commit_at": self.last_commit_at,
            "processed": self.processed,
            "transactions": self.transactions,
            "mean_records_per_txn": self.processed / max(1, self.transactions),
            "txn_latency": self.txn_latency.summary(),
        }


async def _pipeline_aiokafka(
    bootstrap: str, in_topic: str, out_topic: str, messages: int, ns: str, max_records: int, per_partition: bool
) -> dict[str, Any]:
    group_id = f"{ns}-g"
    ids = range(PARTITIONS) if per_partition else range(1)
    producers = transactional_producers(bootstrap, f"{ns}-t", ids, max_batch_size=256 * 1024)
    consumer = committed_reader(in_topic, bootstrap=bootstrap, group_id=group_id)
    tally = _Tally(messages)
    await asyncio.gather(*(p.start() for p in producers.values()))
    await consumer.start()

    async def transact(prod: AIOKafkaProducer, batch: dict[TopicPartition, list[Any]]) -> None:
        t0 = time.perf_counter()
        async with prod.transaction():
            futures = [
                await prod.send(out_topic, _transform(r.value), key=r.key, partition=tp.partition)
                for tp, records in batch.items()
                for r in records
            ]
            await prod.send_offsets_to_transaction({tp: rs[-1].offset + 1 for tp, rs in batch.items()}, group_id)
            await asyncio.gather(*futures)
        tally.transacted(t0)

    try:
        while tally.more():
            fetched = await consumer.getmany(timeout_ms=500, max_records=max_records)
            fetched = {tp: rs for tp, rs in fetched.items() if rs}
            if not fetched:
                continue
            tally.fetched()
            if per_partition:
                await asyncio.gather(*(transact(producers[tp.partition], {tp: rs}) for tp, rs in fetched.items()))
            else:
                await transact(producers[0], fetched)
            tally.applied(sum(len(rs) for rs in fetched.values()))
    finally:
        await consumer.stop()
        await asyncio.gather(*(p.stop() for p in producers.values()))
    return tally.figures()


def _pipeline_kafka_python(
    bootstrap: str, in_topic: str, out_topic: str, messages: int, ns: str, max_records: int
) -> dict[str, Any]:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.structs import OffsetAndMetadata

    tally = _Tally(messages)
    consumer = KafkaConsumer(
        in_topic,
        bootstrap_servers=bootstrap,
        group_id=f"{ns}-g",
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
    )
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"{ns}-t",
        enable_idempotence=True,
        acks="all",
        linger_ms=0,
        batch_size=256 * 1024,
    )
    try:
        producer.init_transactions()
        while tally.more():
            fetched = {tp: rs for tp, rs in consumer.poll(timeout_ms=500).items() if rs}
            if not fetched:
                continue
            tally.fetched()
            t0 = time.perf_counter()
            producer.begin_transaction()
            for tp, records in fetched.items():
                for r in records:
                    producer.send(out_topic, _transform(r.value), key=r.key, partition=tp.partition)
            producer.send_offsets_to_transaction(
                {tp: OffsetAndMetadata(rs[-1].offset + 1, "", -1) for tp, rs in fetched.items()},
                consumer.group_metadata(),
            )
            producer.commit_transaction()
            tally.transacted(t0)
            tally.applied(sum(len(rs) for rs in fetched.values()))
    finally:
        consumer.close()
        producer.close()
    return tally.figures()


def _confluent_consumer(bootstrap: str, group_id: str, topic: str) -> Any:  # noqa: ANN401 - untyped client
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
            "socket.nagle.disable": True,
        }
    )
    consumer.subscribe([topic])
    return consumer


def _confluent_producer(bootstrap: str, transactional_id: str) -> Any:  # noqa: ANN401 - untyped client
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "linger.ms": 1,
            "socket.nagle.disable": True,
        }
    )
    producer.init_transactions(30)
    return producer


def _confluent_batch(consumer: Any, max_records: int, timeout: float) -> list[Any]:  # noqa: ANN401
    """Block up to `timeout` for one record, then take whatever else is already fetched."""
    first = consumer.poll(timeout)
    if first is None:
        return []
    rest = consumer.consume(num_messages=max_records - 1, timeout=0) if max_records > 1 else []
    batch = [m for m in [first, *rest] if m.error() is None]
    return batch


def _confluent_offsets(topic: str, batch: list[Any]) -> list[Any]:  # noqa: ANN401
    from confluent_kafka import TopicPartition as CTP

    ends: dict[int, int] = {}
    for m in batch:
        ends[m.partition()] = max(ends.get(m.partition(), -1), m.offset() + 1)
    return [CTP(topic, p, o) for p, o in ends.items()]


def _pipeline_confluent(
    bootstrap: str, in_topic: str, out_topic: str, messages: int, ns: str, max_records: int
) -> dict[str, Any]:
    tally = _Tally(messages)
    consumer = _confluent_consumer(bootstrap, f"{ns}-g", in_topic)
    producer = _confluent_producer(bootstrap, f"{ns}-t")
    try:
        while tally.more():
            batch = _confluent_batch(consumer, max_records, 0.5)
            if not batch:
                continue
            tally.fetched()
            t0 = time.perf_counter()
            producer.begin_transaction()
            for m in batch:
                producer.produce(out_topic, _transform(m.value()), m.key(), partition=m.partition())
            producer.send_offsets_to_transaction(
                _confluent_offsets(in_topic, batch), consumer.consumer_group_metadata()
            )
            producer.commit_transaction()
            tally.transacted(t0)
            tally.applied(len(batch))
    finally:
        consumer.close()
        producer.flush(5)
    return tally.figures()


async def _process(
    variant: str, bootstrap: str, in_topic: str, out_topic: str, messages: int, ns: str, max_records: int
) -> dict[str, Any]:
    if variant == "aiokafka-partition":
        return await _pipeline_aiokafka(bootstrap, in_topic, out_topic, messages, ns, max_records, True)
    if variant == "aiokafka-worker":
        return await _pipeline_aiokafka(bootstrap, in_topic, out_topic, messages, ns, max_records, False)
    if variant == "kafka-python":
        return await asyncio.to_thread(
            _pipeline_kafka_python, bootstrap, in_topic, out_topic, messages, ns, max_records
        )
    if variant == "confluent":
        return await asyncio.to_thread(_pipeline_confluent, bootstrap, in_topic, out_topic, messages, ns, max_records)
    raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")


async def run_pipeline(
    bootstrap: str,
    variant: str,
    messages: int = DEFAULT_MESSAGES,
    *,
    sessions: int = DEFAULT_SESSIONS,
    max_records: int = DEFAULT_MAX_RECORDS,
    broker_pid: int | None = None,
) -> dict[str, Any]:
    """Produce `messages`, then run them through `variant`'s exactly-once loop; check the output."""
    async with scratch_topics(bootstrap, "bench-eos", ("in", "out"), PARTITIONS) as (ns, in_topic, out_topic):
        await _produce(bootstrap, in_topic, messages, sessions)
        with sample_this_process("bench", broker_pid) as sampler:
            proc = await _process(variant, bootstrap, in_topic, out_topic, messages, ns, max_records)
        check = await _verify(bootstrap, out_topic, messages, ns)
    usage = sampler.summary(calls=proc["processed"])
    cpu_ms_per_msg = sum(v.get("cpu_ms_per_call", 0.0) for k, v in usage.items() if k != "machine")
    figures = pipeline_figures(proc, usage, check)
    return {
        "variant": variant,
        "messages": messages,
        "max_records": max_records,
        "msgs_per_s": proc["processed"] / figures["processing_s"],
        "cpu_ms_per_msg": cpu_ms_per_msg,
        **figures,
    }


# --------------------------------------------------------------------------------------------
# request/reply: the W2 ceiling
# --------------------------------------------------------------------------------------------


def _reply_value(correlation: bytes, count: int) -> bytes:
    return correlation + b":%d" % count


async def _serve_aiokafka(
    bootstrap: str, req: str, rep: str, ns: str, per_partition: bool, stop: Any, counters: dict[bytes, int]
) -> int:
    """Per-partition or per-worker group commit: one transaction in flight per producer."""
    group_id = f"{ns}-g"
    ids = list(range(PARTITIONS)) if per_partition else [0]
    producers = transactional_producers(bootstrap, f"{ns}-t", ids)
    consumer = committed_reader(req, bootstrap=bootstrap, group_id=group_id, fetch_max_wait_ms=50)
    await asyncio.gather(*(p.start() for p in producers.values()))
    await consumer.start()
    pending: dict[int, list[Any]] = defaultdict(list)
    wake = {i: asyncio.Event() for i in ids}
    transactions = 0

    async def commit_loop(i: int) -> None:
        nonlocal transactions
        prod = producers[i]
        while True:
            await wake[i].wait()
            wake[i].clear()
            batch, pending[i] = pending[i], []
            if not batch:
                continue
            async with prod.transaction():
                futures = []
                ends: dict[TopicPartition, int] = {}
                for r in batch:
                    counters[r.key] = counters.get(r.key, 0) + 1
                    futures.append(await prod.send(rep, _reply_value(r.value, counters[r.key]), partition=r.partition))
                    tp = TopicPartition(req, r.partition)
                    ends[tp] = max(ends.get(tp, 0), r.offset + 1)
                await prod.send_offsets_to_transaction(ends, group_id)
                await asyncio.gather(*futures)
            transactions += 1

    loops = [asyncio.create_task(commit_loop(i)) for i in ids]
    try:
        while not stop.is_set():
            for tp, records in (await consumer.getmany(timeout_ms=100)).items():
                i = tp.partition if per_partition else 0
                pending[i].extend(records)
                wake[i].set()
            for task in loops:
                if task.done():
                    task.result()
    finally:
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await consumer.stop()
        await asyncio.gather(*(p.stop() for p in producers.values()))
    return transactions


def _serve_confluent(bootstrap: str, req: str, rep: str, ns: str, stop: Any, counters: dict[bytes, int]) -> int:
    consumer = _confluent_consumer(bootstrap, f"{ns}-g", req)
    producer = _confluent_producer(bootstrap, f"{ns}-t")
    transactions = 0
    try:
        while not stop.is_set():
            batch = _confluent_batch(consumer, 5000, 0.1)
            if not batch:
                continue
            producer.begin_transaction()
            for m in batch:
                key = m.key()
                counters[key] = counters.get(key, 0) + 1
                producer.produce(rep, _reply_value(m.value(), counters[key]), partition=m.partition())
            producer.send_offsets_to_transaction(_confluent_offsets(req, batch), consumer.consumer_group_metadata())
            producer.commit_transaction()
            transactions += 1
    finally:
        consumer.close()
    return transactions


def _serve_kafka_python(bootstrap: str, req: str, rep: str, ns: str, stop: Any, counters: dict[bytes, int]) -> int:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(
        req,
        bootstrap_servers=bootstrap,
        group_id=f"{ns}-g",
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
        max_poll_records=5000,
    )
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"{ns}-t", enable_idempotence=True, acks="all", linger_ms=0
    )
    producer.init_transactions()
    transactions = 0
    try:
        while not stop.is_set():
            fetched = {tp: rs for tp, rs in consumer.poll(timeout_ms=100).items() if rs}
            if not fetched:
                continue
            producer.begin_transaction()
            for tp, records in fetched.items():
                for r in records:
                    counters[r.key] = counters.get(r.key, 0) + 1
                    producer.send(rep, _reply_value(r.value, counters[r.key]), partition=tp.partition)
            producer.send_offsets_to_transaction(
                {tp: OffsetAndMetadata(rs[-1].offset + 1, "", -1) for tp, rs in fetched.items()},
                consumer.group_metadata(),
            )
            producer.commit_transaction()
            transactions += 1
    finally:
        consumer.close()
        producer.close()
    return transactions


def serve_main(variant: str, bootstrap: str, req: str, rep: str, ns: str, stop: Any, out: Any) -> None:
    """The request/reply server process: serves until `stop` is set, then puts its figures on `out`."""
    counters: dict[bytes, int] = {}
    if variant in ("aiokafka-partition", "aiokafka-worker"):
        per_partition = variant == "aiokafka-partition"
        transactions = asyncio.run(_serve_aiokafka(bootstrap, req, rep, ns, per_partition, stop, counters))
    elif variant == "confluent":
        transactions = _serve_confluent(bootstrap, req, rep, ns, stop, counters)
    elif variant == "kafka-python":
        transactions = _serve_kafka_python(bootstrap, req, rep, ns, stop, counters)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    out.put({"transactions": transactions, "counters": {k.decode(): v for k, v in counters.items()}})


class _RawClient:
    """W2's caller side on raw Kafka: an idempotent producer of requests, a reader of replies."""

    def __init__(self, bootstrap: str, req: str, rep: str) -> None:
        self.req, self.rep = req, rep
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1)
        self.replies = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            isolation_level="read_committed",
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        self.waiting: dict[bytes, asyncio.Future[int]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._next = 0

    async def start(self) -> None:
        await self.producer.start()
        await self.replies.start()
        tps = [TopicPartition(self.rep, p) for p in range(PARTITIONS)]
        self.replies.assign(tps)
        await self.replies.seek_to_end(*tps)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            for records in (await self.replies.getmany(timeout_ms=100)).values():
                for r in records:
                    correlation, _, count = r.value.rpartition(b":")
                    future = self.waiting.pop(correlation, None)
                    if future is not None and not future.done():
                        future.set_result(int(count))

    async def call(self, key: str) -> int:
        self._next += 1
        correlation = b"c%d" % self._next
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting[correlation] = future
        await (await self.producer.send(self.req, correlation, key=key.encode()))
        return await asyncio.wait_for(future, 60)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.replies.stop()
        await self.producer.stop()


async def run_request_reply(
    bootstrap: str,
    variant: str,
    calls: int = RR_CALLS,
    *,
    concurrency: int = RR_CONCURRENCY,
    broker_pid: int | None = None,
) -> dict[str, Any]:
    """W2 against a raw server of `variant` (its own process): calls/s, CPU per call, the check."""
    from bench.peer_restate.driver import SEED, check_counters, key_sequence
    from bench.peer_restate.driver import WORKLOADS as PEER_WORKLOADS

    async with scratch_topics(bootstrap, "bench-rr", ("req", "rep"), PARTITIONS) as (ns, req, rep):
        spawn = multiprocessing.get_context("spawn")
        stop, out = spawn.Event(), spawn.Queue()
        server = spawn.Process(target=serve_main, args=(variant, bootstrap, req, rep, ns, stop, out), daemon=True)
        client = _RawClient(bootstrap, req, rep)
        workload = PEER_WORKLOADS["W2"]
        try:
            server.start()
            await client.start()
            for i in range(100):  # warm-up, other keys; also waits for the server's group join
                await asyncio.wait_for(client.call(f"warm-{i % 10}"), 120)
            keys = key_sequence(workload, f"rr-{ns}", SEED)[:calls]
            with sample_this_process("load_generator", broker_pid, server=server.pid or 0) as sampler:
                result = await drive(lambda i: client.call(keys[i]), len(keys), concurrency)
            stop.set()
            figures = await asyncio.to_thread(out.get, True, 60)
        finally:
            stop.set()
            await client.stop()
            server.join(30)
            if server.is_alive():
                server.kill()
                server.join(5)
    finals = {k: v for k, v in figures["counters"].items() if not k.startswith("warm-")}
    check = check_counters(keys, result.values, finals)
    usage = sampler.summary(calls=result.ok)
    return {
        "variant": variant,
        **result.to_dict(),
        "transactions": figures["transactions"],
        "calls_per_txn": (result.ok + 100) / max(1, figures["transactions"]),
        "cpu_ms_per_call": sum(v.get("cpu_ms_per_call", 0.0) for k, v in usage.items() if k != "machine"),
        "machine_load": usage.pop("machine", {}),
        "processes": usage,
        "check": check,
        "correct": bool(check.get("ok")) and result.errors == 0,
    }


# --------------------------------------------------------------------------------------------
# both, every variant, one broker
# --------------------------------------------------------------------------------------------


async def run_eos(
    *,
    runs: int = 1,
    scale: float = 1.0,
    variants: tuple[str, ...] = VARIANTS,
    max_records: int = DEFAULT_MAX_RECORDS,
    broker: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the pipeline and request/reply ceilings for each variant on one broker.

    Variants take turns within each run (a, b, c, d, a, b, ...) so that the machine's noise falls
    on all of them alike; the median run per variant is reported.
    """
    from bench._kafka import kafka_bootstrap

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    messages = max(1_000, int(DEFAULT_MESSAGES * scale))
    calls = max(500, int(RR_CALLS * scale))
    out = console()
    found = contextlib.nullcontext(broker) if broker is not None else kafka_bootstrap()
    pipelines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    replies: dict[str, list[dict[str, Any]]] = defaultdict(list)
    async with found as broker:
        bootstrap, pid = broker["bootstrap"], broker.get("pid")
        # Warm the broker's JIT (cold, it costs several times the CPU per request) unmeasured.
        await run_pipeline(bootstrap, "aiokafka-worker", max(5_000, messages // 2), max_records=max_records)
        await run_request_reply(bootstrap, "aiokafka-worker", max(2_000, calls // 2))
        for r in range(runs):
            for variant in variants:
                p = await run_pipeline(bootstrap, variant, messages, max_records=max_records, broker_pid=pid)
                pipelines[variant].append(p)
                out.print(
                    f"eos pipeline {variant} run {r + 1}/{runs}: {p['msgs_per_s']:,.0f} msg/s, "
                    f"{p['cpu_ms_per_msg']:.3f} ms CPU/msg, {p['transactions']} txns "
                    f"({p['mean_records_per_txn']:,.0f} each), check {'ok' if p['correct'] else p['check']}"
                )
            for variant in variants:
                q = await run_request_reply(bootstrap, variant, calls, broker_pid=pid)
                replies[variant].append(q)
                out.print(
                    f"eos request/reply {variant} run {r + 1}/{runs}: {q['calls_per_s']:,.0f} calls/s, "
                    f"p50 {q.get('p50_ms', float('nan')):.1f} ms, {q['cpu_ms_per_call']:.3f} ms CPU/call, "
                    f"{q['calls_per_txn']:.1f} calls/txn, check {'ok' if q['correct'] else q['check']}"
                )

    def section(results: dict[str, list[dict[str, Any]]], key: str, params: dict[str, Any]) -> dict[str, Any]:
        return {
            variant: {
                "params": {**params, "variant": variant, "runs": runs},
                "median": median_run(rs, key=key),
                "runs": rs,
                "correct": all(x["correct"] for x in rs),
            }
            for variant, rs in results.items()
        }

    return {
        "_broker": {k: v for k, v in broker.items() if k != "pid"},
        "pipeline": section(pipelines, "msgs_per_s", {"messages": messages, "max_records": max_records}),
        "request_reply": section(replies, "calls_per_s", {"calls": calls, "concurrency": RR_CONCURRENCY}),
    }


def table(results: dict[str, Any]) -> list[str]:
    """Markdown rows comparing the variants (ratios to today's scheme, aiokafka-partition)."""
    rows = [
        "| client, scheme | pipeline msg/s | CPU ms/msg | records/txn | W2 raw calls/s | CPU ms/call | calls/txn |",
        "|---|---|---|---|---|---|---|",
    ]
    pipe, rr = results.get("pipeline", {}), results.get("request_reply", {})
    base_p = pipe.get("aiokafka-partition", {}).get("median", {}).get("msgs_per_s")
    base_r = rr.get("aiokafka-partition", {}).get("median", {}).get("calls_per_s")

    def ratio(value: float | None, base: float | None) -> str:
        return f" ({value / base:.2f}x)" if value and base else ""

    get: Callable[[dict[str, Any], str, str], Any] = lambda d, v, k: d.get(v, {}).get("median", {}).get(k)  # noqa: E731
    for variant in VARIANTS:
        p, q = get(pipe, variant, "msgs_per_s"), get(rr, variant, "calls_per_s")
        rows.append(
            f"| {variant} | {p or 0:,.0f}{ratio(p, base_p)} | {get(pipe, variant, 'cpu_ms_per_msg') or 0:.3f} "
            f"| {get(pipe, variant, 'mean_records_per_txn') or 0:,.0f} | {q or 0:,.0f}{ratio(q, base_r)} "
            f"| {get(rr, variant, 'cpu_ms_per_call') or 0:.3f} | {get(rr, variant, 'calls_per_txn') or 0:.1f} |"
        )
    return rows
