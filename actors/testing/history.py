"""A session's exported history: its inbox messages and events-topic entries, as a JSON document.

`tether sessions export TYPE KEY > history.json` writes it and `Replayer` reads it. It is a
stored format (histories are checked into repositories as golden files), so it is versioned:

```json
{"format": "tether.session-history", "version": 1, "object": "agent", "key": "s1",
 "records": [{"topic": "inbox", "offset": 0, "kind": "msg", "value": "<base64 of the record's bytes>"},
             {"topic": "events", "offset": 0, "kind": "step", "value": "..."}]}
```

Each record keeps the exact bytes of the log record (base64), so a history is read with the
same decoders, and upcasters, as the log itself; ``kind`` is only a hint for a reader.
Records are in log order per topic. Nothing is unpickled: values are msgpack, decoded into
typed entries (`actors.protocol`).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from eventstore import EventLog, Topics, partition_for

from ..errors import SessionNotFoundError
from ..inspection.reading import partitions_of, read_only_log
from ..protocol import entries
from ..protocol.entries import Entry, Unknown
from ..protocol.inbox import Message, session_key
from ..settings import Settings
from .errors import HistoryFormatError

FORMAT = "tether.session-history"
VERSION = 1
"""The version this code writes; it reads every version up to it."""

Topic = Literal["inbox", "events"]


@dataclass(frozen=True)
class HistoryRecord:
    """One log record of the session."""

    topic: Topic
    offset: int
    value: bytes

    @property
    def kind(self) -> str:
        """``msg`` for an inbox message, else the events-topic entry's kind."""
        if self.topic == "inbox":
            return "msg"
        return self.entry().kind

    def entry(self) -> Entry | Unknown:
        """The events-topic entry (an `Unknown` for kinds this code does not know)."""
        return entries.read(self.value)

    def message(self) -> Message:
        """The inbox message (raises `DecodeError` if it is not one)."""
        return Message.decode(self.value)


@dataclass(frozen=True)
class SessionHistory:
    """What a replay needs of one session: its messages and its events-topic entries, in log order."""

    object_name: str
    key: str
    records: list[HistoryRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The document (version `VERSION`)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "object": self.object_name,
            "key": self.key,
            "records": [
                {
                    "topic": r.topic,
                    "offset": r.offset,
                    "kind": r.kind,
                    "value": base64.b64encode(r.value).decode("ascii"),
                }
                for r in self.records
            ],
        }

    def dumps(self) -> str:
        """The document as JSON text (stable: the same history gives the same bytes)."""
        return json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, doc: Any) -> SessionHistory:  # noqa: ANN401 - parsed JSON
        """Read a document of any version up to `VERSION`.

        Raises:
            HistoryFormatError: not a session history, a newer version, or a malformed record.
        """
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise HistoryFormatError(f"not a session history: expected a JSON object with format {FORMAT!r}")
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= VERSION:
            raise HistoryFormatError(
                f"session history version {version!r} is not one this Tether reads (1 to {VERSION}); upgrade Tether"
            )
        name, key, raw = doc.get("object"), doc.get("key"), doc.get("records")
        if not isinstance(name, str) or not isinstance(key, str) or not isinstance(raw, list):
            raise HistoryFormatError("a session history needs a string object, a string key and a list of records")
        records = []
        for n, item in enumerate(raw):
            if not isinstance(item, dict) or item.get("topic") not in ("inbox", "events"):
                raise HistoryFormatError(f"record {n}: expected an object with topic 'inbox' or 'events'")
            offset, value = item.get("offset"), item.get("value")
            if not isinstance(offset, int) or isinstance(offset, bool) or not isinstance(value, str):
                raise HistoryFormatError(f"record {n}: expected an integer offset and a base64 value")
            try:
                data = base64.b64decode(value.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError) as exc:
                raise HistoryFormatError(f"record {n}: its value is not base64: {exc}") from exc
            records.append(HistoryRecord(item["topic"], offset, data))
        return cls(name, key, records)

    @classmethod
    def loads(cls, text: str | bytes) -> SessionHistory:
        """Read a document from JSON text."""
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HistoryFormatError(f"not JSON: {exc}") from exc
        return cls.from_json(doc)

    @classmethod
    def load(cls, path: str | Path) -> SessionHistory:
        """Read a document from a file."""
        return cls.loads(Path(path).read_bytes())


async def read_history(log: EventLog, topics: Topics, object_name: str, key: str) -> SessionHistory:
    """The session's records from `log`: its inbox messages and events entries, each in offset order."""
    wanted = session_key(object_name, key)
    partition = partition_for(wanted, await log.partition_count(topics.events))
    records: list[HistoryRecord] = []
    topic: Topic
    for topic, name in (("inbox", topics.inbox), ("events", topics.events)):
        async for record in log.read(name, partition):
            if record.key == wanted and record.value is not None:
                records.append(HistoryRecord(topic, record.offset, record.value))
    return SessionHistory(object_name, key, records)


async def export_session(settings: Settings, object_name: str, key: str) -> SessionHistory:
    """The history of one session read from the namespace `settings` name, writing nothing.

    Raises:
        NamespaceNotFoundError: the namespace has no topics.
        SessionNotFoundError: the session has no message and no entry.
    """
    topics = Topics(settings.namespace)
    others: set[str] = set()
    async with read_only_log(settings) as log:
        partitions = await partitions_of(log, topics, topics.events)
        history = await read_history(log, topics, object_name, key)
        if not history.records:
            partition = partition_for(session_key(object_name, key), partitions)
            async for record in log.read(topics.events, partition):
                if record.key is not None and b"/" in record.key:
                    others.add(record.key.decode(errors="replace").partition("/")[0])
    if not history.records:
        raise SessionNotFoundError(
            f"no session {object_name}/{key} in namespace {settings.namespace!r}: no message and no "
            f"journal entry of it. Session types with records on its partition: {', '.join(sorted(others)) or 'none'}. "
            "Check TYPE and KEY (and --namespace); nothing was written"
        )
    return history


async def export_history(log: EventLog, topics: Topics, object_name: str, key: str) -> dict[str, Any]:
    """The session's history document (see the module docstring)."""
    return (await read_history(log, topics, object_name, key)).to_json()
