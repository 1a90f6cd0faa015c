"""Replies and message payloads by reference (claim check), from `blob_threshold_bytes` on.

A value whose msgpack encoding passes the threshold is written to the namespace's blob store
and its record carries the reference instead: ``pb`` in an inbox message (instead of ``p``),
``okb`` in a reply or a stream's end (instead of ``ok``), ``rb`` in a ``done`` entry (instead of
``r``), ``{"okb": ref}`` as a session's recorded reply (snapshots' ``rc``). The blob is written
before the record: a crash in between leaves an unreferenced blob and no record, and the retry
writes the same content to the same address. Records without these keys read as before.
"""

from __future__ import annotations

from typing import Any

from eventstore.blob_stores import open_blob_store
from eventstore.blobs import BlobError, BlobStore
from eventstore.codec import pack, unpack

from ..settings import RuntimeSettings
from .inbox import RESERVED_HANDLERS, Message

__all__ = ["LargeValues", "by_reference", "load_value", "payload_of"]


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
