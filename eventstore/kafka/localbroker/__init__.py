"""The real Apache Kafka broker, run as a local JVM without Docker (`tether kafka up`)."""

from eventstore.kafka.localbroker.config import port_is_free
from eventstore.kafka.localbroker.errors import (
    BrokerError,
    BrokerSetupError,
    BrokerStartError,
    BrokerStopError,
)
from eventstore.kafka.localbroker.jars import kafka_version, resolve_jars
from eventstore.kafka.localbroker.manager import BrokerInfo, BrokerStatus, LocalBroker, log_tail
from eventstore.kafka.localbroker.tls import CertificateAuthority, SaslSslCredentials, make_ca, make_certificate

__all__ = [
    "BrokerError",
    "BrokerInfo",
    "BrokerSetupError",
    "BrokerStartError",
    "BrokerStatus",
    "BrokerStopError",
    "CertificateAuthority",
    "LocalBroker",
    "SaslSslCredentials",
    "kafka_version",
    "log_tail",
    "make_ca",
    "make_certificate",
    "port_is_free",
    "resolve_jars",
]
