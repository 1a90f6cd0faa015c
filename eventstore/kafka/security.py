"""`KafkaSettings` as the options of every Kafka client, and security failures as typed errors.

Every producer, consumer and admin client Tether opens gets its connection options from
`client_kwargs`, so TLS and SASL settings apply to all of them alike: workers, clients, the
DLQ and saga commands, `tether sessions`, Ray worker actors and the bench. aiokafka and
kafka-python spell some options differently; `client_kwargs` speaks both.

`security_error` turns what the clients raise when the cluster refuses a connection (an
``ssl.SSLCertVerificationError``, aiokafka's ``SaslAuthenticationFailed``) into a
`KafkaSecurityError` whose message names the setting to fix. No message contains a secret.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import ssl
from pathlib import Path
from typing import Any, Literal

from aiokafka.abc import AbstractTokenProvider
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)

from ..errors import (
    ConfigurationError,
    KafkaAuthenticationError,
    KafkaAuthorizationError,
    KafkaSecurityError,
    KafkaTLSError,
)
from ..settings import KafkaSettings

ENV = "TETHER_KAFKA__"

Library = Literal["aiokafka", "kafka-python"]

UNTRUSTED = (
    "the certificate of {address} is not trusted ({reason}): set {env}SSL_CAFILE (ssl_cafile) to "
    "the PEM file of the CA that signed the broker's certificate"
)
HOSTNAME = (
    "the certificate of {address} does not name that host ({reason}): connect with a host name "
    "the certificate names in {env}BOOTSTRAP_SERVERS, or (only on a trusted network) set "
    "{env}SSL_CHECK_HOSTNAME=false"
)
HANDSHAKE = (
    "the TLS handshake with {address} failed ({reason}): check that {env}SECURITY_PROTOCOL "
    "({protocol}) is what that listener speaks; if the broker requires client certificates, set "
    "{env}SSL_CERTFILE and {env}SSL_KEYFILE"
)
NOT_TLS = (
    "{address} closed the connection during the first request: the listener probably expects "
    "TLS or SASL, but {env}SECURITY_PROTOCOL is {protocol}; set it to what the listener speaks "
    "(SSL, SASL_SSL or SASL_PLAINTEXT)"
)
BAD_CREDENTIALS = (
    "{env}SASL_PASSWORD / sasl_password rejected by the broker at {address} for user {user!r} "
    "(mechanism {mechanism}): check {env}SASL_USERNAME and {env}SASL_PASSWORD, and that the user "
    "has {mechanism} credentials on the cluster. The broker said: {reason}"
)
BAD_TOKEN = (
    "the OAUTHBEARER token from {env}SASL_OAUTH_TOKEN_PROVIDER ({provider}) was rejected by the "
    "broker at {address}: {reason}"
)
BAD_MECHANISM = (
    "the broker at {address} does not enable SASL mechanism {mechanism}: set {env}SASL_MECHANISM to one it enables"
)
DENIED = (
    "the broker denied {what} to user {user!r} ({reason}): grant the ACLs listed under "
    "'Secured clusters' in the README to this principal"
)


def client_kwargs(settings: KafkaSettings, library: Library = "aiokafka") -> dict[str, Any]:
    """The options of a Kafka client of `library` that connects as `settings` say.

    Includes the bootstrap servers, the request timeout and every TLS and SASL option; the
    caller adds what is particular to its client (client id, group, transactional id...).

    Args:
        settings: The cluster and how to connect to it.
        library: ``aiokafka`` (the runtime) or ``kafka-python`` (the local broker's probe).

    Returns:
        Keyword arguments for the client's constructor. They hold secrets: never log them.

    Raises:
        ConfigurationError: a certificate, key or token provider setting cannot be used; the
            message names the variable.
    """
    out: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "request_timeout_ms": settings.request_timeout_ms,
        "security_protocol": settings.security_protocol,
    }
    if settings.uses_tls:
        if library == "aiokafka":
            out["ssl_context"] = ssl_context(settings)
        else:
            _check_files(settings)
            out.update(
                ssl_check_hostname=settings.ssl_check_hostname,
                ssl_cafile=_str(settings.ssl_cafile),
                ssl_certfile=_str(settings.ssl_certfile),
                ssl_keyfile=_str(settings.ssl_keyfile),
                ssl_password=_secret(settings.ssl_key_password),
            )
    if settings.security_protocol.startswith("SASL_"):
        out["sasl_mechanism"] = settings.sasl_mechanism
        if settings.sasl_mechanism == "OAUTHBEARER":
            out["sasl_oauth_token_provider"] = token_provider(settings, library)
        else:
            out["sasl_plain_username"] = settings.sasl_username
            out["sasl_plain_password"] = _secret(settings.sasl_password)
    return out


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    """The TLS context of `settings`: their CA (else the system's), client certificate, checks.

    Raises:
        ConfigurationError: a file is missing or unreadable, or the key password is wrong.
    """
    _check_files(settings)
    try:
        context = ssl.create_default_context(cafile=_str(settings.ssl_cafile))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"{ENV}SSL_CAFILE={settings.ssl_cafile}: not a PEM file of CA certificates ({exc})"
        ) from exc
    context.check_hostname = settings.ssl_check_hostname
    if settings.ssl_certfile is not None:
        try:
            context.load_cert_chain(
                str(settings.ssl_certfile),
                _str(settings.ssl_keyfile),
                password=_secret(settings.ssl_key_password),
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"cannot load the client certificate {ENV}SSL_CERTFILE={settings.ssl_certfile} with "
                f"{ENV}SSL_KEYFILE={settings.ssl_keyfile}: {exc.__class__.__name__}; check that the "
                f"key matches the certificate and {ENV}SSL_KEY_PASSWORD if the key is encrypted"
            ) from None  # the ssl error may quote what it was given; keep the message ours
    return context


def token_provider(settings: KafkaSettings, library: Library = "aiokafka") -> Any:
    """The OAUTHBEARER token provider that ``sasl_oauth_token_provider`` names.

    The setting is ``module:callable``; the callable is imported and called once with no
    arguments. It returns an `aiokafka.abc.AbstractTokenProvider` (or, for kafka-python, an
    object with a synchronous ``token()``), or a token string that is used as it is.

    Raises:
        ConfigurationError: the setting cannot be imported, or the callable returns neither.
    """
    spec = settings.sasl_oauth_token_provider or ""
    name = f"{ENV}SASL_OAUTH_TOKEN_PROVIDER={spec!r}"
    module_name, _, attribute = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(f"{name} cannot be imported: {exc}") from exc
    if not callable(target):
        raise ConfigurationError(f"{name} is not callable")
    result = target()
    if isinstance(result, str):
        return _StaticToken(result) if library == "aiokafka" else _SyncStaticToken(result)
    if library == "aiokafka":
        if not isinstance(result, AbstractTokenProvider):
            raise ConfigurationError(
                f"{name} returned {type(result).__name__}; return an aiokafka.abc.AbstractTokenProvider or a str"
            )
        return result
    token = getattr(result, "token", None)
    if not callable(token) or inspect.iscoroutinefunction(token):
        raise ConfigurationError(
            f"{name} returned {type(result).__name__}; kafka-python needs an object with a synchronous token()"
        )
    return result


class _StaticToken(AbstractTokenProvider):  # type: ignore[misc]  # aiokafka.abc is untyped
    """A fixed token, for a hook that returns a string."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token

    def __repr__(self) -> str:
        return "_StaticToken(<hidden>)"


class _SyncStaticToken:
    """A fixed token for kafka-python (duck-typed like ``kafka.net.sasl.oauth.AbstractTokenProvider``)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token

    def extensions(self) -> dict[str, str]:
        return {}

    def __repr__(self) -> str:
        return "_SyncStaticToken(<hidden>)"


class RedactSaslFilter(logging.Filter):
    """Hides SASL authentication payloads in aiokafka's DEBUG request log.

    aiokafka logs every request it sends at DEBUG, and a SASL PLAIN request carries the
    password in clear (a SCRAM one, a proof that allows guessing it offline). Installed on the
    ``aiokafka.conn`` logger by `install_log_redaction`.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record; replace SASL request arguments by a placeholder."""
        if isinstance(record.args, tuple) and any(_is_sasl(a) for a in record.args):
            record.args = tuple("SaslAuthenticateRequest(<redacted>)" if _is_sasl(a) else a for a in record.args)
        return True


def _is_sasl(value: object) -> bool:
    return type(value).__name__.startswith("SaslAuthenticateRequest")


def install_log_redaction() -> None:
    """Put `RedactSaslFilter` on aiokafka's connection logger (once per process)."""
    logger = logging.getLogger("aiokafka.conn")
    if not any(isinstance(f, RedactSaslFilter) for f in logger.filters):
        logger.addFilter(RedactSaslFilter())


def security_error(exc: BaseException, settings: KafkaSettings, address: str) -> KafkaSecurityError | None:
    """The typed error for a connection to `address` that failed with `exc`, if it is a security one.

    Args:
        exc: What connecting raised (an ``ssl`` error, an aiokafka error).
        settings: The settings the connection used (to name the one to fix).
        address: ``host:port`` of the broker.

    Returns:
        A `KafkaSecurityError` naming the setting to fix, or None when `exc` says nothing
        about security (the broker is down, a timeout).
    """
    reason = _reason(exc)
    fmt: dict[str, Any] = {"address": address, "reason": reason, "env": ENV, "protocol": settings.security_protocol}
    if isinstance(exc, ssl.SSLCertVerificationError):
        mismatch = exc.verify_code == 62 or "mismatch" in reason.lower()
        if mismatch:
            return KafkaTLSError(HOSTNAME.format(**fmt), address=address, setting=f"{ENV}SSL_CHECK_HOSTNAME")
        return KafkaTLSError(UNTRUSTED.format(**fmt), address=address, setting=f"{ENV}SSL_CAFILE")
    if isinstance(exc, ssl.SSLError):
        return KafkaTLSError(HANDSHAKE.format(**fmt), address=address, setting=f"{ENV}SECURITY_PROTOCOL")
    if isinstance(exc, UnsupportedSaslMechanismError):
        fmt["mechanism"] = settings.sasl_mechanism
        return KafkaAuthenticationError(BAD_MECHANISM.format(**fmt), address=address, setting=f"{ENV}SASL_MECHANISM")
    if isinstance(exc, (SaslAuthenticationFailed, AuthenticationFailedError)):
        if settings.sasl_mechanism == "OAUTHBEARER":
            fmt["provider"] = settings.sasl_oauth_token_provider
            return KafkaAuthenticationError(
                BAD_TOKEN.format(**fmt), address=address, setting=f"{ENV}SASL_OAUTH_TOKEN_PROVIDER"
            )
        fmt.update(user=settings.sasl_username, mechanism=settings.sasl_mechanism)
        return KafkaAuthenticationError(BAD_CREDENTIALS.format(**fmt), address=address, setting=f"{ENV}SASL_PASSWORD")
    denied = _denied(exc)
    if denied is not None:
        return KafkaAuthorizationError(
            DENIED.format(what=denied, user=settings.sasl_username or "(certificate or anonymous)", reason=reason),
            address=address,
        )
    return None


def not_tls_hint(settings: KafkaSettings, address: str) -> KafkaSecurityError | None:
    """For a plain client whose first request the broker answered by closing: name the protocol."""
    if settings.uses_tls:
        return None
    fmt = {"address": address, "env": ENV, "protocol": settings.security_protocol}
    return KafkaTLSError(NOT_TLS.format(**fmt), address=address, setting=f"{ENV}SECURITY_PROTOCOL")


def authorization_error(exc: BaseException, settings: KafkaSettings) -> KafkaAuthorizationError | None:
    """The typed error for an ACL denial, or None when `exc` is not one."""
    denied = _denied(exc)
    if denied is None:
        return None
    user = settings.sasl_username or "(certificate or anonymous)"
    return KafkaAuthorizationError(DENIED.format(what=denied, user=user, reason=_reason(exc)))


def _denied(exc: BaseException) -> str | None:
    kinds: list[tuple[type[BaseException], str]] = [
        (TopicAuthorizationFailedError, "access to a topic"),
        (GroupAuthorizationFailedError, "access to a consumer group"),
        (TransactionalIdAuthorizationFailed, "use of a transactional id"),
        (ClusterAuthorizationFailedError, "a cluster operation"),
    ]
    for kind, what in kinds:
        if isinstance(exc, kind):
            return what
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return str(exc.verify_message)
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


def _check_files(settings: KafkaSettings) -> None:
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        path: Path | None = getattr(settings, name)
        if path is not None and not path.is_file():
            raise ConfigurationError(f"{ENV}{name.upper()}={path}: no such file")


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


async def probe(settings: KafkaSettings, address: str) -> BaseException | None:
    """Open one connection to `address` as `settings` say; return what failed, or None.

    The clients' own bootstrap logs the cause of a failed connection and raises a generic
    "Unable to bootstrap"; this connects once more, bounded by ``connect_timeout_ms``, to learn
    the cause.
    """
    from aiokafka.conn import create_conn

    host, _, port = address.rpartition(":")
    kwargs = client_kwargs(settings)
    options = {k: v for k, v in kwargs.items() if k != "bootstrap_servers"}
    try:
        conn = await asyncio.wait_for(
            create_conn(host, int(port), client_id=f"{settings.client_id}-probe", **options),
            settings.connect_timeout_ms / 1000,
        )
    except Exception as exc:  # noqa: BLE001 - the caller classifies it
        return exc
    conn.close()
    return None


def addresses(settings: KafkaSettings) -> list[str]:
    """The ``host:port`` entries of ``bootstrap_servers``."""
    return [a.strip() for a in (settings.bootstrap_servers or "").split(",") if a.strip()]
