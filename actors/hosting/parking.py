"""Processors parked across a rebalance, and when one may go on without a restore.

aiokafka rebalances eagerly: every partition is revoked before the group reassigns them, even
the ones that come straight back. A revoked partition's processor commits what finished and
is parked (`PartitionProcessor.pause`) with the membership it owned the partition under. When
the same member is given the partition in the very next generation, nobody else can have
owned it in between (one generation's assignments are disjoint, and a member that leaves or
is expelled comes back with a new member id or a generation reset), so its state in memory is
the partition's state in the log: the processor resumes instead of being restored.

The group may pass more than one generation in a rebalance (a member that rejoins before the
sync completes starts another), so the same member given the partition in a later generation
checks the log instead: after fencing any other writer of the partition (a new transactional
writer, or `KafkaLog.settle` for the group-fenced one), the partition's events end and its
committed inbox offset must be what they were when it was parked; whoever owned it in between
then changed nothing. Otherwise the processor is stopped without committing and the partition
is restored as usual.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..runtime.processor import PartitionProcessor


@dataclass(frozen=True)
class Tenure:
    """A group membership: the generation and member id a partition was owned under."""

    generation: int
    member_id: str


def may_resume(parked: Tenure, now: Tenure) -> bool:
    """Whether a processor parked under `parked` may resume under `now` without a restore."""
    return parked.generation >= 0 and now.member_id == parked.member_id and now.generation == parked.generation + 1


def may_check(parked: Tenure, now: Tenure) -> bool:
    """Whether a processor parked under `parked` may resume under `now` if the log is unchanged."""
    return parked.generation >= 0 and now.member_id == parked.member_id and now.generation > parked.generation


@dataclass(frozen=True)
class LogMark:
    """What a partition's log looked like: its events end and its committed inbox offset."""

    events_end: int
    committed: int | None


@dataclass
class Parked:
    """A paused processor, the membership its partition was revoked under, and its log then."""

    processor: PartitionProcessor
    tenure: Tenure
    mark: LogMark
