"""Certificates and SCRAM credentials of the local broker's SASL_SSL listener (made with openssl).

A local CA signs a certificate for 127.0.0.1 and localhost; the broker reads it as PEM
(`ssl.keystore.type=PEM`, KIP-651), clients trust the CA's certificate (``ca.pem``). The SCRAM
user is created when the storage is formatted (``StorageTool format --add-scram``, KIP-900).
Everything lives in the data directory's ``security`` folder, private to its owner.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from eventstore.kafka.localbroker.errors import BrokerSetupError
from eventstore.kafka.localbroker.process import run_tool

SCRAM_USER = "tether"
"""The SCRAM user created at format time."""
SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
"""The mechanisms the listener enables; the user has credentials for each."""
LISTENER = "SASL_SSL"
"""The listener's name (and protocol) in `server.properties`."""


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA: its certificate (what clients trust) and its private key (what signs)."""

    cert: Path
    """PEM certificate: the file for ``TETHER_KAFKA__SSL_CAFILE``."""
    key: Path
    """PEM private key (unencrypted; keep it private)."""


@dataclass(frozen=True)
class SaslSslCredentials:
    """How a client connects to the SASL_SSL listener."""

    ca_file: Path
    """The CA certificate that signed the broker's certificate."""
    username: str
    """The SCRAM user."""
    password_file: Path
    """A file holding the user's password (mode 0600)."""
    password: str = field(repr=False)
    """The password itself; never printed."""
    mechanism: str = SCRAM_MECHANISMS[0]
    """The mechanism to use (the listener also enables SCRAM-SHA-256)."""


def security_dir(data_dir: Path) -> Path:
    """Where a data directory keeps its CA, broker certificate and SCRAM password."""
    return data_dir / "security"


def openssl() -> str:
    """The openssl executable.

    Raises:
        BrokerSetupError: openssl is not installed.
    """
    found = shutil.which("openssl")
    if found is None:
        raise BrokerSetupError("the SASL_SSL listener needs openssl to make its certificates; install openssl")
    return found


def _run(*args: str, cwd: Path) -> None:
    try:
        out = run_tool([openssl(), *args], cwd=cwd, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise BrokerSetupError(f"openssl {args[0]} timed out") from exc
    if out.returncode != 0:
        raise BrokerSetupError(f"openssl {args[0]} failed (exit code {out.returncode})", output_tail=out.stderr[-2000:])


def _private(path: Path) -> None:
    os.chmod(path, 0o600)


def make_ca(directory: Path, name: str = "Tether local CA", *, days: int = 3650) -> CertificateAuthority:
    """Make a self-signed CA in `directory` (``<stem>.pem`` and ``<stem>.key``).

    Args:
        directory: Where the files go; created if missing.
        name: The CA's common name; the file stem is derived from it.
        days: Validity.

    Raises:
        BrokerSetupError: openssl is missing or failed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "ca"
    cert, key = directory / f"{stem}.pem", directory / f"{stem}.key"
    _run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-sha256",
        "-days",
        str(days),
        "-subj",
        f"/CN={name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        str(key),
        "-out",
        str(cert),
        cwd=directory,
    )
    _private(key)
    return CertificateAuthority(cert=cert, key=key)


def make_certificate(
    ca: CertificateAuthority,
    directory: Path,
    stem: str,
    *,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    client: bool = False,
    days: int = 825,
) -> tuple[Path, Path]:
    """Make a certificate signed by `ca`, for a server (its `hosts`) or a client (mutual TLS).

    Args:
        ca: The signing CA.
        directory: Where ``<stem>.pem`` (certificate) and ``<stem>.key`` (PKCS#8 key) go.
        stem: File stem, also the common name.
        hosts: Subject alternative names (IP addresses or DNS names) of a server certificate.
        client: Make a client certificate instead (no host names, clientAuth usage).
        days: Validity.

    Returns:
        The certificate and key files.

    Raises:
        BrokerSetupError: openssl is missing or failed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert, key, csr, ext = (directory / f"{stem}{s}" for s in (".pem", ".key", ".csr", ".ext"))
    _run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        f"/CN={stem}",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        cwd=directory,
    )
    _private(key)
    lines = [
        "basicConstraints=CA:FALSE",
        "subjectKeyIdentifier=hash",
        "authorityKeyIdentifier=keyid,issuer",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}",
    ]
    if not client:
        names = [f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts]
        lines.append("subjectAltName=" + ",".join(names))
    ext.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _run(
        "x509",
        "-req",
        "-sha256",
        "-days",
        str(days),
        "-in",
        str(csr),
        "-CA",
        str(ca.cert),
        "-CAkey",
        str(ca.key),
        "-CAcreateserial",
        "-extfile",
        str(ext),
        "-out",
        str(cert),
        cwd=directory,
    )
    csr.unlink(missing_ok=True)
    ext.unlink(missing_ok=True)
    return cert, key


def ensure_sasl_ssl(data_dir: Path) -> SaslSslCredentials:
    """The CA, broker certificate and SCRAM password of `data_dir`, made on first use.

    Raises:
        BrokerSetupError: openssl is missing or failed.
    """
    folder = security_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    ca = CertificateAuthority(folder / "ca.pem", folder / "ca.key")
    if not (ca.cert.exists() and ca.key.exists()):
        made = make_ca(folder, "Tether local CA")
        os.replace(made.cert, ca.cert)
        os.replace(made.key, ca.key)
    if not (folder / "broker.pem").exists() or not (folder / "broker.key").exists():
        make_certificate(ca, folder, "broker")
    password_file = folder / "sasl-password"
    if not password_file.exists():
        # Hex: no character that the `--add-scram` syntax or a properties file would mangle.
        password_file.write_text(secrets.token_hex(16) + "\n", encoding="utf-8")
        _private(password_file)
    password = password_file.read_text(encoding="utf-8").strip()
    return SaslSslCredentials(ca_file=ca.cert, username=SCRAM_USER, password_file=password_file, password=password)


def load_sasl_ssl(data_dir: Path) -> SaslSslCredentials | None:
    """The SASL_SSL credentials `ensure_sasl_ssl` made for `data_dir`, or None if there are none."""
    folder = security_dir(data_dir)
    password_file = folder / "sasl-password"
    try:
        password = password_file.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return SaslSslCredentials(
        ca_file=folder / "ca.pem", username=SCRAM_USER, password_file=password_file, password=password
    )


def scram_arguments(credentials: SaslSslCredentials) -> list[str]:
    """The ``--add-scram`` arguments of ``StorageTool format`` for the SCRAM user."""
    out: list[str] = []
    for mechanism in SCRAM_MECHANISMS:
        out += ["--add-scram", f"{mechanism}=[name={credentials.username},password={credentials.password}]"]
    return out


def listener_properties(data_dir: Path) -> dict[str, str]:
    """The `server.properties` entries of the SASL_SSL listener (not the listener list itself)."""
    folder = security_dir(data_dir)
    prefix = f"listener.name.{LISTENER.lower()}"
    jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    props = {
        f"{prefix}.sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
        "sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
        f"{prefix}.ssl.keystore.type": "PEM",
        # Inline PEM: an unencrypted key needs no key password (a PEM *file* would).
        f"{prefix}.ssl.keystore.certificate.chain": (folder / "broker.pem").read_text(encoding="utf-8").strip(),
        f"{prefix}.ssl.keystore.key": (folder / "broker.key").read_text(encoding="utf-8").strip(),
        f"{prefix}.ssl.client.auth": "none",
    }
    for mechanism in SCRAM_MECHANISMS:
        props[f"{prefix}.{mechanism.lower()}.sasl.jaas.config"] = jaas
    return props
