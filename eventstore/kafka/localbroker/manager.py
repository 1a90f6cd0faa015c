"""Start, stop and inspect a real single-node Apache Kafka broker (KRaft) without Docker.

The broker is a detached JVM that outlives the Python process which started it; everything
needed to find and stop it again lives in its data directory, so `tether kafka up` and
`tether kafka down` can be different processes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from eventstore.kafka.localbroker.config import (
    LOOPBACK,
    BrokerPaths,
    BrokerState,
    LoopbackAddresses,
    broker_properties,
    new_cluster_id,
    pick_free_ports,
    port_is_free,
    render_properties,
)
from eventstore.kafka.localbroker.errors import BrokerSetupError, BrokerStartError, BrokerStopError
from eventstore.kafka.localbroker.jars import Progress, find_java, kafka_version, resolve_jars
from eventstore.kafka.localbroker.process import (
    MAIN_CLASS,
    PidRecord,
    broker_tag,
    file_lock,
    find_broker,
    process_create_time,
    read_pid_file,
    run_tool,
    send_signal,
    wait_gone,
    write_pid_file,
)
from eventstore.kafka.localbroker.tls import (
    SaslSslCredentials,
    ensure_sasl_ssl,
    listener_properties,
    load_sasl_ssl,
    scram_arguments,
)

logger = logging.getLogger(__name__)

DEFAULT_HEAP = "512m"
"""Heap of the broker JVM; enough for tests and a laptop demo."""

_LOG_ROTATE_BYTES = 10 * 1024 * 1024
_KILL_WAIT = 15.0
_PROBE_ID = "tether-readiness"
_PORT_GRACE = 5.0
"""Seconds a stored port may stay busy (e.g. a broker still exiting) before start gives up."""

PORT_BUSY = (
    "{what} port {port} is in use by another process, but this data directory's broker must "
    "listen there ({state_file} keeps ports stable across restarts). Stop whatever holds the "
    "port, or {remedy}"
)
EXITED_DURING_START = (
    "the Kafka broker exited during start-up; the log below says why. If the data directory "
    "is corrupt, stop and delete it to start afresh"
)
NOT_READY = (
    "the Kafka broker did not become ready within {timeout:.0f} s and was stopped; the log "
    "below may say why. On a slow machine, pass a longer timeout"
)


@dataclass(frozen=True)
class BrokerInfo(LoopbackAddresses):
    """A broker process serving one data directory."""

    data_dir: Path
    """Its data directory (absolute)."""
    pid: int
    """The JVM's process id."""
    port: int
    """The client (PLAINTEXT) port on 127.0.0.1."""
    controller_port: int
    """The KRaft controller port on 127.0.0.1."""
    cluster_id: str
    """The KRaft cluster id."""
    log_path: Path
    """The file holding the broker's stdout and stderr."""
    sasl_ssl_port: int | None
    """The SASL_SSL client port on 127.0.0.1, when the broker has that listener."""
    sasl_ssl: SaslSslCredentials | None
    """The CA file and SCRAM user of the SASL_SSL listener (the password is not in repr)."""


@dataclass(frozen=True)
class BrokerStatus(BrokerInfo):
    """A running broker, as `LocalBroker.status` found it."""

    accepting: bool
    """Whether the client port accepted a TCP connection just now."""


class LocalBroker:
    """Runs the real Kafka broker (a JVM) on 127.0.0.1, one per data directory.

    Restarting on the same data directory keeps the cluster id, the ports and every record
    that was acknowledged before the stop, whether the broker was stopped with SIGTERM or
    SIGKILL (records survive in the OS page cache; only losing the machine loses unflushed
    data). Start and stop are serialised per data directory by a file lock.

    Example:
        broker = LocalBroker()
        info = broker.start(Path(".tether/kafka"))
        ...  # clients use info.bootstrap
        broker.stop(info.data_dir)
    """

    def __init__(
        self,
        *,
        libs_dir: Path | None = None,
        cache_dir: Path | None = None,
        overrides: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> None:
        """Configure the broker launcher; nothing starts yet.

        Args:
            libs_dir: A directory of broker jars; default `resolve_jars(cache_dir)`.
            cache_dir: The jar cache root when `libs_dir` is not given.
            overrides: Extra `server.properties` entries, applied over Tether's.
            progress: Called with short status lines while jars resolve or the broker starts.
        """
        self._libs_dir = libs_dir
        self._cache_dir = cache_dir
        self._overrides = dict(overrides or {})
        self._progress = progress

    def start(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        heap: str = DEFAULT_HEAP,
        timeout: float = 120.0,
        sasl_ssl: bool = False,
    ) -> BrokerInfo:
        """Start the broker on `data_dir` and wait until it serves metadata requests.

        The storage is formatted on first use. Ports are chosen on first use and kept in the
        data directory, so a restart listens where clients expect it. If a broker already
        serves `data_dir`, it is returned as it is.

        Args:
            data_dir: The broker's data directory; created if missing.
            port: The client port; default the stored one, or a free one on first use.
            heap: The JVM heap (`-Xmx`/`-Xms`), e.g. "512m" or "1g".
            timeout: Seconds to wait for readiness before stopping the broker and failing.
            sasl_ssl: Also listen for SASL_SSL clients (SCRAM-SHA-512/256, TLS with a local CA;
                see `BrokerInfo.sasl_ssl`). Decided when the storage is first formatted: the
                SCRAM user is created then. The PLAINTEXT listener stays open on loopback.

        Returns:
            The running broker.

        Raises:
            BrokerSetupError: Java or the jars are missing.
            BrokerStartError: The broker failed or did not become ready; carries the log tail.
        """
        if not re.fullmatch(r"\d+[kKmMgG]?", heap):
            raise BrokerStartError(f"heap {heap!r} is not a JVM size such as '512m' or '1g'", data_dir=data_dir)
        paths = BrokerPaths(data_dir.expanduser().resolve())
        paths.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with file_lock(paths.lock_file):
            running = self._running(paths)
            if running is not None:
                if port is not None and port != running.port:
                    raise BrokerStartError(
                        f"a broker already runs here on port {running.port}, not {port}; "
                        "stop it first (`tether kafka down`)",
                        data_dir=paths.data_dir,
                    )
                if sasl_ssl and running.sasl_ssl_port is None:
                    raise BrokerStartError(
                        "a broker without a SASL_SSL listener already runs here; stop it first "
                        "(`tether kafka down`), and use a new data directory for SASL_SSL",
                        data_dir=paths.data_dir,
                    )
                self._wait_ready(paths, running.pid, deadline=time.monotonic() + timeout)
                return running
            paths.pid_file.unlink(missing_ok=True)  # stale: its process is gone
            java = find_java()
            libs = self._libs()
            state = self._state(paths, port, sasl_ssl)
            self._write_config(paths, state)
            if not paths.meta_properties.exists():
                self._format(paths, state, java, libs)
            return self._launch(paths, state, java, libs, heap, timeout)

    def stop(self, data_dir: Path, *, kill: bool = False, timeout: float = 30.0) -> bool:
        """Stop the broker serving `data_dir`.

        Only the process named by the PID file is signalled, and only once it is verified to
        be this data directory's broker JVM. SIGTERM lets the broker shut down cleanly; after
        `timeout` seconds, or at once with `kill=True`, it gets SIGKILL.

        Args:
            data_dir: The broker's data directory.
            kill: Send SIGKILL straight away (a crash, as far as the broker can tell).
            timeout: Seconds to wait after SIGTERM before SIGKILL.

        Returns:
            True if a broker was stopped, False if none was running.

        Raises:
            BrokerStopError: The process survived SIGKILL.
        """
        paths = BrokerPaths(data_dir.expanduser().resolve())
        if not paths.data_dir.is_dir():
            return False
        with file_lock(paths.lock_file):
            record = read_pid_file(paths.pid_file)
            proc = find_broker(record, paths.data_dir) if record else None
            if proc is None:
                paths.pid_file.unlink(missing_ok=True)
                return False
            self._signal_and_wait(proc, kill=kill, timeout=timeout)
            paths.pid_file.unlink(missing_ok=True)
            logger.info("stopped Kafka broker pid %d (%s)", proc.pid, "SIGKILL" if kill else "SIGTERM")
            return True

    def restart(
        self,
        data_dir: Path,
        *,
        kill: bool = False,
        heap: str = DEFAULT_HEAP,
        timeout: float = 120.0,
    ) -> BrokerInfo:
        """Stop the broker (SIGTERM, or SIGKILL with `kill=True`) and start it on the same port."""
        self.stop(data_dir, kill=kill)
        return self.start(data_dir, heap=heap, timeout=timeout)

    def status(self, data_dir: Path) -> BrokerStatus | None:
        """Return the broker serving `data_dir`, or None when none runs."""
        paths = BrokerPaths(data_dir.expanduser().resolve())
        running = self._running(paths)
        if running is None:
            return None
        return BrokerStatus(**vars(running), accepting=_accepts_tcp(running.port))

    # -- internals -----------------------------------------------------------------------

    def _libs(self) -> Path:
        if self._libs_dir is not None:
            return self._libs_dir
        self._libs_dir = resolve_jars(self._cache_dir, progress=self._progress)
        return self._libs_dir

    def _running(self, paths: BrokerPaths) -> BrokerInfo | None:
        record = read_pid_file(paths.pid_file)
        if record is None or find_broker(record, paths.data_dir) is None:
            return None
        try:
            state = BrokerState.load(paths.state_file)
        except ValueError:
            state = None
        if state is None:
            return None
        return _info(paths, state, record.pid)

    def _state(self, paths: BrokerPaths, port: int | None, sasl_ssl: bool = False) -> BrokerState:
        try:
            state = BrokerState.load(paths.state_file)
        except ValueError as exc:
            raise BrokerStartError(
                f"{exc}; delete the data directory to start afresh", data_dir=paths.data_dir
            ) from exc
        if state is None:
            if port is None:
                port, controller_port = pick_free_ports(2)
            else:
                (controller_port,) = pick_free_ports(1, exclude=[port])
            state = BrokerState(
                cluster_id=new_cluster_id(),
                port=port,
                controller_port=controller_port,
                kafka_version=kafka_version(),
            )
        if sasl_ssl and state.sasl_ssl_port is None:
            if paths.meta_properties.exists():
                raise BrokerStartError(
                    "this data directory was formatted without a SASL_SSL listener (its SCRAM user "
                    "is created at format time); use a new data directory for SASL_SSL",
                    data_dir=paths.data_dir,
                )
            (sasl_port,) = pick_free_ports(1, exclude=[state.port, state.controller_port])
            state = dataclasses.replace(state, sasl_ssl_port=sasl_port)
        elif port is not None and port != state.port:
            if port == state.controller_port:
                raise BrokerStartError(
                    f"port {port} is this broker's controller port; choose another",
                    data_dir=paths.data_dir,
                )
            # The client port may move; the controller port is part of the formatted voter set.
            state = dataclasses.replace(state, port=port)
        ports = [
            ("client", state.port, "pass another --port"),
            ("controller", state.controller_port, "delete the data directory to start afresh"),
        ]
        if state.sasl_ssl_port is not None:
            ports.append(("SASL_SSL", state.sasl_ssl_port, "delete the data directory to start afresh"))
        for what, number, remedy in ports:
            if not _wait_port_free(number, _PORT_GRACE):
                raise BrokerStartError(
                    PORT_BUSY.format(what=what, port=number, state_file=paths.state_file, remedy=remedy),
                    data_dir=paths.data_dir,
                )
        state.save(paths.state_file)
        return state

    def _write_config(self, paths: BrokerPaths, state: BrokerState) -> None:
        secured: dict[str, str] | None = None
        if state.sasl_ssl_port is not None:
            ensure_sasl_ssl(paths.data_dir)
            secured = listener_properties(paths.data_dir)
        props = broker_properties(state, paths, self._overrides, sasl_ssl=secured)
        paths.properties_file.touch(mode=0o600)
        os.chmod(paths.properties_file, 0o600)  # it may hold the listener's private key
        paths.properties_file.write_text(render_properties(props), encoding="utf-8")
        log4j = resources.files(__package__).joinpath("log4j2.yaml").read_bytes()
        paths.log4j_file.write_bytes(log4j)
        paths.logs_dir.mkdir(mode=0o700, exist_ok=True)

    def _jvm_options(self, paths: BrokerPaths, heap: str) -> list[str]:
        # As Kafka's bin/kafka-run-class.sh does for the server.
        return [
            f"-Xmx{heap}",
            f"-Xms{heap}",
            "-server",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:MaxInlineLevel=15",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={paths.logs_dir}",
            f"-Dlog4j2.configurationFile={paths.log4j_file}",
        ]

    def _format(self, paths: BrokerPaths, state: BrokerState, java: Path, libs: Path) -> None:
        if self._progress:
            self._progress("formatting the KRaft storage")
        cmd = [
            str(java),
            "-Xmx256m",
            *self._jvm_options(paths, "256m")[2:],
            "-cp",
            f"{libs}/*",
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "--ignore-formatted",
            "-t",
            state.cluster_id,
            "-c",
            str(paths.properties_file),
        ]
        if state.sasl_ssl_port is not None:
            cmd += scram_arguments(ensure_sasl_ssl(paths.data_dir))
        try:
            out = run_tool(cmd, cwd=paths.data_dir, timeout=180)
        except subprocess.TimeoutExpired as exc:
            raise BrokerStartError("formatting the KRaft storage timed out", data_dir=paths.data_dir) from exc
        if out.returncode != 0:
            raise BrokerStartError(
                f"formatting the KRaft storage failed (exit code {out.returncode})",
                data_dir=paths.data_dir,
                log_tail=_tail_text(out.stdout + out.stderr, 40),
            )
        logger.info("formatted KRaft storage in %s (cluster %s)", paths.kafka_data_dir, state.cluster_id)

    def _launch(
        self,
        paths: BrokerPaths,
        state: BrokerState,
        java: Path,
        libs: Path,
        heap: str,
        timeout: float,
    ) -> BrokerInfo:
        _rotate(paths.log_file)
        paths.log_file.touch(mode=0o600)  # the broker's output: its owner's only
        os.chmod(paths.log_file, 0o600)
        cmd = [
            str(java),
            *self._jvm_options(paths, heap),
            broker_tag(paths.data_dir),
            "-cp",
            f"{libs}/*",
            MAIN_CLASS,
            str(paths.properties_file),
        ]
        if self._progress:
            self._progress(f"starting the Kafka broker on {state.bootstrap}")
        started = time.monotonic()
        pid = _spawn_detached(cmd, cwd=paths.data_dir, log_file=paths.log_file)
        try:
            create_time = process_create_time(pid)
        except Exception as exc:  # psutil.NoSuchProcess: it died at once
            raise BrokerStartError(
                EXITED_DURING_START,
                data_dir=paths.data_dir,
                log_path=paths.log_file,
                log_tail=log_tail(paths.data_dir),
            ) from exc
        write_pid_file(paths.pid_file, PidRecord(pid=pid, create_time=create_time))
        try:
            self._wait_ready(paths, pid, deadline=started + timeout)
        except BaseException:  # not ready, or interrupted: leave no half-started JVM behind
            record = read_pid_file(paths.pid_file)
            proc = find_broker(record, paths.data_dir) if record else None
            if proc is not None:
                self._signal_and_wait(proc, kill=False, timeout=10.0)
            paths.pid_file.unlink(missing_ok=True)
            raise
        logger.info(
            "Kafka broker pid %d ready on %s after %.1f s",
            pid,
            state.bootstrap,
            time.monotonic() - started,
        )
        return _info(paths, state, pid)

    def _wait_ready(self, paths: BrokerPaths, pid: int, *, deadline: float) -> None:
        """Wait until the client port accepts TCP and the broker serves clients."""
        state = BrokerState.load(paths.state_file)
        assert state is not None  # written before launch
        record = PidRecord(pid=pid, create_time=process_create_time_or_zero(pid))
        timeout = deadline - time.monotonic()
        while True:
            if find_broker(record, paths.data_dir) is None:
                raise BrokerStartError(
                    EXITED_DURING_START,
                    data_dir=paths.data_dir,
                    log_path=paths.log_file,
                    log_tail=log_tail(paths.data_dir),
                )
            secured = state.sasl_ssl_port is None or _accepts_tcp(state.sasl_ssl_port)
            if _accepts_tcp(state.port) and secured and _serves_clients(state.bootstrap):
                return
            if time.monotonic() >= deadline:
                raise BrokerStartError(
                    NOT_READY.format(timeout=max(timeout, 0.0)),
                    data_dir=paths.data_dir,
                    log_path=paths.log_file,
                    log_tail=log_tail(paths.data_dir),
                )
            time.sleep(0.25)

    @staticmethod
    def _signal_and_wait(proc: Any, *, kill: bool, timeout: float) -> None:
        if not kill:
            send_signal(proc, signal.SIGTERM)
            if wait_gone(proc, timeout):
                return
            logger.warning("Kafka broker pid %d ignored SIGTERM for %.0f s; sending SIGKILL", proc.pid, timeout)
        send_signal(proc, signal.SIGKILL)
        if not wait_gone(proc, _KILL_WAIT):
            raise BrokerStopError(f"Kafka broker pid {proc.pid} survived SIGKILL")


def log_tail(data_dir: Path, lines: int = 60) -> str:
    """Return the last `lines` lines of a broker's output (empty if there is none yet)."""
    path = BrokerPaths(data_dir.expanduser().resolve()).log_file
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            data = handle.read()
    except OSError:
        return ""
    return _tail_text(data.decode("utf-8", errors="replace"), lines)


def process_create_time_or_zero(pid: int) -> float:
    """Return a process's start time, or 0.0 (which matches nothing) if it is gone."""
    try:
        return process_create_time(pid)
    except Exception:  # psutil.NoSuchProcess
        return 0.0


def _info(paths: BrokerPaths, state: BrokerState, pid: int) -> BrokerInfo:
    return BrokerInfo(
        data_dir=paths.data_dir,
        pid=pid,
        port=state.port,
        controller_port=state.controller_port,
        cluster_id=state.cluster_id,
        log_path=paths.log_file,
        sasl_ssl_port=state.sasl_ssl_port,
        sasl_ssl=None if state.sasl_ssl_port is None else load_sasl_ssl(paths.data_dir),
    )


def _spawn_detached(cmd: list[str], *, cwd: Path, log_file: Path) -> int:
    """Start `cmd` in a new session, owned by init rather than by us, and return its PID.

    A short-lived `sh` forks the JVM into the background and exits, so the JVM is never our
    child: it cannot become our zombie, and no `Popen` object outlives this call.
    """
    script = '"$@" </dev/null >>"$0" 2>&1 & echo $!'
    out = run_tool(["/bin/sh", "-c", script, str(log_file), *cmd], cwd=cwd, timeout=30, start_new_session=True)
    try:
        return int(out.stdout.strip())
    except ValueError as exc:
        raise BrokerSetupError("could not start the broker JVM", output_tail=out.stdout + out.stderr) from exc


def _wait_port_free(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not port_is_free(port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _accepts_tcp(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0):
            return True
    except OSError:
        return False


def _serves_clients(bootstrap: str) -> bool:
    """Whether the broker answers metadata requests and both coordinators have loaded.

    The client port opens before the group and transaction coordinators have loaded (or, on
    a fresh broker, created) their internal topics; until then clients get retriable
    COORDINATOR_NOT_AVAILABLE / LOAD_IN_PROGRESS errors that not every client retries.
    """
    with warnings.catch_warnings():
        # kafka-python 3.0 uses deprecated importlib.resources calls at import time; that is
        # its business, and must not fail test suites that turn warnings into errors.
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaAdminClient  # imported late: only readiness checks need it
        from kafka.errors import KafkaError, TransactionalIdNotFoundError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="tether-readiness",
            request_timeout_ms=5000,
            bootstrap_timeout_ms=5000,
        )
    except (KafkaError, OSError):
        return False
    try:
        if not admin.describe_cluster().get("brokers"):
            return False
        group = admin.describe_groups([_PROBE_ID])[_PROBE_ID]
        if group.get("error") and "GroupIdNotFound" not in str(group["error"]):
            return False
        try:
            admin.describe_transactions([_PROBE_ID])
        except TransactionalIdNotFoundError:
            pass  # the coordinator answered: it has loaded, and the id is simply unknown
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def _rotate(log_file: Path) -> None:
    """Keep one previous generation of the broker's output once it grows large."""
    try:
        if log_file.stat().st_size > _LOG_ROTATE_BYTES:
            log_file.replace(log_file.with_name(log_file.name + ".1"))
    except FileNotFoundError:
        pass


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])
