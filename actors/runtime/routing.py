"""Which handler an inbox message names, and the observability scope of running it."""

from __future__ import annotations

from typing import Any, TypeVar

from ..definitions import Handler, VirtualObject
from ..errors import InvocationError, UnknownHandlerError, UnknownObjectError
from ..observability.metrics import UNKNOWN
from ..observability.scope import InvocationScope
from ..protocol.inbox import RESERVED_HANDLERS, STATE_HANDLER, Message

Objects = dict[str, VirtualObject[Any]]
"""The session types a worker serves, by name."""

E = TypeVar("E", bound=InvocationError)


def handler_for(objects: Objects, message: Message) -> Handler[Any, Any, Any] | InvocationError | None:
    """The handler `message` names; None for the state read; the caller's error if there is none."""
    obj = objects.get(message.object)
    if obj is None:
        known = ", ".join(sorted(objects)) or "none"
        text = f"no session type {message.object!r} is served here (known: {known})"
        return caller_error(UnknownObjectError, text, message)
    if message.handler == STATE_HANDLER:
        return None
    handler = obj.handlers.get(message.handler)
    if handler is None:
        text = f"{message.object} has no handler {message.handler!r} (known: {', '.join(sorted(obj.handlers))})"
        return caller_error(UnknownHandlerError, text, message)
    return handler


def caller_error(kind: type[E], text: str, message: Message) -> E:
    """A caller's mistake about `message`, typed and naming the object, key and handler."""
    return kind(text, error_type=kind.__name__, object_name=message.object, key=message.key, handler=message.handler)


def scope_for(namespace: str, objects: Objects, message: Message, *, woken_by: str | None = None) -> InvocationScope:
    """The log context, span and outcome metrics of one run of `message`'s invocation.

    `woken_by`: the ``traceparent`` of the resolution that resumed it (its span links there).
    """
    obj = objects.get(message.object)
    if obj is None:
        object_label = handler_label = UNKNOWN
    else:
        object_label = message.object
        known = message.handler in obj.handlers or message.handler in RESERVED_HANDLERS
        handler_label = message.handler if known else UNKNOWN
    return InvocationScope(
        namespace, message, object_label=object_label, handler_label=handler_label, woken_by=woken_by
    )
