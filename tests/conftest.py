"""Fixtures for every test: the real Kafka broker, and a unique namespace per test.

`kafka_bootstrap` is the broker's bootstrap address, from the first that applies:
- `TETHER_TEST_KAFKA=host:port`: an external broker that is already running;
- `TETHER_TEST_KAFKA=testcontainers`: a Kafka container (needs a Docker engine);
- otherwise a local KRaft broker (a JVM, see `eventstore.kafka.localbroker`) in a temporary
  directory, started once per session and stopped by PID at the end.

`sasl_ssl_kafka` is a second local broker with a SASL_SSL listener (SCRAM users created at
format time, a CA and broker certificate made for the session), started only by the tests
that ask for it.

When no broker can be had the Kafka tests skip, unless `CI` is true or
`TETHER_REQUIRE_KAFKA=1`, which turn the skip into a failure. A broker that misbehaves is
never a reason to skip. A failed test that used the local broker gets the broker log's tail
in its report.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest
from harness.session_harness import Runtime, open_runtime, settings_for

from eventstore import KafkaSettings
from eventstore.kafka.localbroker import (
    BrokerError,
    BrokerInfo,
    LocalBroker,
    SaslSslCredentials,
    log_tail,
    resolve_jars,
)
from eventstore.kafka.localbroker.jars import find_java

KAFKA_ENV = "TETHER_TEST_KAFKA"
REQUIRE_ENV = "TETHER_REQUIRE_KAFKA"
IMAGE_ENV = "TETHER_TEST_KAFKA_IMAGE"
_TRUTHY = {"1", "true", "yes", "on"}
_KAFKA_FIXTURES = {"kafka_bootstrap", "local_broker", "sasl_ssl_kafka"}


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUTHY


def kafka_required() -> bool:
    """Whether a missing broker fails the run (CI, or TETHER_REQUIRE_KAFKA=1)."""
    return _truthy("CI") or _truthy(REQUIRE_ENV)


def kafka_unavailable(reason: str) -> NoReturn:
    """Skip the test for want of a broker, or fail it when a broker is required."""
    if kafka_required():
        pytest.fail(f"Kafka is required here (CI or {REQUIRE_ENV}=1) but {reason}", pytrace=False)
    pytest.skip(f"no Kafka broker: {reason}")


@dataclass
class LocalKafka:
    """The session's local broker, for tests that stop and restart it (always on one port)."""

    broker: LocalBroker
    data_dir: Path
    info: BrokerInfo
    restarts: int = field(default=0)

    @property
    def bootstrap(self) -> str:
        """The bootstrap address; the same after every restart."""
        return self.info.bootstrap

    def stop(self, *, kill: bool = False) -> None:
        """Stop the broker: SIGTERM (clean shutdown), or SIGKILL with `kill=True`."""
        self.broker.stop(self.data_dir, kill=kill)

    def start(self) -> BrokerInfo:
        """Start the broker again on the same data directory; it keeps its port."""
        info = self.broker.start(self.data_dir)
        assert info.port == self.info.port, "a restarted broker must keep its port"
        self.info = info
        self.restarts += 1
        return info

    def restart(self, *, kill: bool = False) -> BrokerInfo:
        """Stop (SIGTERM, or SIGKILL with `kill=True`) and start again."""
        self.stop(kill=kill)
        return self.start()

    def is_running(self) -> bool:
        """Whether the broker process is alive."""
        return self.broker.status(self.data_dir) is not None

    def log_tail(self, lines: int = 80) -> str:
        """The last lines of the broker's output."""
        return log_tail(self.data_dir, lines)


_LOCAL_KAFKA = pytest.StashKey[LocalKafka]()
_SASL_SSL_KAFKA = pytest.StashKey[LocalKafka]()


@contextlib.contextmanager
def _watched(data_dir: Path) -> Iterator[None]:
    """Run `_WATCHDOG` for the broker of `data_dir` while the block runs."""
    watchdog = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(data_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield
    finally:
        watchdog.kill()
        watchdog.wait()


@pytest.fixture(scope="session")
def _local_kafka(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    broker = LocalBroker()
    data_dir = tmp_path_factory.mktemp("kafka")
    try:
        info = broker.start(data_dir)
    except BrokerError as exc:
        kafka_unavailable(f"the local broker could not start: {exc}")
    local = LocalKafka(broker=broker, data_dir=data_dir, info=info)
    request.config.stash[_LOCAL_KAFKA] = local
    with _watched(data_dir):
        try:
            yield local
        finally:
            broker.stop(data_dir)


@dataclass
class SecuredKafka:
    """The session's SASL_SSL broker: where it listens and the credentials that get in."""

    local: LocalKafka
    bootstrap: str
    credentials: SaslSslCredentials

    def settings(self, **overrides: object) -> KafkaSettings:
        """Kafka settings that connect over SASL_SSL with SCRAM-SHA-512, with `overrides`."""
        values: dict[str, object] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": self.credentials.username,
            "sasl_password": self.credentials.password,
            "ssl_cafile": self.credentials.ca_file,
        }
        values.update(overrides)
        return KafkaSettings.model_validate(values)


@pytest.fixture(scope="session")
def sasl_ssl_kafka(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafka]:
    """A local broker of its own with a SASL_SSL listener (and its PLAINTEXT one, on loopback)."""
    if os.environ.get(KAFKA_ENV, "").strip():
        pytest.skip(f"the SASL_SSL broker is the suite's own local broker; {KAFKA_ENV} is set")
    broker = LocalBroker()
    data_dir = tmp_path_factory.mktemp("kafka-sasl-ssl")
    try:
        info = broker.start(data_dir, sasl_ssl=True)
    except BrokerError as exc:
        kafka_unavailable(f"the local SASL_SSL broker could not start: {exc}")
    assert info.sasl_ssl is not None and info.sasl_ssl_bootstrap is not None
    local = LocalKafka(broker=broker, data_dir=data_dir, info=info)
    request.config.stash[_SASL_SSL_KAFKA] = local
    with _watched(data_dir):
        try:
            yield SecuredKafka(local=local, bootstrap=info.sasl_ssl_bootstrap, credentials=info.sasl_ssl)
        finally:
            broker.stop(data_dir)


# Stops the session's broker if pytest itself is killed (SIGKILL, OOM) before its finalizers
# run, so that no orphaned 512 MiB JVM outlives the run.
_WATCHDOG = """
import sys, time
from pathlib import Path
import psutil
owner, data_dir = int(sys.argv[1]), Path(sys.argv[2])
while True:
    try:
        if psutil.Process(owner).status() == psutil.STATUS_ZOMBIE:
            break
    except psutil.NoSuchProcess:
        break
    time.sleep(2)
from eventstore.kafka.localbroker import LocalBroker
LocalBroker().stop(data_dir, kill=True)
"""


@pytest.fixture(scope="session")
def kafka_libs() -> Path:
    """The Kafka broker jars, for tests that start brokers of their own (e.g. via the CLI)."""
    try:
        find_java()
        return resolve_jars()
    except BrokerError as exc:
        kafka_unavailable(f"the local broker cannot be set up: {exc}")


@pytest.fixture(scope="session")
def _kafka_container() -> Iterator[str]:
    try:
        import docker  # type: ignore[import-untyped]  # no stubs; used only here

        client = docker.from_env()
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # docker.errors.DockerException, or no docker package
        kafka_unavailable(f"{KAFKA_ENV}=testcontainers but no Docker engine answers ({exc})")
    from testcontainers.community.kafka import KafkaContainer

    container = KafkaContainer(os.environ.get(IMAGE_ENV, "confluentinc/cp-kafka:7.6.0"))
    # On one node the transaction log must make do with one replica, as on the local broker.
    for key, value in {
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS": "1",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    }.items():
        container.with_env(key, value)
    try:
        container.with_kraft().start(timeout=120)
    except Exception as exc:
        kafka_unavailable(f"the Kafka container did not start ({exc})")
    try:
        yield container.get_bootstrap_server()
    finally:
        container.stop()


def _reachable(bootstrap: str) -> bool:
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
                return True
        except (OSError, ValueError):
            continue
    return False


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """The bootstrap address of a real Kafka broker, shared by the whole session."""
    configured = os.environ.get(KAFKA_ENV, "").strip()
    if configured == "testcontainers":
        address: str = request.getfixturevalue("_kafka_container")
        return address
    if configured:
        if not _reachable(configured):
            kafka_unavailable(f"{KAFKA_ENV}={configured} does not accept connections")
        return configured
    local: LocalKafka = request.getfixturevalue("_local_kafka")
    return local.bootstrap


@pytest.fixture
def local_broker(request: pytest.FixtureRequest) -> Iterator[LocalKafka]:
    """The session's local broker, for chaos tests that stop and restart it.

    It is running again after the test, whatever the test did to it.
    """
    if os.environ.get(KAFKA_ENV, "").strip():
        pytest.skip(f"restarts need the suite's own local broker; {KAFKA_ENV} is set")
    local: LocalKafka = request.getfixturevalue("_local_kafka")
    yield local
    if not local.is_running():
        local.start()


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses (prefix topics and groups with it; no cleanup needed)."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and _KAFKA_FIXTURES & set(getattr(item, "fixturenames", ())):
        for key in (_LOCAL_KAFKA, _SASL_SSL_KAFKA):
            local = item.config.stash.get(key, None)
            if local is not None:
                title = f"kafka broker log (last 80 lines of {local.info.log_path})"
                report.sections.append((title, local.log_tail(80) or "(empty)"))
    return report


@pytest.fixture
def keep_logging() -> Iterator[None]:
    """The CLI configures logging for its process; give pytest its handlers back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
async def runtime(request: pytest.FixtureRequest, tmp_path: Path, namespace: str) -> AsyncIterator[Runtime]:
    """The session types the test's ``serves`` marker names, on an in-process worker, with a client.

    One fixture for every module: ``pytestmark = pytest.mark.serves(obj, ..., reset=fn,
    backend="kafka", partitions=2)``. ``reset`` (called first) forgets what the workloads keep in
    the process. The backend is the test's ``backend`` parameter when it has one, else the
    marker's, else the embedded log.
    """
    marker = request.node.get_closest_marker("serves")
    assert marker is not None, "the runtime fixture needs @pytest.mark.serves(session types...)"
    reset = marker.kwargs.get("reset")
    if reset is not None:
        reset()
    if "backend" in request.fixturenames:
        backend = request.getfixturevalue("backend")
    else:
        backend = marker.kwargs.get("backend", "embedded")
    settings = settings_for(request, backend, tmp_path, namespace, partitions=marker.kwargs.get("partitions", 2))
    async with open_runtime(list(marker.args), settings) as rt:
        yield rt
