"""`tether sessions show|history` only read: a typo creates no topic, no inbox record and no
dead letter. The state shown is the snapshot's plus the events after it (folded with --app)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from harness.cli import invoke as tether
from harness.probe_sessions import Item, append, probe
from harness.session_harness import make_settings, open_runtime

from actors import RuntimeSettings, Settings  # noqa: E402
from eventstore import TopicError, Topics, open_log  # noqa: E402

HOSTILE = "d \x1b[2J\u202e [red]x[/red]"
VALUES = ["a", "b", "c", HOSTILE]


@pytest.fixture
def settings(tmp_path: Path, namespace: str) -> Settings:
    settings = make_settings("embedded", tmp_path, namespace, partitions=1, runtime=RuntimeSettings(checkpoint_every=2))

    async def run() -> None:
        async with open_runtime([probe], settings) as rt:
            for value in VALUES:
                await rt.client.call(append, "k1", Item(value=value), timeout=30)

    asyncio.run(run())  # no worker runs from here on
    return settings


async def end_offsets(settings: Settings, namespace: str | None = None) -> dict[str, list[int]]:
    topics = Topics(namespace or settings.namespace)
    log = open_log(settings)
    await log.start()
    try:
        out: dict[str, list[int]] = {}
        for spec in topics.specs(settings.partitions):
            try:
                count = await log.partition_count(spec.name)
            except TopicError:
                continue
            out[spec.name] = [await log.end_offset(spec.name, p) for p in range(count)]
        return out
    finally:
        await log.close()


@pytest.mark.usefixtures("keep_logging")
def test_an_unknown_session_is_reported_and_nothing_is_written(settings: Settings) -> None:
    before = asyncio.run(end_offsets(settings))
    for command in ("show", "history", "export"):
        result = tether(settings, "sessions", command, "countr", "k1")
        if command in ("show", "export"):
            assert result.exit_code == 2, result.output
            assert "no session countr/k1" in result.output and "probe" in result.output
    assert asyncio.run(end_offsets(settings)) == before, "a read-only command wrote to the log"


@pytest.mark.usefixtures("keep_logging")
def test_a_missing_namespace_or_data_dir_is_reported_and_not_created(settings: Settings, tmp_path: Path) -> None:
    for args in (
        ("sessions", "show", "probe", "k1"),
        ("sessions", "history", "probe", "k1"),
        ("sessions", "export", "probe", "k1"),
        ("saga", "list"),
    ):
        result = tether(settings, *args, namespace="typo")
        assert result.exit_code == 2, result.output
        assert "namespace 'typo' has no" in result.output
        assert asyncio.run(end_offsets(settings, "typo")) == {}, "topics were created"
        nowhere = tmp_path / "nowhere"
        result = tether(settings, *args, data_dir=nowhere)
        assert result.exit_code == 2 and not nowhere.exists(), result.output
    result = tether(settings, "dlq", "list", data_dir=tmp_path / "nowhere")
    assert result.exit_code == 2 and not (tmp_path / "nowhere").exists(), result.output


@pytest.mark.usefixtures("keep_logging")
def test_show_gives_the_snapshot_and_the_events_after_it(settings: Settings) -> None:
    result = tether(settings, "sessions", "show", "probe", "k1", "--json")
    assert result.exit_code == 0, result.output
    view = json.loads(result.output)
    assert view["version"] == 4 and not view["folded"]
    assert view["snapshot_version"] is not None, "checkpoint_every=2 made a snapshot"
    later = [e["data"]["value"] for item in view["events_since_snapshot"] for e in item["events"]]
    assert view["state"]["values"] + later == VALUES

    folded = tether(settings, "sessions", "show", "probe", "k1", "--json", "--app", "harness.probe_sessions:probe")
    assert folded.exit_code == 0, folded.output
    assert json.loads(folded.output)["state"] == {"values": VALUES}

    for args in (
        ("show", "probe", "k1"),
        ("show", "probe", "k1", "--app", "harness.probe_sessions:probe"),
        ("history", "probe", "k1"),
    ):
        human = tether(settings, "sessions", *args)
        assert human.exit_code == 0, human.output
        assert "\x1b" not in human.output and "\u202e" not in human.output
        assert "[red]x[/red]" in human.output, "markup in a record is printed as it is"
