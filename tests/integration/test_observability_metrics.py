"""`tether serve --metrics-port`: a worker under load is scraped and its counters match the workload.

A `tether serve` subprocess (embedded log and real broker) serves the observed sessions with
metrics on. The test makes N calls, M poison records, K calls whose step fails once, one call
that fails for good, and calls whose sessions write to the inbox in transactions, then scrapes
``/metrics`` until the consumer lag is 0: every counter must equal what was sent, exactly, and
no label may carry a session key.
"""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from pathlib import Path

import pytest
from harness import observed_sessions as obs
from harness.session_harness import WorkerProcess, assert_eventually, settings_for, worker_env
from prometheus_client.parser import text_string_to_metric_families

from actors import Client, InvocationError
from actors.messages import session_key
from eventstore import OutRecord, Topics, open_log, partition_for

BOTH = pytest.mark.parametrize("backend", ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
CALLS = 120
KEYS = 12
POISON = 5
FLAKY = 3
HOPS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@BOTH
async def test_a_scraped_worker_counts_the_workload_exactly(
    request: pytest.FixtureRequest, backend: str, namespace: str, tmp_path: Path
) -> None:
    settings = settings_for(request, backend, tmp_path / "data", namespace, partitions=4)
    port = free_port()
    env = worker_env(settings, TETHER_RUNTIME__METRICS_INTERVAL="0.2")
    worker = WorkerProcess("harness.observed_sessions:objects", env, tmp_path, args=["--metrics-port", str(port)])
    worker.start()
    log = open_log(settings)
    try:
        await log.start()
        async with Client.connect(settings) as client:
            keys = [f"sess-{n}" for n in range(KEYS)]
            gate = asyncio.Semaphore(32)

            async def one(n: int) -> None:
                async with gate:
                    await client.call(obs.add, keys[n % KEYS], obs.Add(n=1), timeout=60)

            await asyncio.gather(*(one(n) for n in range(CALLS)))
            for n in range(FLAKY):
                assert (await client.call(obs.once, f"flaky-{n}", obs.Note(), timeout=60)).text == "ok"
            with pytest.raises(InvocationError):
                await client.call(obs.fail, "leaky-1", obs.Note(), timeout=60)
            # Inbox writes in transactions: each hop calls another session and starts a saga,
            # whose records are each followed by a commit marker. A lag computed from the
            # committed offset alone stays at one per such write on a partition at rest.
            for n in range(HOPS):
                assert (await client.call(obs.hop, f"hop-{n}", obs.Note(text=f"c{n}"), timeout=60)).text == f"pong c{n}"
            topics = Topics(settings.namespace)
            count = await log.partition_count(topics.inbox)
            poison = []
            for n in range(POISON):
                key = session_key("counter", f"poison-{n}")
                poison.append(OutRecord(topics.inbox, partition_for(key, count), key, b"\xc1junk"))
            await log.append(poison)

            def settled() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
                samples = scrape(port)
                assert value(samples, "tether_dead_letters_total", category="poison") == POISON, samples
                lags = {k: v for k, v in samples.items() if k[0] == "tether_consumer_lag_records"}
                assert len(lags) == 4 and sum(lags.values()) == 0, lags
                return samples

            samples = await assert_eventually(settled, timeout=60, interval=0.3)
        inv = "tether_invocations_total"
        assert value(samples, inv, object="counter", handler="add", outcome="ok") == CALLS
        assert value(samples, inv, object="flaky", handler="once", outcome="ok") == FLAKY
        assert value(samples, inv, object="leaky", handler="fail", outcome="dead_lettered") == 1
        assert value(samples, "tether_dead_letters_total", category="terminal") == 1
        assert value(samples, "tether_step_retries_total", object="flaky", step="llm:flaky") == FLAKY
        step_count = "tether_step_duration_seconds_count"
        assert value(samples, step_count, object="counter", step="add", outcome="ok") == CALLS
        assert value(samples, "tether_invocation_duration_seconds_count", object="counter", handler="add") == CALLS
        assert value(samples, "tether_cost_units_total", object="counter") == CALLS * 0.5
        assert value(samples, "tether_partitions_owned") == 4
        assert value(samples, "tether_sessions_resident") >= KEYS
        assert value(samples, "tether_transactions_total") > 0
        assert value(samples, "tether_transaction_records_count") == value(samples, "tether_transactions_total")
        assert value(samples, "tether_restore_duration_seconds_count") == 4
        # Bounded labels: no sample names a session key.
        labels = {v for (_, pairs) in samples for _, v in pairs}
        assert not [
            v for v in labels if v.startswith(("sess-", "flaky-", "leaky-", "poison-", "hop-", "b-hop", "trip-"))
        ]
    finally:
        await log.close()
        worker.stop()
