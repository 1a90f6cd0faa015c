"""Everything Tether writes to its topics, as typed records with one encode and one decode each.

- `inbox`: `Message` (inbox topic), the ids derived from it, the reserved handler names;
- `entries`: the events-topic entries (`Done`, `Step`, `Suspend`, `Queued`, `Delayed`,
  `Completion`), and how operator tools read them (`read`, `OpenWaits`);
- `snapshot`: `Snapshot` (snapshots topic, per session);
- `checkpoint`: `Checkpoint` (snapshots topic, `CHECKPOINT_KEY`);
- `replies`: `Reply` (replies topic);
- `deadletter`: `DeadLetterHeaders` (dead-letter topic; the value is the original record's);
- `streams`: `StreamChunk`, `StreamEnd` (streams topic: what handlers stream, and its end).

Wire keys are short and stable, names in code descriptive. Golden bytes in
``tests/unit/actors/golden_formats.py`` pin every kind, as every release wrote it.
"""

from .checkpoint import CHECKPOINT_KEY, Checkpoint, Journal
from .entries import (
    FORMAT_VERSION,
    KINDS,
    Completion,
    Delayed,
    Done,
    Entry,
    Queued,
    Step,
    Suspend,
    Unknown,
    WaitEntry,
)
from .inbox import RESERVED_HANDLERS, RESOLVE_HANDLER, STATE_HANDLER, Message, invocation_id, session_key
from .replies import Reply
from .snapshot import SNAPSHOT_VERSION_HEADER, Remembered, Snapshot
from .streams import StreamChunk, StreamEnd, decode_stream_record

__all__ = [
    "CHECKPOINT_KEY",
    "Checkpoint",
    "Completion",
    "Delayed",
    "Done",
    "Entry",
    "FORMAT_VERSION",
    "Journal",
    "KINDS",
    "Message",
    "Queued",
    "RESERVED_HANDLERS",
    "RESOLVE_HANDLER",
    "Remembered",
    "Reply",
    "SNAPSHOT_VERSION_HEADER",
    "STATE_HANDLER",
    "Snapshot",
    "Step",
    "StreamChunk",
    "StreamEnd",
    "Suspend",
    "Unknown",
    "WaitEntry",
    "decode_stream_record",
    "invocation_id",
    "session_key",
]
