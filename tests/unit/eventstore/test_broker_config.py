"""The local broker's configuration, ports, PID checks and jar cache, without starting it."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore.errors import TetherError
from eventstore.kafka.localbroker import BrokerSetupError, BrokerStartError, LocalBroker
from eventstore.kafka.localbroker import jars as jars_module
from eventstore.kafka.localbroker import manager as manager_module
from eventstore.kafka.localbroker.config import (
    BrokerPaths,
    BrokerState,
    broker_properties,
    new_cluster_id,
    pick_free_ports,
    port_is_free,
    render_properties,
)
from eventstore.kafka.localbroker.jars import kafka_version, parse_java_version, resolve_jars
from eventstore.kafka.localbroker.process import (
    PidRecord,
    broker_tag,
    find_broker,
    is_broker_cmdline,
    process_create_time,
    read_pid_file,
    write_pid_file,
)


@pytest.fixture
def state() -> BrokerState:
    return BrokerState(cluster_id=new_cluster_id(), port=19092, controller_port=19093, kafka_version="4.3.1")


def test_properties_are_single_node_kraft_on_loopback(tmp_path: Path, state: BrokerState) -> None:
    props = broker_properties(state, BrokerPaths(tmp_path))

    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == props["listeners"]
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["log.dirs"] == str(tmp_path / "kraft-data")
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
        "offsets.topic.num.partitions",
        "transaction.state.log.num.partitions",
        "num.partitions",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert props["log.cleaner.dedupe.buffer.size"] == str(16 * 1024 * 1024)
    assert int(props["log.cleaner.backoff.ms"]) <= 1000
    assert int(props["broker.session.timeout.ms"]) > int(props["broker.heartbeat.interval.ms"])
    assert "0.0.0.0" not in render_properties(props)


def test_overrides_win(tmp_path: Path, state: BrokerState) -> None:
    props = broker_properties(state, BrokerPaths(tmp_path), {"num.partitions": "3", "x.y": "z"})
    assert props["num.partitions"] == "3"
    assert props["x.y"] == "z"


def test_render_properties_is_sorted_and_escapes_backslashes() -> None:
    text = render_properties({"b": "2", "a": "C:\\data"})
    lines = text.splitlines()
    assert lines[0].startswith("#")
    assert lines[1:] == ["a=C:\\\\data", "b=2"]


def test_cluster_id_has_kafkas_format() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert set(cluster_id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_state_round_trips_and_rejects_garbage(tmp_path: Path, state: BrokerState) -> None:
    path = tmp_path / "state.json"
    assert BrokerState.load(path) is None
    state.save(path)
    assert BrokerState.load(path) == state
    assert state.bootstrap == "127.0.0.1:19092"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError):
        BrokerState.load(path)
    path.write_text(json.dumps({"port": 1}), encoding="utf-8")
    with pytest.raises(ValueError):
        BrokerState.load(path)


def test_picked_ports_are_distinct_free_and_not_excluded() -> None:
    first = pick_free_ports(2)
    assert len(set(first)) == 2
    assert all(port_is_free(p) for p in first)
    again = pick_free_ports(3, exclude=first)
    assert not set(again) & set(first)


def test_a_listening_port_is_not_free() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not port_is_free(sock.getsockname()[1])


def test_ports_are_reused_from_the_state_file(tmp_path: Path) -> None:
    paths = BrokerPaths(tmp_path)
    broker = LocalBroker(libs_dir=tmp_path)
    first = broker._state(paths, None)
    assert first.port != first.controller_port
    assert broker._state(paths, None) == first  # the same ports on restart

    (new_port,) = pick_free_ports(1, exclude=[first.port, first.controller_port])
    moved = broker._state(paths, new_port)
    assert (moved.port, moved.controller_port, moved.cluster_id) == (
        new_port,
        first.controller_port,
        first.cluster_id,
    )
    with pytest.raises(BrokerStartError, match="controller port"):
        broker._state(paths, first.controller_port)


def test_a_busy_stored_port_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "_PORT_GRACE", 0.2)
    paths = BrokerPaths(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        (controller,) = pick_free_ports(1, exclude=[busy])
        BrokerState(new_cluster_id(), busy, controller, "4.3.1").save(paths.state_file)
        with pytest.raises(BrokerStartError, match=f"client port {busy} is in use"):
            LocalBroker(libs_dir=tmp_path)._state(paths, None)


def test_bad_heap_is_rejected_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(BrokerStartError, match="heap"):
        LocalBroker(libs_dir=tmp_path).start(tmp_path, heap="lots")


# -- PID file and process verification ---------------------------------------------------


def test_broker_cmdline_recognition(tmp_path: Path) -> None:
    tag = broker_tag(tmp_path)
    ours = ["/usr/bin/java", "-Xmx512m", tag, "-cp", "libs/*", "kafka.Kafka", "server.properties"]
    assert is_broker_cmdline(ours, tmp_path)
    assert not is_broker_cmdline([], tmp_path)
    assert not is_broker_cmdline(["/usr/bin/python3", tag, "kafka.Kafka"], tmp_path)
    assert not is_broker_cmdline(ours[:-2] + ["kafka.tools.StorageTool"], tmp_path)
    other = tmp_path / "other"
    assert not is_broker_cmdline(ours, other)  # a broker, but for another data directory


def test_pid_file_round_trip_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "broker.pid"
    assert read_pid_file(path) is None
    write_pid_file(path, PidRecord(pid=123, create_time=456.5))
    assert read_pid_file(path) == PidRecord(pid=123, create_time=456.5)
    path.write_text("123\n", encoding="utf-8")
    assert read_pid_file(path) is None


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_live_process_that_is_not_our_java_is_never_matched(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    record = PidRecord(pid=sleeper.pid, create_time=process_create_time(sleeper.pid))
    assert find_broker(record, tmp_path) is None  # alive, but a python process


def test_a_reused_pid_is_never_matched(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    record = PidRecord(pid=sleeper.pid, create_time=process_create_time(sleeper.pid) - 3600)
    assert find_broker(record, tmp_path) is None


def test_a_dead_pid_is_never_matched(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert find_broker(PidRecord(pid=proc.pid, create_time=0.0), tmp_path) is None


def test_stop_with_a_stale_pid_file_signals_nothing(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    paths = BrokerPaths(tmp_path)
    write_pid_file(paths.pid_file, PidRecord(pid=sleeper.pid, create_time=process_create_time(sleeper.pid)))
    broker = LocalBroker(libs_dir=tmp_path)
    assert broker.status(tmp_path) is None
    assert broker.stop(tmp_path) is False
    assert sleeper.poll() is None  # still alive: it was not ours to kill
    assert not paths.pid_file.exists()


# -- Java and the jar cache --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_402"', 8),
        ('openjdk version "21" 2023-09-19', 21),
    ],
)
def test_parse_java_version(text: str, major: int) -> None:
    assert parse_java_version(text) == major


def test_kafka_version_comes_from_the_pom() -> None:
    assert kafka_version().count(".") == 2


def _fake_cache(root: Path) -> Path:
    """A cache that looks resolved, so that resolve_jars must not run Maven."""
    home = root / f"kafka-{kafka_version()}"
    (home / "libs").mkdir(parents=True)
    (home / "libs" / "a.jar").write_bytes(b"")
    pom = jars_module._pom_bytes()
    marker = {"pom_sha256": hashlib.sha256(pom).hexdigest(), "jars": ["a.jar"]}
    (home / "complete.json").write_text(json.dumps(marker), encoding="utf-8")
    return home / "libs"


def test_a_complete_cache_skips_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    libs = _fake_cache(tmp_path)
    monkeypatch.setenv("PATH", "")  # Maven could not even be found
    assert resolve_jars(tmp_path) == libs
    monkeypatch.setenv("TETHER_KAFKA_CACHE", str(tmp_path))
    assert resolve_jars() == libs


def test_an_incomplete_cache_needs_maven_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    libs = _fake_cache(tmp_path)
    (libs / "a.jar").unlink()  # a jar went missing
    monkeypatch.setenv("PATH", "")
    with pytest.raises(BrokerSetupError, match="Maven") as info:
        resolve_jars(tmp_path)
    assert isinstance(info.value, TetherError)
    assert "install" in str(info.value).lower()


def test_maven_failure_carries_its_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mvn = bin_dir / "mvn"
    mvn.write_text("#!/bin/sh\necho '[ERROR] Could not resolve dependencies'\nexit 1\n")
    mvn.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(BrokerSetupError, match="exit code 1") as info:
        resolve_jars(tmp_path / "cache")
    assert "Could not resolve dependencies" in str(info.value)
    assert not (tmp_path / "cache" / f"kafka-{kafka_version()}" / "complete.json").exists()


def test_libs_env_bypasses_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_KAFKA_LIBS", str(tmp_path))
    with pytest.raises(BrokerSetupError, match="kafka_2.13"):
        resolve_jars()
    (tmp_path / "kafka_2.13-4.3.1.jar").write_bytes(b"")
    assert resolve_jars() == tmp_path
