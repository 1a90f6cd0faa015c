"""Files, ports and `server.properties` of a single-node KRaft broker on the loopback interface."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
"""Every listener binds here: the local broker is never reachable from another machine."""

NODE_ID = 1
"""The one node, broker and controller at once."""


@dataclass(frozen=True)
class BrokerPaths:
    """Where one broker keeps its files, all under its data directory."""

    data_dir: Path
    """The root; everything below belongs to the broker."""

    @property
    def state_file(self) -> Path:
        """Cluster id and ports, kept so that a restart looks like the same broker."""
        return self.data_dir / "tether-broker.json"

    @property
    def pid_file(self) -> Path:
        """Process id and start time of the running broker."""
        return self.data_dir / "broker.pid"

    @property
    def lock_file(self) -> Path:
        """Serialises start and stop of this data directory across processes."""
        return self.data_dir / ".broker.lock"

    @property
    def properties_file(self) -> Path:
        """The generated `server.properties`."""
        return self.data_dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        """The log4j2 configuration the broker was started with."""
        return self.data_dir / "log4j2.yaml"

    @property
    def log_file(self) -> Path:
        """The broker's stdout and stderr."""
        return self.data_dir / "broker.log"

    @property
    def logs_dir(self) -> Path:
        """`kafka.logs.dir`: log4j's rolling files."""
        return self.data_dir / "logs"

    @property
    def kafka_data_dir(self) -> Path:
        """`log.dirs`: the topic partitions and the KRaft metadata log."""
        return self.data_dir / "kraft-data"

    @property
    def meta_properties(self) -> Path:
        """Written by the storage format; its presence means the storage is formatted."""
        return self.kafka_data_dir / "meta.properties"


class LoopbackAddresses:
    """The client addresses of a broker that listens on 127.0.0.1 (for a class with these ports)."""

    port: int
    sasl_ssl_port: int | None

    @property
    def bootstrap(self) -> str:
        """The bootstrap address clients connect to, `127.0.0.1:PORT`."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def sasl_ssl_bootstrap(self) -> str | None:
        """The SASL_SSL bootstrap address, `127.0.0.1:PORT`, when there is that listener."""
        return None if self.sasl_ssl_port is None else f"{LOOPBACK}:{self.sasl_ssl_port}"


@dataclass(frozen=True)
class BrokerState(LoopbackAddresses):
    """What must stay the same across restarts of one data directory."""

    cluster_id: str
    """The KRaft cluster id the storage was formatted with."""
    port: int
    """The client (PLAINTEXT) port; clients keep their bootstrap address across restarts."""
    controller_port: int
    """The controller port; it is part of the voter set written when formatting."""
    kafka_version: str
    """The Kafka version that formatted the storage."""
    sasl_ssl_port: int | None = None
    """The SASL_SSL client port, when the data directory has that listener (chosen at format
    time, with its SCRAM user: a directory formatted without it never gains it)."""

    @classmethod
    def load(cls, path: Path) -> BrokerState | None:
        """Read the state file; None when there is none.

        Raises:
            ValueError: The file exists but is not a state file.
        """
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        try:
            return cls(
                cluster_id=str(raw["cluster_id"]),
                port=int(raw["port"]),
                controller_port=int(raw["controller_port"]),
                kafka_version=str(raw["kafka_version"]),
                sasl_ssl_port=None if raw.get("sasl_ssl_port") is None else int(raw["sasl_ssl_port"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} is not a Tether broker state file: {exc!r}") from exc

    def save(self, path: Path) -> None:
        """Write the state file atomically."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def new_cluster_id() -> str:
    """Return a random cluster id in Kafka's format (22 characters of URL-safe base64)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        # Kafka's own generator avoids a leading '-' so the id never looks like a CLI flag.
        if not text.startswith("-"):
            return text


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a listener could bind `host:port` (by default `127.0.0.1:port`) now.

    SO_REUSEADDR is set as the JVM sets it, so connections of a stopped broker lingering in
    TIME_WAIT do not count as a busy port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_free_ports(count: int, *, exclude: Iterable[int] = ()) -> list[int]:
    """Return `count` distinct ports that are free on the loopback interface now.

    The kernel hands them out; another process can still take one before the broker binds it,
    which the broker reports as "Address already in use".
    """
    excluded = set(exclude)
    ports: list[int] = []
    with contextlib.ExitStack() as stack:
        while len(ports) < count:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))  # held open until all are chosen, so none repeats
            port = int(sock.getsockname()[1])
            if port not in excluded:
                ports.append(port)
    return ports


def broker_properties(
    state: BrokerState,
    paths: BrokerPaths,
    overrides: Mapping[str, str] | None = None,
    *,
    sasl_ssl: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Return the `server.properties` of a single-node combined-mode KRaft broker.

    Args:
        state: Cluster id and ports of this data directory.
        paths: Where the broker's files live.
        overrides: Extra or replacement properties, applied last.
        sasl_ssl: The SASL_SSL listener's own properties (certificates, SASL mechanisms), when
            `state` has a SASL_SSL port.
    """
    client = f"{LOOPBACK}:{state.port}"
    controller = f"{LOOPBACK}:{state.controller_port}"
    listeners = f"PLAINTEXT://{client},CONTROLLER://{controller}"
    protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if state.sasl_ssl_port is not None:
        # Clients may use either listener; the broker and controller talk PLAINTEXT on loopback.
        listeners += f",SASL_SSL://{LOOPBACK}:{state.sasl_ssl_port}"
        protocols += ",SASL_SSL:SASL_SSL"
    props = {
        # One JVM is broker and controller, reachable on the loopback interface only.
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.bootstrap.servers": controller,
        "listeners": listeners,
        "advertised.listeners": listeners,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": protocols,
        "log.dirs": str(paths.kafka_data_dir),
        # On one node every internal topic must make do with one replica.
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Fast group joins and few internal partitions keep tests quick.
        "group.initial.rebalance.delay.ms": "0",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.num.partitions": "1",
        # Topics are created on purpose, with the partition count the caller chose.
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        # The 128 MiB default dedupe buffer is allocated at start-up; it would take a quarter
        # of a 512 MiB heap. A short back-off lets tests watch compaction happen.
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        "log.cleaner.threads": "1",
        "log.cleaner.backoff.ms": "250",
        # After SIGKILL the controller keeps the dead broker's registration until its session
        # times out (default 9 s), refusing the restarted broker with
        # DUPLICATE_BROKER_REGISTRATION meanwhile; a short session makes restarts quick.
        "broker.heartbeat.interval.ms": "500",
        "broker.session.timeout.ms": "3000",
        # aiokafka predates KIP-890: the broker's check that a partition joined the producer's
        # transaction answers its first produce with a retriable NOT_ENOUGH_REPLICAS, and the
        # client backs off 100 ms each time. The check guards against hanging transactions of
        # old clients; the per-partition transactional ids of Tether's processors already fence.
        "transaction.partition.verification.enable": "false",
        # Fewer threads than the defaults suit a laptop or a 2-core CI runner.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "background.threads": "4",
    }
    if state.sasl_ssl_port is not None:
        props.update(sasl_ssl or {})
    if overrides:
        props.update(overrides)
    return props


def render_properties(props: Mapping[str, str]) -> str:
    """Render properties in the Java `.properties` format, one per line, sorted."""
    lines = ["# Generated by Tether on every start; edits are overwritten."]
    for key in sorted(props):
        value = props[key].replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"
