"""Restore on both backends: a restarted worker's sessions equal the fold of their events.

The shared scenarios run on both backends in test_session_scenarios.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.ledger_chaos import fold
from harness.ledger_sessions import Op, apply, ledger, relay
from harness.session_harness import (
    WAIT,
    open_runtime,
    read_invocations,
    settings_for,
)

from actors import RuntimeSettings  # noqa: E402

BOTH = pytest.mark.parametrize("backend", ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
kafka = pytest.mark.kafka


@BOTH
async def test_restore_from_checkpoints_equals_fold(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, namespace: str
) -> None:
    """A restarted worker restores from checkpoints + the events after them; every state equals
    the fold of the raw events topic, and nothing is applied twice."""
    settings = settings_for(
        request,
        backend,
        tmp_path,
        namespace,
        partitions=3,
        runtime=RuntimeSettings(checkpoint_every=4, max_resident_sessions=3),
    )
    keys = [f"c{i}" for i in range(8)]
    expected: dict[str, list[str]] = {key: [] for key in keys}
    async with open_runtime([ledger], settings) as rt:
        for i in range(6):
            for n, key in enumerate(keys):
                if (i + n) % 4 == 0:
                    target = keys[(n + 1) % len(keys)]
                    await rt.client.send(relay, key, Op(tag=f"{key}-{i}", target=target))
                    expected[target].append(f"{key}-{i}@{key}")
                else:
                    await rt.client.send(apply, key, Op(tag=f"{key}-{i}"))
                    expected[key].append(f"{key}-{i}")
        # A relayed apply is in the inbox once its relay committed: after a first round of
        # calls every relay has run, and a second round queues behind every relayed apply.
        for _ in range(2):
            for key in keys:
                await rt.client.call(apply, key, Op(tag="barrier"), timeout=WAIT)
        before = {key: await rt.client.state("ledger", key, timeout=WAIT) for key in keys}
        await rt.stop_worker()
        await rt.start_worker()
        processors = await rt.processors()
        snapshotted = [s.key for p in processors.values() for s in p.sessions.values() if s.snapshot is not None]
        assert snapshotted, "the restore used no snapshot"
        after = {key: await rt.client.state("ledger", key, timeout=WAIT) for key in keys}
        assert after == before

        invocations = await read_invocations(rt.log, rt.topics)
        assert invocations.duplicate_done == []
        assert invocations.duplicate_steps == []
        for key in keys:
            done = invocations.done_by_session[f"ledger/{key}"]
            assert fold(done) == after[key]["state"]
            assert after[key]["version"] == len(done)
        # Each key applied its own messages in send order, and every relayed one exactly once.
        for key in keys:
            tags = after[key]["state"]["tags"]
            assert tags[-1] == "barrier"
            assert [t for t in tags if "@" not in t and t != "barrier"] == [t for t in expected[key] if "@" not in t]
            assert sorted(tags) == sorted([*expected[key], "barrier", "barrier"])
