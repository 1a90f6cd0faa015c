"""The invocation a task is running: for log records, its span and its outcome's metrics.

The partition processor enters an `InvocationScope` around each run of an invocation. While it
is entered, `current` returns it in that task (and in the tasks it starts), so log records carry
the namespace, object, key, handler, invocation id, attempt and trace id, and the run's span is
the parent of its steps' spans and of the messages it sends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from . import tracing
from .metrics import METRICS

if TYPE_CHECKING:
    from ..protocol.inbox import Message

_CURRENT: ContextVar[InvocationScope | None] = ContextVar("tether_invocation", default=None)


def current() -> InvocationScope | None:
    """The invocation the running task belongs to, if any."""
    return _CURRENT.get()


def set_outcome(outcome: str, error: BaseException | None = None) -> None:
    """Record how the current invocation ends (no-op outside one)."""
    scope = _CURRENT.get()
    if scope is not None:
        scope.outcome = outcome
        if error is not None:
            scope.error = error


class InvocationScope:
    """One run of one invocation: its log context, span and outcome."""

    __slots__ = (
        "namespace",
        "message",
        "object_label",
        "handler_label",
        "attempt",
        "outcome",
        "error",
        "cost",
        "_started",
        "_token",
        "_span",
        "woken_by",
    )

    def __init__(
        self,
        namespace: str,
        message: Message,
        *,
        object_label: str,
        handler_label: str,
        woken_by: str | None = None,
    ) -> None:
        self.namespace = namespace
        self.message = message
        self.object_label = object_label
        """The object as a metric label (``unknown`` if it is not served here)."""
        self.handler_label = handler_label
        self.attempt = 1
        self.outcome: str | None = None
        """Set by the path the invocation ends on; ``interrupted`` if it ends by an exception."""
        self.error: BaseException | None = None
        self.cost = 0.0
        self._started = 0.0
        self._token: Token[InvocationScope | None] | None = None
        self._span: tracing.SpanScope | None = None
        self.woken_by = woken_by
        """The ``traceparent`` of whoever resumed this run (the resolver of the awakeable it
        waited on): its span links to that span, so the resolver's trace leads here."""

    @property
    def trace_id(self) -> str | None:
        """The trace this run belongs to (None without tracing)."""
        return tracing.trace_id_of(self._span.span) if self._span is not None else None

    def __enter__(self) -> InvocationScope:
        self._token = _CURRENT.set(self)
        if tracing.enabled():
            m = self.message
            parent = tracing.parent_of(m.trace_parent)
            if parent is not None and tracing.unsampled_parent(parent):
                self._span = tracing.SpanScope.adopt(parent)
            else:
                self._span = self._invocation_span(parent)
        self._started = time.perf_counter()
        return self

    def _invocation_span(self, parent: Context | None) -> tracing.SpanScope:
        m = self.message
        link = tracing.link_to(self.woken_by, {"tether.link": "resumed by"})
        return tracing.SpanScope(
            f"{m.object}.{m.handler}",
            kind=SpanKind.CONSUMER,
            parent=parent,
            links=[link] if link is not None else None,
            attributes={
                "tether.namespace": self.namespace,
                "tether.object": m.object,
                "tether.key": m.key,
                "tether.handler": m.handler,
                "tether.invocation_id": m.invocation_id,
                "tether.message_id": m.id,
            },
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and self.outcome is None:
            self.outcome = "interrupted"
            if not isinstance(exc, asyncio.CancelledError):
                self.error = exc
        outcome = self.outcome or "ok"
        if METRICS.enabled:
            METRICS.invocation(self.object_label, self.handler_label, outcome, time.perf_counter() - self._started)
            if self.cost:
                METRICS.charged(self.object_label, self.cost)
        if self._span is not None:
            attributes: dict[str, Any] = {"tether.outcome": outcome, "tether.attempt": self.attempt}
            if self.cost:
                attributes["tether.cost"] = self.cost
            self._span.end(self.error, attributes)
            self._span = None
        if self._token is not None:
            _CURRENT.reset(self._token)
            self._token = None


class InvocationLogFilter(logging.Filter):
    """Adds the current invocation's fields to every record (``tether`` attribute, a dict)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always True; sets ``record.tether`` when a task of an invocation logs."""
        scope = _CURRENT.get()
        if scope is not None:
            m = scope.message
            fields: dict[str, Any] = {
                "namespace": scope.namespace,
                "object": m.object,
                "key": m.key,
                "handler": m.handler,
                "invocation_id": m.invocation_id,
                "attempt": scope.attempt,
            }
            trace_id = scope.trace_id
            if trace_id is not None:
                fields["trace_id"] = trace_id
            record.tether = fields
        return True
