"""Redaction of secrets in error messages and stack traces.

Every error text Tether writes somewhere a person reads it (log lines, dead-letter headers,
the error a caller gets, the `err` of a journal entry, a span's exception event) goes through
`redact` first. The default masks common secret shapes; `TETHER_RUNTIME__REDACT=module:attr`
names a function ``(str) -> str`` that replaces it (it can call `default_redact` itself).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

from eventstore.errors import ConfigurationError

Redactor = Callable[[str], str]
"""A function from a text to the same text with its secrets masked."""

MASK = "***"

_ASSIGNED = re.compile(
    r"(?i)\b((?:[a-z0-9]+[_-])*(?:api[_-]?key|apikey|password|passwd|pwd|secret|token|"
    r"access[_-]?key|private[_-]?key|credentials?))(['\"]?\s*[=:]\s*['\"]?)([^\s'\",;&}\]]+)"
)
"""``api_key=...``, ``password: ...``, ``"client_secret": "..."`` and their kin."""
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[a-z0-9\-._~+/]{8,}=*")
"""An ``Authorization`` header's credentials."""
_KEYS = re.compile(r"\b(sk|pk|rk)-(?:[a-z]+-)?[A-Za-z0-9_\-]{16,}|\bAKIA[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{30,}")
"""Provider keys: OpenAI/Anthropic/Stripe style ``sk-...``, AWS access key ids, GitHub tokens."""
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]+:)([^/\s@]+)@")
"""The password of ``scheme://user:password@host``."""


def default_redact(text: str) -> str:
    """`text` with assigned secrets, bearer tokens, provider keys and URL passwords masked."""
    if not text:
        return text
    text = _ASSIGNED.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _KEYS.sub(MASK, text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}@", text)


_current: Redactor = default_redact


def redact(text: str) -> str:
    """`text` through the installed redactor (the default one unless `install` replaced it).

    A redactor that raises masks the whole text: a bug in it must not leak the secret.
    """
    try:
        return _current(text)
    except Exception:
        return f"{MASK} (the redactor failed on this text)"


def install(redactor: Redactor | None) -> None:
    """Make `redactor` the one `redact` applies (None: back to `default_redact`)."""
    global _current
    _current = redactor if redactor is not None else default_redact


def load_redactor(spec: str | None) -> Redactor:
    """The function that ``module:attr`` names (`default_redact` for None or ``""``).

    Raises:
        ConfigurationError: `spec` is malformed, cannot be imported or is not callable.
    """
    if not spec:
        return default_redact
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"TETHER_RUNTIME__REDACT: expected MODULE:FUNCTION, got {spec!r}")
    try:
        target: object = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"TETHER_RUNTIME__REDACT: cannot load {spec!r}: {exc}") from exc
    if not callable(target):
        raise ConfigurationError(f"TETHER_RUNTIME__REDACT: {spec!r} is not a function")
    return target
