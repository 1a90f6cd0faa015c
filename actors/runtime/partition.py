"""What each part of a partition processor is given: the partition's state and its writing side.

`Partition` holds the session types and settings, the state (`PartitionState`), where records
go (`outputs`), the batch they commit in (`commits`), the partition's streams and the blob
store of large values; the parts use
each through its own public methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..definitions import VirtualObject
from ..protocol.large_values import LargeValues
from ..settings import RuntimeSettings
from .commits import GroupCommit
from .outputs import PartitionOutputs
from .partition_state import PartitionState
from .streaming import StreamTracker


@dataclass(frozen=True, eq=False)
class Partition:
    """What every part of a partition processor works with."""

    objects: dict[str, VirtualObject[Any]]
    settings: RuntimeSettings
    state: PartitionState
    outputs: PartitionOutputs
    commits: GroupCommit
    streams: StreamTracker
    large: LargeValues | None
    """Where replies, messages and events over `blob_threshold_bytes` go (claim check), if anywhere."""
