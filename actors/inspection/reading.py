"""A namespace's log opened for reading only: what every inspection command reads through.

Read-only commands (`tether sessions show|history`, `tether saga list|show`, `tether dlq
list|show|stats`) never write: no record, no topic, no consumer offset, not even an embedded
log file where there was none. A namespace that does not exist is an operator mistake (a typo in
``--namespace`` or ``--data-dir``) reported as `NamespaceNotFoundError`, not created.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from eventstore import EmbeddedLog, EventLog, TopicError, Topics, open_log

from ..errors import NamespaceNotFoundError
from ..settings import Settings

NO_NAMESPACE = (
    "namespace {namespace!r} has no {topic} topic{where}; check --namespace and the backend "
    "options (-b/--bootstrap-servers, --data-dir). Nothing was created"
)


def _where(log: EventLog) -> str:
    return f" in the embedded log at {log.path}" if isinstance(log, EmbeddedLog) else " on the broker"


@asynccontextmanager
async def read_only_log(settings: Settings) -> AsyncIterator[EventLog]:
    """The log of `settings`, started, for reads only; closed on exit.

    Raises:
        NamespaceNotFoundError: the embedded log does not exist (it is not created).
        LogUnavailableError: the broker cannot be reached.
    """
    log = open_log(settings)
    if isinstance(log, EmbeddedLog) and not log.path.exists():
        raise NamespaceNotFoundError(
            NO_NAMESPACE.format(namespace=settings.namespace, topic="events", where=_where(log))
        )
    await log.start()
    try:
        yield log
    finally:
        await log.close()


async def partitions_of(log: EventLog, topics: Topics, topic: str) -> int:
    """The partition count of one of the namespace's topics.

    Raises:
        NamespaceNotFoundError: the topic does not exist.
    """
    try:
        return await log.partition_count(topic)
    except TopicError:
        kind = topic.removeprefix(f"{topics.namespace}.")
        raise NamespaceNotFoundError(
            NO_NAMESPACE.format(namespace=topics.namespace, topic=kind, where=_where(log))
        ) from None
