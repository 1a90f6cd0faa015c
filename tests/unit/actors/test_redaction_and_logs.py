"""Redaction of error texts and the JSON log format (with the invocation's context)."""

from __future__ import annotations

import json
import logging
import sys
import types

import pytest
from click.testing import CliRunner

from actors.cli.main import build
from actors.errors import error_payload
from actors.hosting.logs import JsonFormatter, RedactingFormatter
from actors.messages import Message
from actors.observability import redaction
from actors.observability.scope import InvocationLogFilter, InvocationScope
from actors.protocol.deadletter import DeadLetterHeaders
from actors.runtime.deadletters import Failure, dead_letter
from eventstore import Record
from eventstore.errors import ConfigurationError

KEY = "sk-proj-Zx81QmN0pLk2Jr7Tv9Wb3Yc5"


@pytest.fixture(autouse=True)
def default_redactor() -> object:
    redaction.install(None)
    yield
    redaction.install(None)


@pytest.mark.parametrize(
    "text",
    [
        "request failed: api_key=abc123secretvalue&q=1",
        "login with password: hunter2hunter2",
        '{"client_secret": "s3cr3t-s3cr3t", "ok": 1}',
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
        f"openai rejected key {KEY}",
        "postgres://app:pa55word@db.internal:5432/x",
        "AWS AKIAIOSFODNN7EXAMPLE denied",
    ],
)
def test_the_default_redactor_masks_common_secret_shapes(text: str) -> None:
    masked = redaction.redact(text)
    assert "***" in masked
    for secret in ("abc123secretvalue", "hunter2hunter2", "s3cr3t-s3cr3t", "eyJhbGci", KEY, "pa55word", "AKIAIOSF"):
        assert secret not in masked


def test_ordinary_text_is_left_alone() -> None:
    text = "step 'llm:plan' failed after 3 attempt(s): TimeoutError('read timed out') at tokens=1200"
    assert redaction.redact(text) == text  # a token count is no token
    assert redaction.redact("the key k1 of session agent/s-42") == "the key k1 of session agent/s-42"


def test_a_configured_redactor_replaces_the_default_and_a_failing_one_masks_everything() -> None:
    module = types.ModuleType("custom_redaction_for_test")
    module.upper = lambda text: redaction.default_redact(text).replace("internal", "[host]")  # type: ignore[attr-defined]
    module.broken = lambda text: 1 / 0  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        redaction.install(redaction.load_redactor("custom_redaction_for_test:upper"))
        assert redaction.redact(f"internal {KEY}") == "[host] ***"
        redaction.install(redaction.load_redactor("custom_redaction_for_test:broken"))
        assert KEY not in redaction.redact(KEY) and "redactor failed" in redaction.redact(KEY)
    finally:
        del sys.modules[module.__name__]
    for spec in ("nocolon", "no_such_module_xyz:f", "json:no_such_attr", "json:__doc__"):
        with pytest.raises(ConfigurationError, match="TETHER_RUNTIME__REDACT"):
            redaction.load_redactor(spec)


def _failure() -> BaseException:
    try:
        try:
            raise ConnectionError(f"refused api_key={KEY}")
        except ConnectionError as inner:
            raise RuntimeError(f"llm failed with {KEY}") from inner
    except RuntimeError as exc:
        return exc


def test_caller_errors_and_dead_letter_headers_are_redacted() -> None:
    exc = _failure()
    assert KEY not in json.dumps(error_payload(exc))
    source = Record("ns.inbox", 0, 3, b"a/k", b"\x80", (), 1)
    letter = dead_letter(source, Failure(exc, "terminal"), dlq_topic="ns.dlq", group="ns-workers")
    headers = DeadLetterHeaders.decode(dict(letter.headers).get)
    assert KEY not in headers.exception_message and KEY not in headers.stacktrace
    assert "ConnectionError" in headers.stacktrace  # the trace itself is kept
    assert all(KEY.encode() not in value for _, value in letter.headers)


def _record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    record = logging.LogRecord("tether.handler", logging.WARNING, __file__, 1, message, args, None)
    if exc is not None:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    return record


def test_json_lines_carry_the_invocation_context_and_no_secret() -> None:
    message = Message(id="m-1", o="agent", k="s-42", h="ask", p=None, ts=1)
    scope = InvocationScope("ns", message, object_label="agent", handler_label="ask")
    with scope:
        scope.attempt = 2
        record = _record("calling with Bearer %s", "abcdefgh12345678", exc=_failure())
        InvocationLogFilter().filter(record)
    outside = _record("no invocation here")
    InvocationLogFilter().filter(outside)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    out = json.loads(line)
    assert out["namespace"] == "ns" and out["object"] == "agent" and out["key"] == "s-42"
    assert out["handler"] == "ask" and out["invocation_id"] == message.invocation_id and out["attempt"] == 2
    assert out["level"] == "WARNING" and out["logger"] == "tether.handler"
    assert out["message"] == "calling with Bearer ***"
    assert "ConnectionError" in out["exc"] and KEY not in line and "abcdefgh12345678" not in line
    assert "invocation_id" not in json.loads(JsonFormatter().format(outside))
    text = RedactingFormatter("%(message)s").format(_record("key %s", KEY, exc=_failure()))
    assert KEY not in text and "RuntimeError" in text


@pytest.mark.parametrize("command", [["serve"], ["sessions", "show"], ["dlq", "list"], ["saga", "list"]])
def test_every_command_takes_log_format(command: list[str]) -> None:
    result = CliRunner().invoke(build(), [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--log-format [text|json]" in result.output
    if command == ["serve"]:
        assert "--metrics-port" in result.output
