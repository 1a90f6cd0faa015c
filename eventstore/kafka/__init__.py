"""The Kafka backend of the event log, and the local broker that `tether kafka up` runs."""

from .log import KafkaLog

__all__ = ["KafkaLog"]
