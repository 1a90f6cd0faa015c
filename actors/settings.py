"""Settings of the session runtime (``TETHER_RUNTIME__*``), composed with the log's."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from eventstore.settings import LogSettings


class RuntimeSettings(BaseModel):
    """How partition processors behave."""

    model_config = ConfigDict(frozen=True)

    checkpoint_every: int = Field(default=5000, ge=1)
    """Events-topic records between checkpoints (snapshots of changed sessions); bounds restore.
    A checkpoint is also due after `checkpoint_every_events` or `checkpoint_every_bytes`."""
    checkpoint_every_events: int = Field(default=20_000, ge=1)
    """Events emitted by handlers (counted in the records that carry them) between checkpoints:
    a session whose invocations emit many events each gets checkpoints too."""
    checkpoint_every_bytes: int = Field(default=16 * 2**20, ge=1024)
    """Bytes of events-topic records between checkpoints (16 MiB): bounds what a restore reads
    whatever the size of the records."""
    restore_buffer_bytes: int = Field(default=64 * 2**20, ge=2**16)
    """Bytes of events a restore holds unfolded (kept encoded, to fold on a session's first
    message) across a partition's sessions (64 MiB). Past it, the sessions holding the most are
    folded into their states at once, so a restore's memory stays near this bound plus the
    sessions' states, whatever the shape of the events. Events of session types this worker
    does not serve cannot be folded here and are kept (a warning says so)."""
    max_resident_sessions: int = Field(default=10_000, ge=1)
    """Decoded sessions kept per partition; idle ones beyond it keep only their snapshot."""
    idempotency_retention: float = Field(default=86_400.0, gt=0)
    """Seconds a finished message id (an idempotency key) is remembered per session: a retry
    within it applies once and gets the recorded reply; after it, the same id is a new message.
    Kept in the session's snapshot, so it survives restarts and rebalances."""
    max_backlog: int = Field(default=20_000, ge=1)
    """Fetched-but-unfinished messages per worker before fetching pauses (backpressure)."""
    max_message_bytes: int = Field(default=1_000_000, ge=1024)
    """Largest inbox message accepted; larger ones are refused by the client, dead-lettered
    (category ``oversize``) by the worker. Keep it below the broker's ``message.max.bytes``."""
    offset_commit_interval: float = 0.5
    """Seconds between inbox offset commits (each done entry also records its offset)."""
    commit_interval: float = Field(default=0.0, ge=0, le=1.0)
    """The least time, in seconds, from one transaction of a partition to the next (Kafka
    Streams' ``commit.interval.ms`` under exactly-once): what finishes meanwhile waits and
    shares the next transaction, so each carries more and costs the broker and the worker less
    per call, at up to this much more latency per reply and per journaled step. 0 (the
    default): the next transaction begins as soon as the last one ended (group commit alone)."""
    fetch_timeout: float = 0.1
    """Seconds a fetch waits for new inbox records."""
    check_state_writes: bool = True
    """Fail an invocation whose handler wrote `ctx.state` directly (a change in no event, lost on
    restart) with `StateMutationError`. Costs one dump of the state per read; turn off only for
    handlers known to treat state as read-only."""
    dead_letter_connect_headers: bool = False
    """Also write Kafka Connect's ``__connect.errors.*`` headers on dead letters (beside Spring
    Kafka's ``kafka_dlt-*``, always written), for tools made for Connect's dead-letter queues."""
    blob_threshold_bytes: int | None = Field(default=None, ge=1)
    """Step results, replies and messages (payloads of `send`, `call`, `ctx.send`) whose encoded
    size passes this many bytes are stored in the blob store (`blob_store` or `blob_dir`) and
    the record carries a reference (claim check); None (the default) keeps every value in its
    record, under `max_message_bytes`."""
    blob_dir: Path | None = None
    """The blob store's directory (every worker and client of the namespace must reach it)."""
    blob_store: str | None = None
    """Where blobs go, as a location: a directory, or ``s3://bucket/prefix`` (needs
    ``tether[s3]``; boto3's usual configuration, ``AWS_ENDPOINT_URL`` for S3-compatible
    servers). Takes precedence over `blob_dir`; one of them is required with
    `blob_threshold_bytes`."""
    trace_unsampled: bool | Literal["auto"] = "auto"
    """Whether an invocation whose message's trace was not sampled gets a span of its own.

    True: it does (the tracer provider's sampler decides, as for any span). False: it starts no
    span and runs in its sender's context (its sends carry the sender's unsampled
    ``traceparent``, its logs the trace id): 7-9 us less per unsampled invocation (measured in a
    loop), but a sampler that records children of unsampled parents gets none of them. "auto"
    (the default): False when the provider's sampler is the SDK's ``ParentBased`` dropping
    children of unsampled remote parents (its default, so the SDK's default sampler and every
    ``parentbased_*`` one), whose traces are then the same either way; True otherwise."""
    stall_warning: float = Field(default=1.0, gt=0)
    """Seconds the worker's event loop may be blocked (by handler code that does not await)
    before the worker logs a warning: while it is blocked, the group's heartbeats stop too."""

    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Serve Prometheus metrics on ``http://0.0.0.0:PORT/metrics`` (``tether serve --metrics-port``);
    None: no endpoint and nothing recorded. Ray workers listen on PORT + their index."""
    metrics_interval: float = Field(default=2.0, gt=0)
    """Seconds between refreshes of the gauges (sessions, partitions, consumer lag)."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per log line, with the invocation's context (``--log-format``)."""
    redact: str | None = None
    """``module:function`` from text to text that masks secrets in error messages and stack
    traces (logs, dead-letter headers, caller errors); default: `default_redact`."""

    @field_validator("blob_dir", "blob_store", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value  # TETHER_RUNTIME__BLOB_DIR= names no directory (not ".")

    @model_validator(mode="after")
    def _blob_store_named(self) -> RuntimeSettings:
        if self.blob_threshold_bytes is not None and self.blob_location is None:
            raise ValueError(
                "blob_threshold_bytes needs blob_store (TETHER_RUNTIME__BLOB_STORE) or blob_dir "
                "(TETHER_RUNTIME__BLOB_DIR): where blobs go"
            )
        if self.blob_threshold_bytes is not None and self.blob_threshold_bytes > self.max_message_bytes // 2:
            raise ValueError(
                f"blob_threshold_bytes ({self.blob_threshold_bytes}) must be at most half of max_message_bytes "
                f"({self.max_message_bytes}), so a result under it always fits in its record"
            )
        return self

    @property
    def blob_location(self) -> str | None:
        """Where blobs go (`blob_store`, else `blob_dir`), or None."""
        if self.blob_store:
            return self.blob_store
        return str(self.blob_dir) if self.blob_dir is not None else None

    @property
    def retention_ms(self) -> int:
        """`idempotency_retention` in milliseconds."""
        return int(self.idempotency_retention * 1000)


class Settings(LogSettings):
    """Everything a worker or client needs (``TETHER_*`` environment variables)."""

    model_config = SettingsConfigDict(env_prefix="TETHER_", env_nested_delimiter="__", frozen=True, extra="ignore")

    runtime: RuntimeSettings = RuntimeSettings()
    """Partition processor behaviour."""
