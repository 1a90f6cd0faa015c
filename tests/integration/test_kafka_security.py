"""Secured clusters (issue 13 section 1) on the real broker's SASL_SSL listener.

A worker and a client round-trip calls over SASL_SSL with SCRAM-SHA-512; a wrong password,
an untrusted CA and a plain client each fail within seconds with a typed error that names the
setting to fix; no secret appears in an error, a log record or a repr.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from harness.models import Add
from harness.ray_counter import Total, add, counter

from actors import Client, Settings, Worker
from eventstore import KafkaAuthenticationError, KafkaSettings, KafkaTLSError
from eventstore.kafka.localbroker import make_ca
from eventstore.kafka.localbroker.cli import kafka

if TYPE_CHECKING:
    from conftest import SecuredKafka

pytestmark = pytest.mark.kafka

FAST = 8.0
"""Seconds within which a refused connection must fail (the connect bound is 10 s by default)."""
WRONG_PASSWORD = "not-the-password-5f3a"


def _settings(kafka_settings: KafkaSettings, namespace: str, tmp_path: Path) -> Settings:
    return Settings(backend="kafka", namespace=namespace, partitions=2, data_dir=tmp_path, kafka=kafka_settings)


def _assert_no_secret(secret: str, caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    for record in caplog.records:
        rendered = record.getMessage() + (
            logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        )
        assert secret not in rendered, f"a log record of {record.name} shows a secret: {rendered[:300]}"
    for text in texts:
        assert secret not in text


async def test_a_worker_and_a_client_round_trip_over_sasl_ssl(
    sasl_ssl_kafka: SecuredKafka, namespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _capture_everything(caplog)
    settings = _settings(sasl_ssl_kafka.settings(), namespace, tmp_path)
    async with Worker([counter], settings), Client.connect(settings) as client:
        first = await client.call(add, "a", Add(n=2), timeout=60)
        second = await client.call(add, "a", Add(n=3), timeout=60)
    assert (first, second) == (Total(value=2, adds=1), Total(value=5, adds=2))
    password = sasl_ssl_kafka.credentials.password
    _assert_no_secret(password, caplog, repr(settings), str(settings), settings.model_dump_json())
    assert any("Authenticated as tether via SCRAM-SHA-512" in r.getMessage() for r in caplog.records)


async def test_a_wrong_password_fails_fast_with_a_typed_error_naming_the_setting(
    sasl_ssl_kafka: SecuredKafka, namespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _capture_everything(caplog)
    settings = _settings(sasl_ssl_kafka.settings(sasl_password=WRONG_PASSWORD), namespace, tmp_path)
    for start in (Client.connect(settings).start, Worker([counter], settings).start):
        began = time.monotonic()
        with pytest.raises(KafkaAuthenticationError) as caught:
            await start()
        assert time.monotonic() - began < FAST
        message = str(caught.value)
        assert "TETHER_KAFKA__SASL_PASSWORD" in message and "'tether'" in message, message
        assert caught.value.setting == "TETHER_KAFKA__SASL_PASSWORD"
        assert caught.value.retriable is False
        _assert_no_secret(WRONG_PASSWORD, caplog, message, repr(caught.value))
        _assert_no_secret(sasl_ssl_kafka.credentials.password, caplog, message)


async def test_an_untrusted_certificate_fails_fast_naming_ssl_cafile(
    sasl_ssl_kafka: SecuredKafka, namespace: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _capture_everything(caplog)
    other = make_ca(tmp_path / "other-ca", "Unrelated CA")
    settings = _settings(sasl_ssl_kafka.settings(ssl_cafile=other.cert), namespace, tmp_path)
    began = time.monotonic()
    with pytest.raises(KafkaTLSError) as caught:
        async with Client.connect(settings):
            pass
    assert time.monotonic() - began < FAST
    message = str(caught.value)
    assert "TETHER_KAFKA__SSL_CAFILE" in message and sasl_ssl_kafka.bootstrap in message, message
    assert caught.value.setting == "TETHER_KAFKA__SSL_CAFILE"
    _assert_no_secret(sasl_ssl_kafka.credentials.password, caplog, message)


async def test_a_plaintext_client_on_the_sasl_ssl_port_is_told_to_set_the_protocol(
    sasl_ssl_kafka: SecuredKafka, namespace: str, tmp_path: Path
) -> None:
    settings = _settings(KafkaSettings(bootstrap_servers=sasl_ssl_kafka.bootstrap), namespace, tmp_path)
    began = time.monotonic()
    with pytest.raises(KafkaTLSError, match="TETHER_KAFKA__SECURITY_PROTOCOL"):
        await Client.connect(settings).start()
    assert time.monotonic() - began < FAST


def test_kafka_status_shows_how_to_connect_but_not_the_password(sasl_ssl_kafka: SecuredKafka) -> None:
    result = CliRunner().invoke(kafka, ["status", "--json", "--data-dir", str(sasl_ssl_kafka.local.data_dir)])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["sasl_ssl_bootstrap"] == sasl_ssl_kafka.bootstrap
    assert Path(status["sasl_ssl_password_file"]).read_text().strip() == sasl_ssl_kafka.credentials.password
    assert sasl_ssl_kafka.credentials.password not in result.output
    assert sasl_ssl_kafka.credentials.password not in repr(sasl_ssl_kafka.credentials)


def _capture_everything(caplog: pytest.LogCaptureFixture) -> None:
    """DEBUG from every logger, the Kafka clients' included: an earlier test in the same process
    may have run `configure_logging`, which sets them to ERROR (and the checks for leaked
    secrets would then read nothing)."""
    caplog.set_level(logging.DEBUG)
    for name in ("aiokafka", "kafka"):
        caplog.set_level(logging.DEBUG, logger=name)
