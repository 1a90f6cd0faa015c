"""Step results by reference (claim check), from `blob_threshold_bytes` on.

Such a result is stored in the blob store and its step entry carries the reference (``rb``)
instead of the value.

The live result is still decoded from the very data that was stored, as a replay decodes it. A
step whose blob was written but whose entry never committed (a crash in between) runs again:
its blob, the same content, is the same file, so nothing is duplicated and no entry points to
a half-written value.
"""

from __future__ import annotations

from typing import Any

from eventstore.blob_stores import open_blob_store
from eventstore.blobs import BlobError, BlobStore
from eventstore.codec import pack, unpack

from ..errors import TerminalError
from ..settings import RuntimeSettings


class StepBlobs:
    """The blob store of a partition's step results, and the size from which it is used."""

    __slots__ = ("store", "threshold")

    def __init__(self, store: BlobStore, threshold: int) -> None:
        self.store = store
        self.threshold = threshold

    @classmethod
    def of(cls, settings: RuntimeSettings) -> StepBlobs | None:
        """The step blobs `settings` configure, or None (every result in its record)."""
        location = settings.blob_location
        if settings.blob_threshold_bytes is None or location is None:
            return None
        return cls(open_blob_store(location), settings.blob_threshold_bytes)

    async def offload(self, plain: Any) -> str | None:  # noqa: ANN401 - a step's journal form
        """Store `plain` and return its reference if it is over the threshold, else None."""
        packed = pack(plain)
        if len(packed) <= self.threshold:
            return None
        return await self.store.put(packed)

    async def load(self, step: str, ref: str) -> Any:  # noqa: ANN401 - a step's journal form
        """The journal form of step `step`'s result stored as `ref`.

        Raises:
            TerminalError: the blob is missing or corrupt (the step's entry stays in the log).
        """
        try:
            return unpack(await self.store.get(ref))
        except BlobError as exc:
            raise TerminalError(f"step {step!r}: its journaled result cannot be read: {exc}") from exc
