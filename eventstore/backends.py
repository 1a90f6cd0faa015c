"""The log backends by name: which class serves ``TETHER_BACKEND`` and how it is opened.

Both backends keep the contract of `eventstore.log.EventLog` and are opened the same way, from
the `LogSettings` that select them: ``embedded`` (`eventstore.embedded`, one SQLite file under
``data_dir``) and ``kafka`` (`eventstore.kafka`, loaded only when chosen, so the embedded
backend needs no Kafka client at import time). `open_log` is the one place that decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import ConfigurationError
from .log import EventLog
from .settings import LogSettings

__all__ = ["BACKENDS", "Backend", "open_log"]


@dataclass(frozen=True)
class Backend:
    """A backend: the module that holds it and how settings become a (not yet started) log."""

    name: str
    module: str
    """Where it lives (imported by `open`, on first use)."""
    open: Callable[[LogSettings], EventLog]


def _open_embedded(settings: LogSettings) -> EventLog:
    from .embedded import EmbeddedLog

    return EmbeddedLog(settings.data_dir / "log", fsync=settings.embedded_fsync)


def _open_kafka(settings: LogSettings) -> EventLog:
    if not settings.kafka.bootstrap_servers:
        raise ConfigurationError(
            "backend is 'kafka' but TETHER_KAFKA__BOOTSTRAP_SERVERS is not set; "
            "start a broker with `tether kafka up` and export its address"
        )
    from .kafka import KafkaLog

    return KafkaLog(settings.kafka)


BACKENDS: dict[str, Backend] = {
    "embedded": Backend("embedded", "eventstore.embedded", _open_embedded),
    "kafka": Backend("kafka", "eventstore.kafka", _open_kafka),
}
"""Every backend, by the name ``TETHER_BACKEND`` gives (``auto``: kafka when a bootstrap address
is set, else embedded)."""


def open_log(settings: LogSettings) -> EventLog:
    """The log that `settings` select (not yet started)."""
    return BACKENDS[settings.resolved_backend].open(settings)
