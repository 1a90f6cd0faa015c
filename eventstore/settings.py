"""Settings of the event log; entry points compose them (env prefix ``TETHER_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, SerializationInfo, field_serializer, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigurationError, PartitionCountError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]

REVEAL_SECRETS = "tether.reveal_secrets"
"""Serialization context key: ``model_dump(context={REVEAL_SECRETS: True})`` writes secrets in
clear (for handing settings to a worker process or a Ray actor; never for logs)."""

_ENV = "TETHER_KAFKA__"


class KafkaSettings(BaseModel):
    """How to reach a Kafka cluster (``TETHER_KAFKA__*``)."""

    model_config = ConfigDict(frozen=True)

    bootstrap_servers: str | None = None
    """``host:port[,host:port]``; unset means no broker is configured."""
    client_id: str = "tether"
    """Client id prefix, visible in broker logs and metrics."""
    request_timeout_ms: int = 30_000
    """How long a request may take before the client gives up."""
    transaction_timeout_ms: int = 60_000
    """After this long an open transaction is aborted by the broker."""
    linger_ms: int = 1
    """How long the producer waits to batch records (higher = more throughput, more latency)."""
    session_timeout_ms: int = 10_000
    """How long the group waits for a silent member (a killed worker) before moving its
    partitions; the broker bounds it by ``group.min.session.timeout.ms`` (6 s by default)."""
    heartbeat_interval_ms: int = 3_000
    """How often a member tells the group it is alive (well below the session timeout)."""
    fetch_max_wait_ms: int = 50
    """How long the broker holds a fetch when there is no data (latency of an idle consumer)."""
    group_instance_id: str | None = None
    """Static group membership (KIP-345): a worker restarted with the same id takes its
    partitions back at once instead of after ``session_timeout_ms``, and no other worker's
    partitions move. Give each worker its own stable id (a pod name); Ray workers add
    ``-{index}``. Without one (the default) membership is dynamic. A static worker that stops
    for good hands its partitions over after the session timeout."""
    transactions: Literal["per_partition", "per_worker"] = "per_partition"
    """``per_partition`` (default): a transactional producer per partition, fenced by its
    transactional id. ``per_worker`` (experimental): one producer per worker and one transaction
    in flight for all of its partitions, fenced by the consumer group's generation (KIP-447:
    ``TxnOffsetCommit`` v3 with the consumer's membership); see README, "What fences what".
    Like every ``kafka.*`` setting, the embedded backend ignores it."""
    rebalance: Literal["sticky", "eager"] = "sticky"
    """``sticky`` (default): a rebalance moves only the partitions that balance needs (a sticky
    assignor), and a worker that gets a partition back in the very next generation keeps its
    processor (no restore). ``eager``: aiokafka's round robin, and every partition is restored
    after every rebalance (what Tether did before). See README, "Rebalances"."""
    connect_timeout_ms: int = Field(default=10_000, ge=100)
    """How long connecting to the cluster may take at start-up (TCP, TLS, SASL, first metadata)
    before it fails with a typed error, instead of waiting for ``request_timeout_ms``."""

    # -- security -------------------------------------------------------------------------
    security_protocol: SecurityProtocol = "PLAINTEXT"
    """``PLAINTEXT``, ``SSL`` (TLS, optionally with a client certificate), ``SASL_PLAINTEXT``
    or ``SASL_SSL`` (SASL over TLS: what managed clusters ask for)."""
    sasl_mechanism: SaslMechanism | None = None
    """``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512`` or ``OAUTHBEARER``; needed with SASL_*."""
    sasl_username: str | None = None
    """The SASL user (PLAIN and SCRAM); on Confluent Cloud, the API key."""
    sasl_password: SecretStr | None = None
    """The SASL password (PLAIN and SCRAM); on Confluent Cloud, the API secret. Never logged."""
    sasl_oauth_token_provider: str | None = None
    """OAUTHBEARER: ``module:callable``, imported from this setting (never from the wire) and
    called once with no arguments; it returns an `aiokafka.abc.AbstractTokenProvider` (asked
    for a token on every new connection, so it can refresh) or a token string (used as is)."""
    ssl_cafile: Path | None = None
    """PEM file of the CA(s) that signed the brokers' certificates; unset: the system's CAs."""
    ssl_certfile: Path | None = None
    """PEM file of the client certificate (mutual TLS), with any intermediate certificates."""
    ssl_keyfile: Path | None = None
    """PEM file of the client certificate's private key (mutual TLS)."""
    ssl_key_password: SecretStr | None = None
    """Password of an encrypted `ssl_keyfile`. Never logged."""
    ssl_check_hostname: bool = True
    """Check that a broker's certificate names the host connected to. Turn off only for a
    cluster whose certificates name other hosts, and only on a trusted network."""

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol.endswith("SSL")
        if sasl and self.sasl_mechanism is None:
            raise ConfigurationError(
                f"security_protocol {self.security_protocol} needs a SASL mechanism: set {_ENV}SASL_MECHANISM "
                "to PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"
            )
        if not sasl:
            given = [n for n in ("sasl_mechanism", "sasl_username", "sasl_password") if getattr(self, n) is not None]
            if given:
                raise ConfigurationError(
                    f"{', '.join(_ENV + n.upper() for n in given)} set, but {_ENV}SECURITY_PROTOCOL is "
                    f"{self.security_protocol}: use SASL_SSL (or SASL_PLAINTEXT) to authenticate with SASL"
                )
        if sasl and self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            missing = [n for n in ("sasl_username", "sasl_password") if getattr(self, n) is None]
            if missing:
                raise ConfigurationError(
                    f"SASL mechanism {self.sasl_mechanism} needs {' and '.join(_ENV + n.upper() for n in missing)}"
                )
        if sasl and self.sasl_mechanism == "OAUTHBEARER" and not self.sasl_oauth_token_provider:
            raise ConfigurationError(
                f"SASL mechanism OAUTHBEARER needs {_ENV}SASL_OAUTH_TOKEN_PROVIDER (module:callable)"
            )
        if self.sasl_oauth_token_provider and ":" not in self.sasl_oauth_token_provider:
            raise ConfigurationError(
                f"{_ENV}SASL_OAUTH_TOKEN_PROVIDER={self.sasl_oauth_token_provider!r} is not 'module:callable'"
            )
        if not tls:
            given = [
                n
                for n in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password")
                if getattr(self, n) is not None
            ]
            if given:
                raise ConfigurationError(
                    f"{', '.join(_ENV + n.upper() for n in given)} set, but {_ENV}SECURITY_PROTOCOL is "
                    f"{self.security_protocol}: use SSL or SASL_SSL for TLS"
                )
        if (self.ssl_keyfile is not None or self.ssl_key_password is not None) and self.ssl_certfile is None:
            raise ConfigurationError(f"{_ENV}SSL_KEYFILE / SSL_KEY_PASSWORD need {_ENV}SSL_CERTFILE (mutual TLS)")
        return self

    @field_serializer("sasl_password", "ssl_key_password")
    def _dump_secret(self, value: SecretStr | None, info: SerializationInfo) -> Any:
        if value is None:
            return None
        if info.context and info.context.get(REVEAL_SECRETS):
            return value.get_secret_value()
        return str(value) if info.mode == "json" else value

    @property
    def uses_tls(self) -> bool:
        """Whether connections are TLS (SSL or SASL_SSL)."""
        return self.security_protocol.endswith("SSL")

    def environment(self) -> dict[str, str]:
        """These settings as ``TETHER_KAFKA__*`` variables, secrets in clear, for a child process.

        Only settings that differ from the defaults are included. Pass the result in a child's
        environment, never to a log.
        """
        out: dict[str, str] = {}
        data = self.model_dump(mode="json", exclude_defaults=True, context={REVEAL_SECRETS: True})
        for name, value in data.items():
            if value is None:
                continue
            out[_ENV + name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
        return out


class LogSettings(BaseSettings):
    """Which log to use and where (``TETHER_*``). The defaults run the embedded backend."""

    model_config = SettingsConfigDict(env_prefix="TETHER_", env_nested_delimiter="__", frozen=True, extra="ignore")

    backend: Literal["auto", "embedded", "kafka"] = "auto"
    """``auto`` picks Kafka when ``kafka.bootstrap_servers`` is set, else the embedded log."""
    namespace: str = "tether"
    """Prefix of every topic and group; namespaces never see each other's records."""
    partitions: int = Field(default=8, ge=1)
    """Partitions of the inbox, events and snapshots topics (fixed once created)."""
    data_dir: Path = Path(".tether")
    """Where the embedded log (and local worker state) lives."""
    embedded_fsync: bool = False
    """The embedded log's durability: False (SQLite ``synchronous=NORMAL`` in WAL mode) survives
    any crash of the process but may lose the last commits to a power loss or an OS crash; True
    (``synchronous=FULL``) syncs every commit to disk, slower."""
    kafka: KafkaSettings = KafkaSettings()
    """Broker connection, when the backend is Kafka."""

    def check_partitions(self, topic: str, found: int) -> None:
        """Refuse an explicit `partitions` (set, not defaulted) that `topic`'s `found` contradicts.

        Raises:
            PartitionCountError: the namespace exists with another partition count.
        """
        if "partitions" in self.model_fields_set and self.partitions != found:
            raise PartitionCountError(self.namespace, topic, self.partitions, found)

    @property
    def resolved_backend(self) -> Literal["embedded", "kafka"]:
        """The backend `auto` resolves to."""
        if self.backend == "auto":
            return "kafka" if self.kafka.bootstrap_servers else "embedded"
        return self.backend
