"""Start and stop the Restate server and the Counter service, each as a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp

from bench._harness import REPO_ROOT, console, pick_port, wait_for_port
from bench.peer_restate.install import PEER_DIR, PeerBinaries

HOST = "127.0.0.1"
DEFAULT_PORTS = {"ingress": 8080, "admin": 9070, "fabric": 5122, "service": 9080}
LOG_DIR = PEER_DIR / "logs"


class PeerStartError(RuntimeError):
    """The server or the service did not come up; the message points at its log."""


@dataclass(frozen=True)
class Ports:
    ingress: int
    admin: int
    fabric: int
    service: int

    @classmethod
    def choose(cls) -> Ports:
        """The default ports where free, other free ports where not (said on the console)."""
        chosen: dict[str, int] = {}
        for name, preferred in DEFAULT_PORTS.items():
            port = pick_port(preferred, HOST, avoid=chosen.values())
            if port != preferred:
                console().print(f"[yellow]port {preferred} ({name}) is busy; using {port}[/yellow]")
            chosen[name] = port
        return cls(**chosen)


def _stop_process(proc: subprocess.Popen[Any], sig: int, name: str, grace_s: float) -> None:
    """Send ``sig`` to the process we started, then SIGKILL it if it outlives ``grace_s``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        console().print(f"[yellow]{name} (pid {proc.pid}) ignored signal {sig}; killing it[/yellow]")
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


class _LoggedChild:
    """A child process of the bench whose output goes to a log file in `LOG_DIR`."""

    def __init__(self, log_name: str) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = LOG_DIR / log_name
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _stop_child(self, sig: int, name: str, grace_s: float) -> None:
        """Stop the process (`sig`, SIGKILL after `grace_s`) and close its log."""
        if self.proc is not None:
            _stop_process(self.proc, sig, name, grace_s=grace_s)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


class RestateServer(_LoggedChild):
    """One restate-server process on a fresh base-dir in a temporary folder.

    Configured as the peer measurements were (PEERS.md): loopback only, TCP listeners only,
    telemetry off, everything else default (24 partitions, fsync on).
    """

    def __init__(self, binaries: PeerBinaries, ports: Ports) -> None:
        super().__init__("restate-server.log")
        self.binaries = binaries
        self.ports = ports
        self.base_dir: Path | None = None

    @property
    def ingress_url(self) -> str:
        return f"http://{HOST}:{self.ports.ingress}"

    @property
    def admin_url(self) -> str:
        return f"http://{HOST}:{self.ports.admin}"

    def _config(self, base_dir: Path) -> str:
        return "\n".join(
            [
                f'bind-ip = "{HOST}"',
                f'advertised-host = "{HOST}"',
                'listen-mode = "tcp"',
                "disable-telemetry = true",
                f"bind-port = {self.ports.fabric}",
                f'base-dir = "{base_dir}"',
                "",
                "[ingress]",
                f"bind-port = {self.ports.ingress}",
                "",
                "[admin]",
                f"bind-port = {self.ports.admin}",
                "",
            ]
        )

    async def start(self, timeout_s: float = 90.0) -> None:
        """Start on a wiped base-dir and wait until the admin API answers its health check."""
        tmp = Path(tempfile.mkdtemp(prefix="tether-bench-restate-"))
        self.base_dir = tmp / "data"
        config = tmp / "restate.toml"
        config.write_text(self._config(self.base_dir))
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        env = {**os.environ, "RESTATE_LOG_DISABLE_ANSI_CODES": "true"}
        self.proc = subprocess.Popen(
            [str(self.binaries.server), "--config-file", str(config), "--no-logo"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp,
            env=env,
            start_new_session=True,  # a Ctrl-C on the bench must not reach it before we stop it
        )
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.poll() is not None:
                    raise PeerStartError(
                        f"restate-server exited with {self.proc.returncode} at start; see {self.log_path}"
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{self.admin_url}/health") as resp:
                        if resp.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise PeerStartError(
                        f"restate-server admin API not healthy after {timeout_s:.0f} s; see {self.log_path}"
                    )
                await asyncio.sleep(0.2)
        await wait_for_port(self.ports.ingress, HOST, timeout_s=max(5.0, deadline - time.monotonic()))

    async def register(self, service_url: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Register the deployment at ``service_url`` through the admin API (as the CLI does)."""
        deadline = time.monotonic() + timeout_s
        last = ""
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    async with http.post(f"{self.admin_url}/deployments", json={"uri": service_url}) as resp:
                        body = await resp.text()
                        if resp.status in (200, 201):
                            result: dict[str, Any] = json.loads(body)
                            return result
                        last = f"HTTP {resp.status}: {body[:300]}"
                except (aiohttp.ClientError, OSError) as exc:
                    last = repr(exc)
                await asyncio.sleep(0.5)
        raise PeerStartError(f"could not register {service_url} with Restate: {last}")

    async def wait_ready(self, service: str = "Counter", timeout_s: float = 60.0) -> None:
        """Wait until the ingress routes calls to ``service`` (schema changes propagate lazily)."""
        deadline = time.monotonic() + timeout_s
        last = ""
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    async with http.post(
                        f"{self.ingress_url}/{service}/__ready__/get",
                        skip_auto_headers=("Content-Type",),
                    ) as resp:
                        if resp.status == 200:
                            return
                        last = f"HTTP {resp.status}: {(await resp.text())[:200]}"
                except (aiohttp.ClientError, OSError) as exc:
                    last = repr(exc)
                await asyncio.sleep(0.2)
        raise PeerStartError(f"Restate ingress never served {service}: {last}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wipe its base-dir."""
        self._stop_child(signal.SIGTERM, "restate-server", grace_s=30)
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir.parent, ignore_errors=True)
            self.base_dir = None


class CounterService(_LoggedChild):
    """The Counter virtual object under hypercorn (1 worker, HTTP/2), as a child process."""

    def __init__(self, port: int) -> None:
        super().__init__("counter-service.log")
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self, timeout_s: float = 60.0) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.peer_restate.service",
                "--host",
                HOST,
                "--port",
                str(self.port),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
            env=env,
            start_new_session=True,
        )
        try:
            await wait_for_port(self.port, HOST, timeout_s)
        except TimeoutError as exc:
            raise PeerStartError(f"Counter service did not listen; see {self.log_path}") from exc
        if self.proc.poll() is not None:
            raise PeerStartError(f"Counter service exited at start; see {self.log_path}")

    def stop(self) -> None:
        # SIGINT: the SDK takes over SIGTERM for itself (see service.py).
        self._stop_child(signal.SIGINT, "Counter service", grace_s=15)


def server_version(binaries: PeerBinaries) -> str:
    try:
        out = subprocess.run(
            [str(binaries.server), "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return binaries.version
    return out or binaries.version
