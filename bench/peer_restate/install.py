"""Install the Restate peer where missing: server and CLI via npm into bench/.peer/, SDK via pip."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench._harness import BENCH_DIR, console

RESTATE_VERSION = "1.7.12"
SDK_VERSION = "1.2.0"
PEER_DIR = BENCH_DIR / ".peer"
"""Where npm installs the server and CLI (gitignored)."""
REQUIREMENTS = BENCH_DIR / "requirements-peer.txt"
NPM_PACKAGES = (
    f"@restatedev/restate-server@{RESTATE_VERSION}",
    f"@restatedev/restate@{RESTATE_VERSION}",
)


class PeerInstallError(RuntimeError):
    """The peer could not be installed; the message says which step failed and why."""


@dataclass(frozen=True)
class PeerBinaries:
    server: Path
    """The restate-server executable."""
    cli: Path
    """The restate CLI executable."""
    version: str
    """The server's version, as the npm package records it."""


def _platform_suffix() -> str:
    system = {"Linux": "linux", "Darwin": "darwin"}.get(platform.system())
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    if system is None or machine is None:
        raise PeerInstallError(f"Restate publishes no npm binary for {platform.system()} {platform.machine()}")
    return f"{system}-{machine}"


def _binaries() -> PeerBinaries:
    mods = PEER_DIR / "node_modules" / "@restatedev"
    suffix = _platform_suffix()
    return PeerBinaries(
        server=mods / f"restate-server-{suffix}" / "bin" / "restate-server",
        cli=mods / f"restate-{suffix}" / "bin" / "restate",
        version=_installed_npm_version("restate-server") or "",
    )


def _installed_npm_version(name: str) -> str | None:
    pkg = PEER_DIR / "node_modules" / "@restatedev" / name / "package.json"
    try:
        return str(json.loads(pkg.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def _npm_installed() -> bool:
    b = _binaries()
    return (
        b.server.is_file()
        and b.cli.is_file()
        and _installed_npm_version("restate-server") == RESTATE_VERSION
        and _installed_npm_version("restate") == RESTATE_VERSION
    )


def _run(cmd: list[str], what: str, timeout_s: float) -> None:
    console().print(f"[dim]$ {' '.join(cmd)}[/dim]")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise PeerInstallError(f"{what} took longer than {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise PeerInstallError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def install_server() -> PeerBinaries:
    """npm-install restate-server and the CLI into bench/.peer/ unless already there."""
    if _npm_installed():
        return _binaries()
    npm = shutil.which("npm")
    if npm is None:
        raise PeerInstallError("npm is not on PATH; it is needed to install the Restate server")
    PEER_DIR.mkdir(parents=True, exist_ok=True)
    # A package.json of its own keeps npm from walking up into another project.
    pkg = PEER_DIR / "package.json"
    if not pkg.exists():
        pkg.write_text(json.dumps({"name": "tether-bench-peer", "private": True}) + "\n")
    for spec in NPM_PACKAGES:
        _run([npm, "view", spec, "version"], f"npm view {spec}", 120)
    _run(
        [
            npm,
            "install",
            "--prefix",
            str(PEER_DIR),
            "--no-audit",
            "--no-fund",
            "--save-exact",
            *NPM_PACKAGES,
        ],
        "npm install of the Restate server",
        600,
    )
    if not _npm_installed():
        raise PeerInstallError(
            f"npm finished but {_binaries().server} is missing: the platform package "
            f"@restatedev/restate-server-{_platform_suffix()} was not installed"
        )
    return _binaries()


def _python_ok() -> bool:
    try:
        if importlib.metadata.version("restate-sdk") != SDK_VERSION:
            return False
        importlib.metadata.version("hypercorn")
        importlib.metadata.version("aiohttp")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def install_python() -> None:
    """pip-install restate-sdk, hypercorn and aiohttp into this interpreter unless present."""
    if _python_ok():
        return
    _run(
        [sys.executable, "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
        "pip install of the Restate SDK",
        900,
    )
    importlib.invalidate_caches()
    if not _python_ok():
        raise PeerInstallError(f"pip finished but restate-sdk=={SDK_VERSION} is not importable")


def ensure_installed() -> PeerBinaries:
    """Everything the peer needs, installed only where missing.

    Returns:
        Paths of the server and CLI binaries.

    Raises:
        PeerInstallError: A step failed; the message says which.
    """
    install_python()
    return install_server()
