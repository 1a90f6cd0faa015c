"""The session runtime on the embedded log: passivation, rehydration and restarts.

The shared scenarios run on both backends in tests/integration/test_session_scenarios.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.probe_sessions import PROBE, Item, append, probe
from harness.session_harness import WAIT, make_settings, open_runtime, read_invocations

from actors import RuntimeSettings  # noqa: E402
from actors.runtime.sessions import Session  # noqa: E402


async def test_passivation_and_rehydration(tmp_path: Path, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With 2 resident sessions per partition, idle sessions drop their state and come back."""
    PROBE.reset()
    passivated: list[bytes] = []
    original = Session.passivate

    def spy(self: Session, snapshot: dict[str, object]) -> None:
        passivated.append(self.key)
        original(self, snapshot)

    monkeypatch.setattr(Session, "passivate", spy)
    settings = make_settings(
        "embedded",
        tmp_path,
        namespace,
        partitions=1,
        runtime=RuntimeSettings(max_resident_sessions=2, checkpoint_every=3),
    )
    keys = [f"p{i}" for i in range(12)]
    async with open_runtime([probe], settings) as rt:
        for round_ in range(3):
            for key in keys:
                reply = await rt.client.call(append, key, Item(value=f"{key}-{round_}"), timeout=WAIT)
                assert reply.values == [f"{key}-{r}" for r in range(round_ + 1)]
        (processor,) = (await rt.processors()).values()
        resident = [s.key for s in processor.sessions.values() if s.loaded]
        assert len(set(passivated)) >= len(keys) - 3, passivated
        assert len(resident) <= 4, resident  # 2 plus sessions changed since the last checkpoint
        # A shared read rehydrates from the snapshot; an exclusive call continues from it.
        for key in keys:
            assert (await rt.state("probe", key))["values"] == [f"{key}-{r}" for r in range(3)]
        for key in keys:
            reply = await rt.client.call(append, key, Item(value=f"{key}-3"), timeout=WAIT)
            assert reply.values == [f"{key}-{r}" for r in range(4)]
        before = {key: await rt.client.state("probe", key, timeout=WAIT) for key in keys}
        await rt.restart_worker()
        after = {key: await rt.client.state("probe", key, timeout=WAIT) for key in keys}
        assert after == before
        assert all(v["version"] == 4 for v in after.values())


async def test_restart_keeps_states(tmp_path: Path, namespace: str) -> None:
    """A new worker on the same data dir serves the same states (snapshots + event tail)."""
    PROBE.reset()
    settings = make_settings("embedded", tmp_path, namespace, partitions=2, runtime=RuntimeSettings(checkpoint_every=7))
    keys = [f"r{i}" for i in range(6)]
    async with open_runtime([probe], settings) as rt:
        for i in range(5):
            for key in keys:
                await rt.client.send(append, key, Item(value=f"{key}-{i}"))
        for key in keys:
            await rt.client.call(append, key, Item(value=f"{key}-end"), timeout=WAIT)
        before = {key: await rt.client.state("probe", key, timeout=WAIT) for key in keys}
        await rt.stop_worker()
        # Fresh Python objects: nothing survives but the log file.
        await rt.start_worker()
        processors = await rt.processors()
        assert any(s.snapshot is not None for p in processors.values() for s in p.sessions.values())
        after = {key: await rt.client.state("probe", key, timeout=WAIT) for key in keys}
        assert after == before
        expected = {key: [f"{key}-{i}" for i in range(5)] + [f"{key}-end"] for key in keys}
        assert {key: v["state"]["values"] for key, v in after.items()} == expected
        # The raw log agrees: one done entry per message, version = number of done entries.
        invocations = await read_invocations(rt.log, rt.topics)
        assert not invocations.duplicate_done
        for key in keys:
            assert len(invocations.done_by_session[f"probe/{key}"]) == after[key]["version"] == 6
        # And the new worker goes on from there.
        reply = await rt.client.call(append, keys[0], Item(value="more"), timeout=WAIT)
        assert reply.values == [*expected[keys[0]], "more"]


async def test_checkpoint_after_restore_keeps_sessions_that_were_not_touched(tmp_path: Path, namespace: str) -> None:
    """A session restored as snapshot + events, then left alone while a checkpoint moves the
    restore start past those events, must not lose them on the next restore."""
    PROBE.reset()
    settings = make_settings("embedded", tmp_path, namespace, partitions=1, runtime=RuntimeSettings(checkpoint_every=2))
    async with open_runtime([probe], settings) as rt:
        # Worker 1: a checkpoint after a-2 snapshots `a`; a-3 comes after it.
        for i in (1, 2, 3):
            await rt.client.call(append, "a", Item(value=f"a-{i}"), timeout=WAIT)
        # Worker 2 restores `a` as snapshot + one event and never loads it; b's two messages
        # make a checkpoint.
        await rt.restart_worker()
        for i in (1, 2):
            await rt.client.call(append, "b", Item(value=f"b-{i}"), timeout=WAIT)
        await rt.restart_worker()
        assert (await rt.state("probe", "a"))["values"] == ["a-1", "a-2", "a-3"]
        assert (await rt.client.state("probe", "a", timeout=WAIT))["version"] == 3
        # A shared read loads the session without changing it: the same must hold after it.
        for i in (3, 4):
            await rt.client.call(append, "b", Item(value=f"b-{i}"), timeout=WAIT)
        await rt.restart_worker()
        assert (await rt.state("probe", "a"))["values"] == ["a-1", "a-2", "a-3"]
        assert (await rt.state("probe", "b"))["values"] == ["b-1", "b-2", "b-3", "b-4"]
