"""A sticky partition assignor: a rebalance moves only the partitions that balance needs.

aiokafka offers eager rebalancing only (no KIP-848, no cooperative KIP-429) and its default
assignor, round robin, deals every partition out afresh: when a worker joins or leaves, the
others' partitions move too. `StickyAssignor` keeps each member's previous partitions where
balance allows: each member says in its join metadata which partitions it held and in which
generation (the user data, below); the leader keeps every claim up to the member's fair share
(a newer generation wins a partition claimed twice) and deals out only what is left.

User data (msgpack): ``{"v": 1, "g": generation, "p": {topic: [partition, ...]}}``. Empty or
undecodable user data (a member's first join, another client's) claims nothing. Groups offer
this protocol first and ``roundrobin`` second, so a group with a member that knows only round
robin (an older Tether) agrees on round robin.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

from ..codec import pack, unpack
from ..errors import TetherError

log = logging.getLogger(__name__)

PROTOCOL = "tether-sticky"
"""The assignment protocol's name in JoinGroup."""

NO_GENERATION = -1


class _UserData(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore", frozen=True)

    v: int = pydantic.Field(ge=1)
    g: int
    p: dict[str, list[pydantic.NonNegativeInt]]


@dataclass(frozen=True)
class Claim:
    """What a member says it held before this rebalance."""

    topics: frozenset[str]
    """The topics it subscribes to."""
    generation: int = NO_GENERATION
    """The generation it held `partitions` in (-1: none, or no longer a member)."""
    partitions: Mapping[str, frozenset[int]] = field(default_factory=dict)
    """By topic."""


def encode_user_data(generation: int, partitions: Mapping[str, Iterable[int]]) -> bytes:
    """A member's claim, as it travels in its join metadata."""
    return pack({"v": 1, "g": generation, "p": {t: sorted(ps) for t, ps in sorted(partitions.items())}})


def decode_user_data(data: bytes | None) -> tuple[int, dict[str, frozenset[int]]]:
    """(generation, partitions by topic) of a claim; nothing for empty or foreign user data."""
    if not data:
        return NO_GENERATION, {}
    try:
        decoded = _UserData.model_validate(unpack(data))
    except (TetherError, pydantic.ValidationError) as exc:
        log.warning("ignoring a group member's assignment user data (%d bytes): %s", len(data), exc)
        return NO_GENERATION, {}
    if decoded.v != 1:
        log.warning("ignoring a group member's assignment user data of version %d", decoded.v)
        return NO_GENERATION, {}
    return decoded.g, {t: frozenset(ps) for t, ps in decoded.p.items()}


def sticky_assignment(partitions: Mapping[str, int], claims: Mapping[str, Claim]) -> dict[str, dict[str, list[int]]]:
    """Partitions by topic for each member: balanced, and moving as few as balance allows.

    Per topic, each subscribed member gets ``n // k`` or ``n // k + 1`` of its ``n``
    partitions; the larger shares go to the members that held the most. A member keeps the
    partitions it claims up to its share (a partition claimed by two members goes to the newer
    generation's claim; the same generation, to the first member id). The rest is dealt out
    in partition order to the members with room. Deterministic for the same input.
    """
    out: dict[str, dict[str, list[int]]] = {m: {} for m in claims}
    for topic, count in sorted(partitions.items()):
        members = sorted(m for m, c in claims.items() if topic in c.topics)
        if not members or count <= 0:
            continue
        owner: dict[int, tuple[int, str]] = {}
        for m in members:
            claim = claims[m]
            for p in claim.partitions.get(topic, ()):
                if not 0 <= p < count:
                    continue
                held = owner.get(p)
                if held is None or claim.generation > held[0]:
                    owner[p] = (claim.generation, m)
        kept: dict[str, list[int]] = {m: [] for m in members}
        for p, (_, m) in sorted(owner.items()):
            kept[m].append(p)
        base, extra = divmod(count, len(members))
        by_claims = sorted(members, key=lambda m: (-len(kept[m]), m))
        share = {m: base + (1 if n < extra else 0) for n, m in enumerate(by_claims)}
        taken: dict[str, list[int]] = {m: kept[m][: share[m]] for m in members}
        placed = {p for ps in taken.values() for p in ps}
        free = [p for p in range(count) if p not in placed]
        for p in free:
            m = max(members, key=lambda m: (share[m] - len(taken[m]), -members.index(m)))
            taken[m].append(p)
        for m in members:
            if taken[m]:
                out[m][topic] = sorted(taken[m])
    return out


class StickyAssignor:
    """An aiokafka partition assignor (``partition_assignment_strategy``), one per consumer.

    Unlike aiokafka's class-level assignors it keeps its state (the last assignment) on the
    instance, so consumers in one process do not share claims. `generation` tells it the
    generation its consumer is in (read when it joins: that of the assignment it claims).
    """

    name = PROTOCOL
    version = 0

    def __init__(self, generation: Callable[[], int] | None = None) -> None:
        self.generation = generation
        self.assigned: dict[str, list[int]] = {}
        """This member's partitions by topic, as of its last assignment."""

    def metadata(self, topics: Iterable[str]) -> Any:  # noqa: ANN401 - aiokafka's struct
        """aiokafka: this member's subscription and claim, for JoinGroup."""
        generation = NO_GENERATION
        if self.generation is not None:
            try:
                generation = int(self.generation())
            except TetherError:  # not (or no longer) a member
                generation = NO_GENERATION
        user_data = encode_user_data(generation, self.assigned) if self.assigned else b""
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), user_data)

    def assign(self, cluster: Any, members: Mapping[str, Any]) -> dict[str, Any]:  # noqa: ANN401
        """aiokafka: the leader's assignment for every member (member id -> assignment)."""
        claims: dict[str, Claim] = {}
        topics: set[str] = set()
        for member_id, metadata in members.items():
            generation, held = decode_user_data(metadata.user_data)
            subscribed = frozenset(metadata.subscription)
            topics |= subscribed
            claims[member_id] = Claim(subscribed, generation, held)
        counts: dict[str, int] = {}
        for topic in topics:
            found: Sequence[int] | None = cluster.partitions_for_topic(topic)
            if found:
                counts[topic] = len(found)
        assignment = sticky_assignment(counts, claims)
        return {
            member_id: ConsumerProtocolMemberAssignment(self.version, sorted(assignment[member_id].items()), b"")
            for member_id in members
        }

    def on_assignment(self, assignment: Any) -> None:  # noqa: ANN401 - aiokafka's struct
        """aiokafka: this member's new assignment (remembered for the next claim)."""
        held: dict[str, list[int]] = {}
        for tp in assignment.partitions():
            held.setdefault(tp.topic, []).append(tp.partition)
        self.assigned = {t: sorted(ps) for t, ps in held.items()}

    def on_generation_assignment(self, generation: int) -> None:
        """kafka-python's hook (aiokafka does not call it); the generation is read at join."""
