"""What a result was measured on: CPU, versions of the packages, Java, the commit."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

from .paths import REPO_ROOT

KAFKA_VERSION = "4.3.1"
"""The Apache Kafka broker version the project pins (see eventstore/kafka/localbroker/pom.xml)."""

# Packages whose versions go into every result file, when installed.
TRACKED_PACKAGES = (
    "tether",
    "aiokafka",
    "kafka-python",
    "msgpack",
    "pydantic",
    "ray",
    "restate-sdk",
    "hypercorn",
    "aiohttp",
    "psutil",
    "matplotlib",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions(names: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of the named distributions (missing ones are left out)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _java_version() -> str | None:
    try:
        proc = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = (proc.stderr or proc.stdout).strip().splitlines()
    return first[0] if first else None


def _git_commit() -> str | None:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None


_SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")


def _tether_settings() -> dict[str, str]:
    """The run's ``TETHER_RUNTIME__*`` and ``TETHER_KAFKA__*`` variables, secrets left out."""
    return {
        k: v
        for k, v in sorted(os.environ.items())
        if k.startswith(("TETHER_RUNTIME__", "TETHER_KAFKA__")) and not any(s in k for s in _SECRET_WORDS)
    }


def machine_info(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """CPU, cores, memory, OS, Python, Java, Kafka and package versions of this machine."""
    vm = psutil.virtual_memory()
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "memory_gib": round(vm.total / 2**30, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_impl": platform.python_implementation(),
        "java": _java_version(),
        "kafka": KAFKA_VERSION,
        "packages": package_versions(),
        "git_commit": _git_commit(),
        "settings": _tether_settings(),
    }
    if extra:
        info.update(extra)
    return info
