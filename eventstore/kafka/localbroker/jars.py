"""Java and the Kafka broker jars: Maven resolves them once into a per-version cache."""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from eventstore.kafka.localbroker.errors import BrokerSetupError
from eventstore.kafka.localbroker.process import file_lock

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
"""Receives short human-readable status lines while jars are resolved."""

MIN_JAVA = 17
"""Kafka 4.x brokers need Java 17 or newer."""

CACHE_ENV = "TETHER_KAFKA_CACHE"
"""Overrides the cache root (default `~/.cache/tether`)."""

LIBS_ENV = "TETHER_KAFKA_LIBS"
"""Points at a ready directory of broker jars (e.g. an Apache Kafka download's `libs/`); Maven
is then not used at all."""

_MARKER = "complete.json"
_POM_NS = "{http://maven.apache.org/POM/4.0.0}"

NO_MAVEN = (
    "Maven (`mvn`) is not on PATH; Tether uses it once to download the Kafka broker jars. "
    "Install Maven 3.6+ (e.g. `apt-get install maven` or `brew install maven`), or set "
    f"{LIBS_ENV} to the libs/ directory of an Apache Kafka {{version}} download."
)
NO_JAVA = (
    "Java is not installed (no `java` on PATH and no usable JAVA_HOME); the Kafka broker needs "
    f"Java {MIN_JAVA}+. Install a JDK (e.g. `apt-get install openjdk-17-jre-headless`) or set "
    "JAVA_HOME."
)
OLD_JAVA = (
    "{java} is Java {major}; the Kafka broker needs Java " + str(MIN_JAVA) + "+. Install a newer "
    "JDK and put it first on PATH or set JAVA_HOME."
)
MAVEN_FAILED = (
    "Maven could not resolve the Kafka {version} jars (exit code {code}). Check network access to "
    "Maven Central (or your mirror in ~/.m2/settings.xml) and run `tether kafka jars` again."
)


def _pom_bytes() -> bytes:
    return resources.files(__package__).joinpath("pom.xml").read_bytes()


@functools.cache
def kafka_version() -> str:
    """Return the Kafka version pinned in the bundled `pom.xml`."""
    root = ET.fromstring(_pom_bytes())
    node = root.find(f"{_POM_NS}properties/{_POM_NS}kafka.version")
    if node is None or not node.text:
        raise BrokerSetupError("the bundled pom.xml has no <kafka.version> property")
    return node.text.strip()


def default_cache_root() -> Path:
    """Return the cache root: `$TETHER_KAFKA_CACHE`, else `$XDG_CACHE_HOME/tether` or ~/.cache."""
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tether"


def find_java() -> Path:
    """Return the `java` executable: `$JAVA_HOME/bin/java`, else the first on PATH.

    Raises:
        BrokerSetupError: There is no Java, or it is older than Java 17.
    """
    candidates: list[str | None] = []
    if home := os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(home) / "bin" / "java"))
    candidates.append(shutil.which("java"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            java = Path(candidate)
            major = java_major_version(java)
            if major < MIN_JAVA:
                raise BrokerSetupError(OLD_JAVA.format(java=java, major=major))
            return java
    raise BrokerSetupError(NO_JAVA)


@functools.cache
def java_major_version(java: Path) -> int:
    """Return the major version of a `java` executable (8 for "1.8.0", 17 for "17.0.15")."""
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerSetupError(f"could not run `{java} -version`: {exc}") from exc
    return parse_java_version(out.stderr + out.stdout)


def parse_java_version(text: str) -> int:
    """Return the major version from `java -version` output.

    Raises:
        BrokerSetupError: The text names no version.
    """
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if match is None:
        raise BrokerSetupError("cannot tell the Java version", output_tail=text.strip())
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0" is Java 8
        major = int(match.group(2))
    return major


def resolve_jars(cache_dir: Path | None = None, *, progress: Progress | None = None) -> Path:
    """Return a directory holding every jar the broker needs, downloading them if needed.

    Maven copies the runtime dependencies of the bundled `pom.xml` into
    `<cache>/kafka-<version>/libs`. A marker written after a successful copy makes later calls
    return at once, without Maven; it is keyed by the pom's hash, so a new pin resolves again.
    Concurrent callers are serialised by a file lock. When `$TETHER_KAFKA_LIBS` is set, that
    directory is used as it is.

    Args:
        cache_dir: The cache root; default `$TETHER_KAFKA_CACHE`, else `~/.cache/tether`.
        progress: Called with short status lines while Maven runs.

    Returns:
        The `libs` directory, for a `-cp 'libs/*'` class path.

    Raises:
        BrokerSetupError: Maven or Java is missing, or Maven failed (with its output's tail).
    """
    version = kafka_version()
    if env := os.environ.get(LIBS_ENV):
        libs = Path(env).expanduser()
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise BrokerSetupError(
                f"{LIBS_ENV}={env} holds no kafka_2.13-*.jar; point it at the libs/ directory "
                f"of an Apache Kafka {version} download, or unset it to let Maven resolve jars"
            )
        return libs
    home = (cache_dir if cache_dir is not None else default_cache_root()) / f"kafka-{version}"
    libs = home / "libs"
    pom = _pom_bytes()
    fingerprint = hashlib.sha256(pom).hexdigest()
    if _is_complete(home, fingerprint):
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with file_lock(home / ".lock"):
        if _is_complete(home, fingerprint):  # another process finished while we waited
            return libs
        _run_maven(home, pom, version, progress)
        jars = sorted(p.name for p in libs.glob("*.jar"))
        marker = {"pom_sha256": fingerprint, "kafka_version": version, "jars": jars}
        (home / _MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    logger.info("resolved %d jars for Kafka %s into %s", len(jars), version, libs)
    return libs


def _is_complete(home: Path, fingerprint: str) -> bool:
    try:
        marker = json.loads((home / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("pom_sha256") != fingerprint:
        return False
    jars = marker.get("jars")
    libs = home / "libs"
    return isinstance(jars, list) and bool(jars) and all((libs / str(j)).is_file() for j in jars)


def _run_maven(home: Path, pom: bytes, version: str, progress: Progress | None) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerSetupError(NO_MAVEN.format(version=version))
    find_java()  # Maven needs it too, and its own message about JAVA_HOME is less helpful
    # Maven runs on a copy of the pom so that an installed package directory stays read-only.
    (home / "pom.xml").write_bytes(pom)
    staging = home / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        mvn,
        "-B",
        "-f",
        str(home / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    if progress:
        progress(f"resolving Kafka {version} jars with Maven")
    logger.info("running %s", " ".join(cmd))
    tail: collections.deque[str] = collections.deque(maxlen=40)
    with subprocess.Popen(
        cmd,
        cwd=home,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as proc:
        assert proc.stdout is not None  # stdout=PIPE
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            if progress and (status := _status_of(line)):
                progress(status)
        code = proc.wait()
    if code != 0:
        raise BrokerSetupError(MAVEN_FAILED.format(version=version, code=code), output_tail="\n".join(tail))
    if not any(staging.glob(f"kafka_2.13-{version}.jar")):
        raise BrokerSetupError(
            f"Maven succeeded but kafka_2.13-{version}.jar is not in {staging}",
            output_tail="\n".join(tail),
        )
    libs = home / "libs"
    shutil.rmtree(libs, ignore_errors=True)
    os.replace(staging, libs)


def _status_of(line: str) -> str | None:
    """Turn a Maven output line into a short status, or None for lines not worth showing."""
    match = re.search(r"(Downloading|Copying) .*?([\w.\-]+\.(?:jar|pom))", line)
    if match is None:
        return None
    verb = "downloading" if match.group(1) == "Downloading" else "copying"
    return f"{verb} {match.group(2)}"
