"""Settings of the event log; entry points compose them (env prefix ``TETHER_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    kafka: KafkaSettings = KafkaSettings()
    """Broker connection, when the backend is Kafka."""

    @property
    def resolved_backend(self) -> Literal["embedded", "kafka"]:
        """The backend `auto` resolves to."""
        if self.backend == "auto":
            return "kafka" if self.kafka.bootstrap_servers else "embedded"
        return self.backend
