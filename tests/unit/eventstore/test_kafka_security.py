"""TLS and SASL settings: environment, validation, secrets, client options, typed errors."""

from __future__ import annotations

import logging
import shutil
import ssl
import warnings
from pathlib import Path

import pytest
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import SaslAuthenticationFailed, TopicAuthorizationFailedError

from actors import Settings
from eventstore import (
    ConfigurationError,
    KafkaAuthenticationError,
    KafkaAuthorizationError,
    KafkaSettings,
    KafkaTLSError,
    LogSettings,
)
from eventstore.kafka.localbroker import make_ca, make_certificate
from eventstore.kafka.localbroker.config import BrokerPaths, BrokerState, broker_properties
from eventstore.kafka.security import (
    RedactSaslFilter,
    client_kwargs,
    security_error,
    token_provider,
)
from eventstore.settings import REVEAL_SECRETS

SECRET = "s3cr3t-Pa55"
KEY_SECRET = "k3y-Pa55"


class Provider(AbstractTokenProvider):  # type: ignore[misc]  # aiokafka.abc is untyped
    async def token(self) -> str:
        return "jwt-from-provider"


def string_token() -> str:
    return "jwt-string"


def provider() -> Provider:
    return Provider()


def not_a_provider() -> int:
    return 7


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca(folder, "Test CA")
    cert, key = make_certificate(ca, folder, "client", client=True)
    return {"ca": ca.cert, "cert": cert, "key": key}


def _sasl(**kw: object) -> KafkaSettings:
    values: dict[str, object] = {
        "bootstrap_servers": "broker:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "alice",
        "sasl_password": SECRET,
    }
    values.update(kw)
    return KafkaSettings.model_validate(values)


def test_settings_come_from_tether_kafka_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {
        "BOOTSTRAP_SERVERS": "b1:9093,b2:9093",
        "SECURITY_PROTOCOL": "SASL_SSL",
        "SASL_MECHANISM": "PLAIN",
        "SASL_USERNAME": "api-key",
        "SASL_PASSWORD": SECRET,
        "SSL_CAFILE": str(tmp_path / "ca.pem"),
        "SSL_CHECK_HOSTNAME": "false",
        "CONNECT_TIMEOUT_MS": "3000",
    }.items():
        monkeypatch.setenv(f"TETHER_KAFKA__{name}", value)
    kafka = Settings().kafka
    assert kafka.security_protocol == "SASL_SSL" and kafka.sasl_mechanism == "PLAIN"
    assert kafka.sasl_username == "api-key"
    assert kafka.sasl_password is not None and kafka.sasl_password.get_secret_value() == SECRET
    assert kafka.ssl_cafile == tmp_path / "ca.pem"
    assert kafka.ssl_check_hostname is False and kafka.connect_timeout_ms == 3000


def test_defaults_are_plaintext_with_hostname_checks_on() -> None:
    kafka = KafkaSettings(bootstrap_servers="b:9092")
    assert kafka.security_protocol == "PLAINTEXT" and kafka.ssl_check_hostname is True
    assert client_kwargs(kafka) == {
        "bootstrap_servers": "b:9092",
        "request_timeout_ms": 30_000,
        "security_protocol": "PLAINTEXT",
    }


def test_secrets_never_show_in_repr_str_or_json(pki: dict[str, Path]) -> None:
    kafka = _sasl(ssl_certfile=pki["cert"], ssl_keyfile=pki["key"], ssl_key_password=KEY_SECRET)
    settings = LogSettings(kafka=kafka)
    for text in (repr(kafka), str(kafka), repr(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert SECRET not in text and KEY_SECRET not in text


def test_secrets_travel_only_when_asked_for() -> None:
    settings = Settings(backend="kafka", kafka=_sasl())
    plain = settings.model_dump(mode="json")
    assert plain["kafka"]["sasl_password"] == "**********"
    data = settings.model_dump(mode="json", context={REVEAL_SECRETS: True})
    restored = Settings.model_validate(data)  # what a Ray worker actor does with it
    assert restored.kafka.sasl_password is not None
    assert restored.kafka.sasl_password.get_secret_value() == SECRET
    env = settings.kafka.environment()
    assert env["TETHER_KAFKA__SASL_PASSWORD"] == SECRET
    assert env["TETHER_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert "TETHER_KAFKA__CLIENT_ID" not in env  # defaults are left out


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"security_protocol": "SASL_SSL"}, "TETHER_KAFKA__SASL_MECHANISM"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256"}, "TETHER_KAFKA__SASL_USERNAME"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
            "TETHER_KAFKA__SASL_PASSWORD",
        ),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"}, "TETHER_KAFKA__SASL_OAUTH_TOKEN_PROVIDER"),
        ({"sasl_username": "u", "sasl_password": "p"}, "TETHER_KAFKA__SECURITY_PROTOCOL"),
        ({"ssl_cafile": "/ca.pem"}, "TETHER_KAFKA__SSL_CAFILE"),
        ({"security_protocol": "SSL", "ssl_keyfile": "/k.pem"}, "TETHER_KAFKA__SSL_CERTFILE"),
    ],
)
def test_settings_that_cannot_work_name_the_variable(values: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigurationError, match=names):
        KafkaSettings.model_validate({"bootstrap_servers": "b:1", **values})


def test_aiokafka_options_for_sasl_ssl(pki: dict[str, Path]) -> None:
    kwargs = client_kwargs(_sasl(ssl_cafile=pki["ca"]))
    context = kwargs.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True
    assert kwargs == {
        "bootstrap_servers": "broker:9093",
        "request_timeout_ms": 30_000,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": SECRET,
    }


async def test_aiokafka_accepts_the_options(pki: dict[str, Path]) -> None:
    for kafka in (
        _sasl(ssl_cafile=pki["ca"]),
        _sasl(sasl_mechanism="PLAIN"),
        _sasl(security_protocol="SASL_PLAINTEXT"),
        KafkaSettings(
            bootstrap_servers="b:1", security_protocol="SSL", ssl_certfile=pki["cert"], ssl_keyfile=pki["key"]
        ),
        _sasl(sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=f"{__name__}:provider"),
    ):
        admin = AIOKafkaAdminClient(**client_kwargs(kafka))  # validates the combination; connects on start()
        await admin.close()


def test_kafka_python_options_for_mutual_tls(pki: dict[str, Path]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # kafka-python's own import-time calls
        from kafka.admin.client import KafkaAdminClient

    kafka = KafkaSettings(
        bootstrap_servers="b:9093",
        security_protocol="SSL",
        ssl_cafile=pki["ca"],
        ssl_certfile=pki["cert"],
        ssl_keyfile=pki["key"],
        ssl_key_password=KEY_SECRET,
        ssl_check_hostname=False,
    )
    kwargs = client_kwargs(kafka, "kafka-python")
    assert kwargs["ssl_cafile"] == str(pki["ca"]) and kwargs["ssl_certfile"] == str(pki["cert"])
    assert kwargs["ssl_keyfile"] == str(pki["key"]) and kwargs["ssl_password"] == KEY_SECRET
    assert kwargs["ssl_check_hostname"] is False
    assert set(kwargs) <= set(KafkaAdminClient.DEFAULT_CONFIG)
    sasl = client_kwargs(_sasl(), "kafka-python")
    assert sasl["sasl_plain_username"] == "alice" and sasl["sasl_plain_password"] == SECRET
    assert set(sasl) <= set(KafkaAdminClient.DEFAULT_CONFIG)


def test_the_client_certificate_loads(pki: dict[str, Path]) -> None:
    kafka = KafkaSettings(
        bootstrap_servers="b:1", security_protocol="SSL", ssl_certfile=pki["cert"], ssl_keyfile=pki["key"]
    )
    assert isinstance(client_kwargs(kafka)["ssl_context"], ssl.SSLContext)
    wrong = kafka.model_copy(update={"ssl_keyfile": pki["ca"]})
    with pytest.raises(ConfigurationError, match="TETHER_KAFKA__SSL_KEYFILE"):
        client_kwargs(wrong)


def test_a_missing_ca_file_names_the_variable(tmp_path: Path) -> None:
    kafka = _sasl(ssl_cafile=tmp_path / "nope.pem")
    with pytest.raises(ConfigurationError, match="TETHER_KAFKA__SSL_CAFILE=.*no such file"):
        client_kwargs(kafka)


async def test_the_token_provider_hook() -> None:
    static = token_provider(_sasl(sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=f"{__name__}:string_token"))
    assert isinstance(static, AbstractTokenProvider) and await static.token() == "jwt-string"
    assert "jwt-string" not in repr(static)
    given = token_provider(_sasl(sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=f"{__name__}:provider"))
    assert await given.token() == "jwt-from-provider"
    sync = token_provider(
        _sasl(sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=f"{__name__}:string_token"), "kafka-python"
    )
    assert sync.token() == "jwt-string"
    for spec, match in ((f"{__name__}:missing", "cannot be imported"), (f"{__name__}:not_a_provider", "returned int")):
        with pytest.raises(ConfigurationError, match=match):
            token_provider(_sasl(sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=spec))
    with pytest.raises(ConfigurationError, match="module:callable"):
        _sasl(sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider="no_colon")


def test_security_failures_become_typed_errors_naming_the_setting() -> None:
    kafka = _sasl()
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_code, untrusted.verify_message = 20, "unable to get local issuer certificate"
    error = security_error(untrusted, kafka, "b:9093")
    assert isinstance(error, KafkaTLSError) and "TETHER_KAFKA__SSL_CAFILE" in str(error) and "b:9093" in str(error)
    mismatch = ssl.SSLCertVerificationError(1, "certificate verify failed")
    mismatch.verify_code, mismatch.verify_message = 62, "Hostname mismatch, certificate is not valid for 'b'."
    error = security_error(mismatch, kafka, "b:9093")
    assert isinstance(error, KafkaTLSError) and error.setting == "TETHER_KAFKA__SSL_CHECK_HOSTNAME"
    refused = security_error(SaslAuthenticationFailed("invalid credentials"), kafka, "b:9093")
    assert isinstance(refused, KafkaAuthenticationError)
    assert "TETHER_KAFKA__SASL_PASSWORD" in str(refused) and "'alice'" in str(refused)
    assert SECRET not in str(refused) and not refused.retriable
    denied = security_error(TopicAuthorizationFailedError(), kafka, "b:9093")
    assert isinstance(denied, KafkaAuthorizationError) and "ACL" in str(denied)
    assert security_error(ConnectionRefusedError(), kafka, "b:9093") is None


def test_aiokafkas_debug_log_of_sasl_requests_is_redacted() -> None:
    class SaslAuthenticateRequest_v1:  # noqa: N801 - named as aiokafka names its request structs
        def __repr__(self) -> str:
            return f"SaslAuthenticateRequest_v1(sasl_auth_bytes=b'\\x00alice\\x00{SECRET}')"

    record = logging.LogRecord(
        "aiokafka.conn", logging.DEBUG, "conn.py", 1, "Request %d: %s", (3, SaslAuthenticateRequest_v1()), None
    )
    assert RedactSaslFilter().filter(record)
    assert SECRET not in record.getMessage() and "<redacted>" in record.getMessage()


def test_broker_properties_of_the_sasl_ssl_listener(tmp_path: Path) -> None:
    state = BrokerState(
        cluster_id="x" * 22, port=19092, controller_port=19093, kafka_version="4.3.1", sasl_ssl_port=19094
    )
    props = broker_properties(state, BrokerPaths(tmp_path), sasl_ssl={"sasl.enabled.mechanisms": "SCRAM-SHA-512"})
    assert "SASL_SSL://127.0.0.1:19094" in props["listeners"]
    assert props["advertised.listeners"] == props["listeners"]
    assert "SASL_SSL:SASL_SSL" in props["listener.security.protocol.map"]
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    state.save(tmp_path / "state.json")
    assert BrokerState.load(tmp_path / "state.json") == state
    plain = BrokerState(cluster_id="x" * 22, port=19092, controller_port=19093, kafka_version="4.3.1")
    assert "SASL_SSL" not in broker_properties(plain, BrokerPaths(tmp_path), sasl_ssl={"a": "b"})["listeners"]
