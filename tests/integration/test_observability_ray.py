"""`tether serve --ray --metrics-port N`: Ray worker i serves its own metrics on N + i."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections.abc import Iterator

import pytest
import ray
from harness.models import Add
from harness.ray_counter import add
from harness.session_harness import assert_eventually
from prometheus_client.parser import text_string_to_metric_families

from actors import Client, RuntimeSettings, Settings
from actors.hosting.ray import RayWorkerPool
from eventstore.settings import KafkaSettings

PARTITIONS = 4
CALLS = 40


def free_ports(count: int) -> int:
    """A port P with P .. P + count - 1 free (probed)."""
    for base in range(19500, 20500, 7):
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("0.0.0.0", port))
            return base
        except OSError:
            continue
    raise AssertionError("no free port range")


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def pool_settings(kafka_bootstrap: str, namespace: str) -> Iterator[tuple[RayWorkerPool, Settings, int]]:
    port = free_ports(2)
    settings = Settings(
        namespace=namespace,
        backend="kafka",
        partitions=PARTITIONS,
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        runtime=RuntimeSettings(metrics_port=port, metrics_interval=0.2),
    )
    pool = RayWorkerPool()
    try:
        pool.start("harness.ray_counter:counter", settings, workers=2, ready_timeout=90)
        yield pool, settings, port
    finally:
        pool.stop()
        if ray.is_initialized():
            ray.shutdown()


@pytest.mark.ray
@pytest.mark.kafka
async def test_each_ray_worker_serves_its_own_metrics(pool_settings: tuple[RayWorkerPool, Settings, int]) -> None:
    _, settings, port = pool_settings
    async with Client.connect(settings) as client:
        await asyncio.gather(*(client.call(add, f"k{n % 8}", Add(n=1), timeout=60) for n in range(CALLS)))
    ok = ("tether_invocations_total", (("handler", "add"), ("object", "ray_counter"), ("outcome", "ok")))
    owned = ("tether_partitions_owned", ())

    def both_report() -> list[dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
        scraped = [scrape(port), scrape(port + 1)]
        assert sum(s.get(ok, 0.0) for s in scraped) == CALLS, [s.get(ok) for s in scraped]
        assert sum(s[owned] for s in scraped) == PARTITIONS and all(s[owned] > 0 for s in scraped)
        return scraped

    await assert_eventually(both_report, timeout=60, interval=0.5)
