"""The public API of the dead-letter tools: `DeadLetters`, which the CLI is a thin layer over.

Example::

    async with DeadLetters(Settings()) as dlq:
        for row in await dlq.stats():
            print(row.count, row.error_class, row.message)
        report = await dlq.replay(where=Filter(handlers=("ask",), statuses=("pending",)))
        assert report.ok
"""

from __future__ import annotations

import builtins
import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from actors import Client, Settings
from eventstore import EmbeddedLog, EventLog, Topics, open_log
from eventstore.lifecycle import AsyncResource

from .discard import discard as discard_letters
from .errors import InvalidFilterError, NoDeadLetterTopicError, NoMatchError
from .index import index_path as dlq_index_path
from .inspector import DEFAULT_GROUP_BY, Filter, GroupField, Inspector, StatsRow, group_stats
from .records import DeadLetter
from .replayer import CHUNK, Replayer, Transform, unpark
from .reports import Progress, Report
from .status import StatusStore

log = logging.getLogger(__name__)


class DeadLetters(AsyncResource):
    """Inspect, replay and discard the dead letters of one namespace.

    Use as ``async with DeadLetters(settings) as dlq``. Reads go through the event log
    (`eventstore.open_log`); a replay writes inbox messages as the `actors` client does, each
    chunk with its status records in one transaction; statuses live on the namespace's control
    topic, so every operator sees the same ones.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        log: EventLog | None = None,
        chunk_size: int = CHUNK,
        topic: str | None = None,
        index: bool = True,
    ) -> None:
        """Dead letters of the namespace of `settings`.

        Args:
            settings: Where the log is and which namespace (default: the ``TETHER_*`` variables).
            log: An open log to use instead of one from `settings`.
            chunk_size: Replays per transaction.
            topic: Read dead letters from this topic instead of the namespace's (one that Spring
                Kafka or Kafka Connect wrote); their ids are then ``{topic}:{partition}-{offset}``
                and their statuses live on the namespace's control topic as usual.
            index: Keep a local index of the topic (under ``{data_dir}/dlq-index``) for `page`
                and `stats`; False scans the topic each time.
        """
        self.settings = settings or Settings()
        self.topics = Topics(self.settings.namespace)
        self._log = log or open_log(self.settings)
        self._owns_log = log is None
        self._client: Client | None = None
        self.statuses = StatusStore(self._log, self.topics, partitions=self.settings.partitions)
        index_path = None
        if index:
            if isinstance(self._log, EmbeddedLog):
                identity = f"embedded:{self._log.path.resolve()}"
            else:
                identity = f"kafka:{self.settings.kafka.bootstrap_servers}"
            index_path = dlq_index_path(self.settings.data_dir, identity, topic or self.topics.dlq)
        self.inspector = Inspector(self._log, self.topics, self.statuses, topic=topic, index_path=index_path)
        self._replayer = Replayer(self._log, self.settings, self.statuses, chunk_size=chunk_size)

    async def start(self) -> None:
        """Connect to the log.

        Raises:
            LogUnavailableError: the broker (or the data directory) cannot be reached.
            NoDeadLetterTopicError: there is no embedded log at all (none is created).
        """
        if self._owns_log:
            if isinstance(self._log, EmbeddedLog) and not self._log.path.exists():
                # A typo in --data-dir: reading must not leave a new, empty log behind.
                raise NoDeadLetterTopicError(self.topics.dlq, namespace=self.topics.namespace)
            await self._log.start()

    async def close(self) -> None:
        """Close the client (if a discard started one), the replay writer and the log; idempotent."""
        await self._replayer.close()
        self.inspector.close()
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
        if self._owns_log:
            await self._log.close()

    async def _start_client(self) -> Client:
        if self._client is None:
            client = Client(self.settings, log=self._log)
            await client.start()
            self._client = client
        return self._client

    # -- reading ---------------------------------------------------------------------------
    async def all(self) -> builtins.list[DeadLetter]:
        """Every dead letter of the namespace, in log order, with its status.

        Raises:
            NoDeadLetterTopicError: the namespace has no dead-letter topic.
        """
        return await self.inspector.all()

    async def list(self, where: Filter | None = None) -> builtins.list[DeadLetter]:
        """The dead letters `where` selects (all of them without a filter), in log order.

        Raises:
            NoMatchError: a non-empty filter matched nothing.
            NoDeadLetterTopicError: the namespace has no dead-letter topic.
        """
        return await self.select(where=where)

    async def page(self, where: Filter | None = None, *, limit: int = 100) -> tuple[builtins.list[DeadLetter], int]:
        """The latest `limit` dead letters `where` selects (0: all) in log order, and their count.

        With a `since` time only that part of the topic is read; otherwise the local index
        (caught up first) says which to read.

        Raises:
            NoMatchError: a non-empty filter matched nothing.
        """
        where = where or Filter()
        if where.since_ms is None and self.inspector.index is not None:
            try:
                letters, total = await self.inspector.page(where, limit)
            except sqlite3.Error as exc:
                self._index_failed(exc)
            else:
                if total == 0 and not where.empty:
                    _, everything = await self.inspector.page(Filter(), 1)
                    raise NoMatchError(where.describe(), total=everything, namespace=self.topics.namespace)
                return letters, total
        letters = await self.select(where=where)
        return (letters[-limit:] if limit > 0 else letters), len(letters)

    def _index_failed(self, exc: sqlite3.Error) -> None:
        """The index cannot be used (locked by another command for too long, damaged): scan."""
        index = self.inspector.index
        path = index.path if index is not None else "?"
        log.warning("dead-letter index %s unusable (%s); reading the topic instead (delete it to rebuild)", path, exc)
        if index is not None:
            index.close()
        self.inspector.index = None

    async def stats(
        self, where: Filter | None = None, *, by: Sequence[GroupField] = DEFAULT_GROUP_BY
    ) -> builtins.list[StatsRow]:
        """Counts, first and last seen, grouped by `by` (default: error class and handler).

        Raises:
            NoMatchError: a non-empty filter matched nothing.
        """
        where = where or Filter()
        if where.since_ms is None and self.inspector.index is not None:
            try:
                rows = await self.inspector.indexed_stats(where, by)
            except sqlite3.Error as exc:
                self._index_failed(exc)
            else:
                if not rows and not where.empty:
                    _, everything = await self.inspector.page(Filter(), 1)
                    raise NoMatchError(where.describe(), total=everything, namespace=self.topics.namespace)
                return rows
        return group_stats(await self.select(where=where), by)

    async def show(self, dead_letter_id: str) -> DeadLetter:
        """One dead letter with its decoded payload, headers, stack trace and status.

        Raises:
            UnknownDeadLetterError: no dead letter has that id.
        """
        return (await self.inspector.get_many([dead_letter_id]))[0]

    async def select(self, ids: Sequence[str] | None = None, where: Filter | None = None) -> builtins.list[DeadLetter]:
        """The dead letters named by `ids` (if given) that `where` selects (if given).

        Raises:
            UnknownDeadLetterError: an id names no dead letter.
            NoMatchError: a non-empty filter matched nothing.
        """
        if ids:
            letters = await self.inspector.get_many(ids)
        elif where is not None and where.since_ms is not None:
            letters = await self.inspector.since(where.since_ms)  # only the range the time needs
        else:
            letters = await self.inspector.all()
        if where is None or where.empty:
            return letters
        selected = [letter for letter in letters if where.matches(letter)]
        if not selected:
            raise NoMatchError(where.describe(), total=len(letters), namespace=self.topics.namespace)
        return selected

    async def payload(self, letter: DeadLetter) -> Any:  # noqa: ANN401 - plain data
        """The payload of `letter` as a replay transform gets it, read from the blob store if need be.

        A message whose payload is in the blob store (``pb``) is read from the store the
        settings name (``TETHER_RUNTIME__BLOB_STORE``); a poison record gives its raw value.

        Raises:
            BlobError: the blob is missing or corrupt, or no blob store is configured.
            OSError: the blob store's directory cannot be read.
        """
        return await self._replayer.payload(letter)

    # -- acting ----------------------------------------------------------------------------
    async def replay(
        self,
        ids: Sequence[str] | None = None,
        where: Filter | None = None,
        *,
        dry_run: bool = False,
        rate: float | None = None,
        transform: str | Transform | Callable[..., Any] | None = None,
        include_discarded: bool = False,
        by: str | None = None,
        progress: Progress | None = None,
    ) -> Report:
        """Send dead letters back to their inbox: the ids given, or those `where` selects, or all.

        Exactly once and resumable: each chunk's inbox messages (ids ``dlq-replay:{id}``) and
        their ``replayed`` statuses commit in one transaction, so a dead letter is sent if and
        only if it is recorded as replayed, whatever interrupts the replay; running it again
        skips what is replayed. A replay fences older replays of the namespace before it reads
        the statuses. See `dlq.replayer` for the details.

        Args:
            ids: Dead-letter ids; None selects by `where` (no filter: every dead letter).
            where: A filter on the dead letters (with `ids`: on those).
            dry_run: Report what would be sent (transform included); send and record nothing.
            rate: At most this many sends per second.
            transform: ``MODULE:FUNC``, a `Transform`, or a function applied to each payload.
            include_discarded: Replay discarded dead letters too.
            by: Who replays, for the audit trail (default ``user@host``).
            progress: Called after each item with its result and the number of items.

        Raises:
            UnknownDeadLetterError, NoMatchError: the selection is wrong.
            TransformLoadError: the transform cannot be imported.
            LogUnavailableError: the log became unreachable (run again to resume).
            ReplayTakenOverError: a newer replay of the namespace fenced this one.
        """
        if isinstance(transform, str):
            transform = Transform.load(transform)
        elif transform is not None and not isinstance(transform, Transform):
            transform = Transform(transform)
        loaded: Transform | None = transform  # narrowed above; a closure would see the declared type

        async def run() -> Report:
            return await self._replayer.replay(
                await self.select(ids, where),
                dry_run=dry_run,
                rate=rate,
                transform=loaded,
                include_discarded=include_discarded,
                by=by,
                progress=progress,
            )

        if dry_run:
            return await run()
        # Fence older replayers first: the statuses read next include all they committed.
        async with self._replayer.fenced():
            return await run()

    async def discard(
        self,
        ids: Sequence[str] | None = None,
        where: Filter | None = None,
        *,
        reason: str,
        by: str | None = None,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> Report:
        """Resolve dead letters without replaying them; an audit record keeps who, when, why.

        Nothing is deleted: the dead letters stay on the dead-letter topic with status
        ``discarded``. Dead letters already replayed or discarded are skipped.

        Raises:
            UnknownDeadLetterError, NoMatchError: the selection is wrong.
            InvalidFilterError: `reason` is empty.
        """
        if not reason or not reason.strip():
            raise InvalidFilterError("a discard needs a reason (--reason TEXT) for the audit trail")
        letters = await self.select(ids, where)
        report = await discard_letters(letters, self.statuses, reason=reason, by=by, dry_run=dry_run, progress=progress)
        discarded = {item.id for item in report.items if item.outcome == "discarded"}
        if any(letter.park_awakeable and letter.id in discarded for letter in letters):
            await unpark(await self._start_client(), [letter for letter in letters if letter.id in discarded])
        return report
