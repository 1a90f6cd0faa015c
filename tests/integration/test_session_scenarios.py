"""The shared session scenarios (`harness.session_scenarios.SCENARIOS`), each on both backends.

Ordering per key, keys in parallel, journaled steps after retries and restarts, journal
mismatches, typed errors, idempotency, sends and calls between sessions, deterministic context,
retry-after, dead letters and poison records: the embedded log and the real broker must agree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from harness.probe_sessions import PROBE, probe
from harness.session_harness import Runtime, open_runtime, settings_for
from harness.session_scenarios import SCENARIOS


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path, namespace: str) -> AsyncIterator[Runtime]:
    """The probe sessions served by an in-process worker on each backend."""
    PROBE.reset()
    async with open_runtime([probe], settings_for(request, request.param, tmp_path, namespace, partitions=2)) as rt:
        yield rt


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.__name__)
async def test_scenario(runtime: Runtime, scenario: Callable[[Runtime], Awaitable[None]]) -> None:
    await scenario(runtime)
