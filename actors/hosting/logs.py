"""Logging set-up for the CLI and workers only; the library itself never adds handlers."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Literal

from ..observability.redaction import redact
from ..observability.scope import InvocationLogFilter

CLIENT_LOGGERS = ("aiokafka", "kafka")
"""Loggers of the Kafka clients: during a broker outage they log hundreds of lines a second."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the invocation's context, exception.

    The context (``namespace``, ``object``, ``key``, ``handler``, ``invocation_id``, ``attempt``,
    ``trace_id``) is there when an invocation's task logs (see `InvocationLogFilter`). Message and
    exception text are redacted.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        context = getattr(record, "tether", None)
        if isinstance(context, dict):
            out.update(context)
        else:
            for key in ("session", "handler", "invocation"):
                if hasattr(record, key):
                    out[key] = getattr(record, key)
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


class RedactingFormatter(logging.Formatter):
    """The text format, with secrets masked in the message and the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, redacted."""
        return redact(super().format(record))


class OutageFilter(logging.Filter):
    """Turns a Kafka client's flood of connection errors into one line per outage and a summary.

    The first warning or error of a client logger while the broker is unreachable becomes
    "broker unreachable since HH:MM:SS, retrying"; the same message again (by its template) is
    let through at most once per `window` seconds, with the count of the ones it stood for.
    Tether's own loggers pass untouched.
    """

    def __init__(self, window: float = 60.0, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}
        self.outage_since: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether `record` is written (it may be rewritten to carry a summary)."""
        if not record.name.startswith(CLIENT_LOGGERS) or record.levelno < logging.WARNING:
            return True
        now = self._clock()
        key = (record.name, str(record.msg))
        first, suppressed = self._seen.get(key, (None, 0))
        if first is not None and now - first < self.window:
            self._seen[key] = (first, suppressed + 1)
            return False
        self._seen[key] = (now, 0)
        if self.outage_since is None:
            self.outage_since = time.time()
            since = time.strftime("%H:%M:%S", time.localtime(self.outage_since))
            record.msg = f"broker unreachable since {since}, retrying ({record.getMessage()})"
            record.args = ()
        elif suppressed:
            record.msg = f"{record.getMessage()} (and {suppressed} more like it in the last {self.window:.0f} s)"
            record.args = ()
        record.exc_info = None  # the traceback of a connection error says nothing new
        record.exc_text = None
        return True

    def recovered(self) -> None:
        """The broker answers again: the next client error starts a new outage."""
        self.outage_since = None
        self._seen.clear()


_INSTALLED: list[OutageFilter] = []


def broker_answered() -> None:
    """Called when the broker confirmed something (a commit): an outage being logged is over."""
    for installed in _INSTALLED:
        if installed.outage_since is not None:
            logging.getLogger("actors.hosting.worker").warning(
                "broker reachable again after %.0f s", time.time() - installed.outage_since
            )
            installed.recovered()


LogFormat = Literal["text", "json"]


def configure_logging(verbose: int = 0, *, json_lines: bool = False, log_format: LogFormat | None = None) -> None:
    """Log to stderr: INFO with `verbose >= 1`, DEBUG with 2; aiokafka stays at WARNING.

    `log_format` ``json`` (or `json_lines`) writes one JSON object per line (`JsonFormatter`).
    """
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    if json_lines or log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    outage = OutageFilter()
    handler.addFilter(outage)
    handler.addFilter(InvocationLogFilter())
    _INSTALLED[:] = [outage]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    clients = logging.ERROR if verbose < 2 else logging.INFO if verbose == 2 else logging.DEBUG  # -vvv: all
    logging.getLogger("aiokafka").setLevel(clients)
    logging.getLogger("kafka").setLevel(clients)
