"""The Kafka backend of the event log, and the local broker that `tether kafka up` runs."""

from .log import KafkaLog
from .security import client_kwargs

__all__ = ["KafkaLog", "client_kwargs"]
