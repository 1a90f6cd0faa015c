"""Large values by reference (claim check), from `blob_threshold_bytes` on.

A value whose msgpack encoding passes the threshold is written to the namespace's blob store
and its record carries the reference instead: ``pb`` in an inbox message (instead of ``p``),
``okb`` in a reply or a stream's end (instead of ``ok``), ``rb`` in a ``done`` entry (instead of
``r``), ``{"okb": ref}`` as a session's recorded reply (snapshots' ``rc``), ``evb`` in a ``done``
or ``sus`` entry for its events (``ev`` empty), ``sb`` in a snapshot for its state (``s`` nil). The blob is written
before the record: a crash in between leaves an unreferenced blob and no record, and the retry
writes the same content to the same address. Records without these keys read as before.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from eventstore.blob_stores import open_blob_store
from eventstore.blobs import BlobError, BlobStore
from eventstore.codec import pack, unpack

from ..settings import RuntimeSettings
from .entries import Delayed, Done, Entry, Queued, Step, Suspend, Unknown
from .inbox import RESERVED_HANDLERS, Message
from .snapshot import Snapshot

__all__ = [
    "LargeValues",
    "by_reference",
    "entry_in_hand",
    "events_by_reference",
    "load_value",
    "message_in_hand",
    "payload_of",
    "snapshot_in_hand",
    "with_events",
]


class LargeValues:
    """The blob store of a namespace's large values, and the size from which it is used."""

    __slots__ = ("store", "threshold")

    def __init__(self, store: BlobStore, threshold: int | None) -> None:
        self.store = store
        self.threshold = threshold
        """None: read references only, write every value into its record."""

    @classmethod
    def of(cls, settings: RuntimeSettings) -> LargeValues | None:
        """The blob store `settings` name (with its threshold, if any), or None."""
        location = settings.blob_location
        if location is None:
            return None
        return cls(open_blob_store(location), settings.blob_threshold_bytes)

    async def offload(self, plain: Any) -> str | None:  # noqa: ANN401 - plain data
        """Store `plain` and return its reference if its encoding is over the threshold, else None."""
        if self.threshold is None:
            return None
        packed = pack(plain)
        if len(packed) <= self.threshold:
            return None
        return await self.store.put(packed)

    async def load(self, ref: str, what: str) -> Any:  # noqa: ANN401 - plain data
        """The plain data stored as `ref` (`what` names it in errors).

        Raises:
            BlobError: the blob is missing, corrupt, or not msgpack.
        """
        data = await self.store.get(ref)
        try:
            return unpack(data)
        except Exception as exc:
            raise BlobError(f"{what}: blob {ref} is not a stored value: {exc}") from exc


async def load_value(values: LargeValues | None, ref: str, what: str) -> Any:  # noqa: ANN401 - plain data
    """`values.load(ref, what)`; raises `BlobError` when no blob store is configured."""
    if values is None:
        raise BlobError(
            f"{what} is in a blob store ({ref}), but no blob store is configured here: set "
            "TETHER_RUNTIME__BLOB_STORE (or BLOB_DIR) and TETHER_RUNTIME__BLOB_THRESHOLD_BYTES as the workers do"
        )
    return await values.load(ref, what)


async def by_reference(values: LargeValues, message: Message) -> Message:
    """`message` with its payload in the blob store if it is over the threshold, else itself.

    The runtime's own handlers (a state read, an awakeable's resolution) keep their payload.
    """
    if message.payload_blob is not None or message.handler in RESERVED_HANDLERS:
        return message
    ref = await values.offload(message.payload)
    return message if ref is None else message.model_copy(update={"payload": None, "payload_blob": ref})


async def payload_of(values: LargeValues | None, message: Message) -> Any:  # noqa: ANN401 - plain data
    """The payload of `message`, read from the blob store when the message carries a reference.

    Raises:
        BlobError: the blob is missing or corrupt, or no blob store is configured.
    """
    if message.payload_blob is None:
        return message.payload
    return await load_value(values, message.payload_blob, f"the payload of {message.session}.{message.handler}")


async def events_by_reference(values: LargeValues | None, events: list[Any]) -> tuple[list[Any], str | None]:
    """``(events, None)``, or ``([], ref)`` when the events are over the threshold (stored)."""
    if values is None or not events:
        return events, None
    ref = await values.offload(events)
    return (events, None) if ref is None else ([], ref)


EntryWithEvents = TypeVar("EntryWithEvents", bound=Done | Suspend)


async def with_events(values: LargeValues | None, entry: EntryWithEvents, session: str) -> EntryWithEvents:
    """`entry` with its events read from the blob store when it carries their reference.

    Raises:
        BlobError: the blob is missing, corrupt or not a list, or no blob store is configured.
    """
    if entry.events_blob is None:
        return entry
    events = await load_value(values, entry.events_blob, f"the events of {session} ({entry.message_id})")
    if not isinstance(events, list):
        raise BlobError(f"blob {entry.events_blob} of {session}'s events holds {type(events).__name__}, not a list")
    return dataclasses.replace(entry, events=events, events_blob=None)


async def entry_in_hand(values: LargeValues | None, entry: Entry | Unknown, session: str) -> Entry | Unknown:
    """`entry` with every value it keeps in the blob store read back, as if it had been in the record.

    A step's result (``rb``), a ``done`` entry's reply (``rb``) and events (``evb``), a ``sus``
    entry's events, and the payload (``pb``) of a waiting message. For readers that compare or
    show values (the test kit, `actors.testing.Replayer`); the result is never written.

    Raises:
        BlobError: a blob is missing or corrupt, or no blob store is configured.
    """
    if isinstance(entry, Step):
        if entry.blob is None:
            return entry
        result = await load_value(values, entry.blob, f"the result of step {entry.name!r} of {session}")
        return dataclasses.replace(entry, result=result, blob=None)
    if isinstance(entry, Done):
        entry = await with_events(values, entry, session)
        if entry.reply_blob is None or entry.error is not None:
            return entry
        reply = await load_value(values, entry.reply_blob, f"the reply of {session} ({entry.message_id})")
        return dataclasses.replace(entry, reply=reply, reply_blob=None)
    if isinstance(entry, Suspend):
        entry = await with_events(values, entry, session)
    if isinstance(entry, Suspend | Queued | Delayed) and entry.message.payload_blob is not None:
        return dataclasses.replace(entry, message=await message_in_hand(values, entry.message))
    return entry


async def message_in_hand(values: LargeValues | None, message: Message) -> Message:
    """`message` with its payload read from the blob store when it carries a reference, else itself.

    Raises:
        BlobError: the blob is missing or corrupt, or no blob store is configured.
    """
    if message.payload_blob is None:
        return message
    return message.model_copy(update={"payload": await payload_of(values, message), "payload_blob": None})


async def snapshot_in_hand(large: LargeValues | None, value: bytes, key: bytes) -> bytes:
    """A snapshots-topic value with its state in it.

    One whose state is in the blob store is read back and re-encoded whole (for the session's
    memory only; never written).
    """
    if b"\xa2sb" not in value:  # the key ``sb`` (cheap: most snapshots are not decoded here)
        return value
    snapshot = Snapshot.decode(value)
    if snapshot.state_blob is None:
        return value
    state = await load_value(large, snapshot.state_blob, f"the snapshot of {key.decode(errors='replace')}")
    return Snapshot(state, snapshot.version, snapshot.recent).encode()
