"""`Worker.stats` counts the invocations a worker finished and the transactions that carried them.

Calls made one after another cannot share a transaction (each waits for the reply, which is
visible only once its transaction committed), so there are as many transactions as calls;
calls made at once may share. Under both transaction schemes: with ``per_worker`` the count
is the worker producer's (shared by its partitions), not the sum over partitions.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from harness.models import Add
from harness.ray_counter import add, counter
from harness.session_harness import BACKENDS_AND_SCHEMES, backend_and_scheme, settings_for

from actors import Client, Worker

CALLS = 12


@pytest.mark.parametrize("backend", BACKENDS_AND_SCHEMES)
async def test_stats_count_invocations_and_the_transactions_that_carried_them(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, namespace: str
) -> None:
    backend, scheme = backend_and_scheme(backend)
    settings = settings_for(request, backend, tmp_path, namespace, partitions=2)
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"transactions": scheme})})
    async with Worker([counter], settings) as worker, Client.connect(settings) as client:
        for i in range(CALLS):
            await client.call(add, f"k{i}", Add(n=1), timeout=60)
        one_by_one = worker.stats
        assert one_by_one["invocations"] == CALLS
        assert one_by_one["transactions"] == CALLS, one_by_one
        assert one_by_one["partitions"] == 2
        await asyncio.gather(*(client.call(add, f"k{i}", Add(n=1), timeout=60) for i in range(CALLS)))
        at_once = worker.stats
        assert at_once["invocations"] == 2 * CALLS
        assert CALLS < at_once["transactions"] <= 2 * CALLS, at_once
