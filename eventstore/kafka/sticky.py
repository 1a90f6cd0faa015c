"""A sticky partition assignor: a rebalance moves only the partitions that balance needs.

aiokafka offers eager rebalancing only (no KIP-848, no cooperative KIP-429) and its default
assignor, round robin, deals every partition out afresh: when a worker joins or leaves, the
others' partitions move too. `StickyAssignor` keeps each member's previous partitions where
balance allows: each member says in its join metadata which partitions it holds (the user
data, below); the leader keeps every claim up to the member's fair share and deals out only
what is left.

Only a member of the group claims: one whose membership was reset (expelled, or never joined)
claims nothing, so two claims of one partition come from members of the same generation and
cannot really overlap (a tie goes to the first member id).

Two choices keep the group from rebalancing in a loop. The broker starts a rebalance whenever
a member joins a stable (or completing) group with protocols other than those it last joined
with. (1) The claim carries no generation: a claim stamped with its generation differs after
every rebalance, so each of the rejoins aiokafka makes now and then (a SyncGroup that timed
out, a heartbeat that saw the last rebalance) started another one, and stamped a newer
generation again. Without the stamp a member rejoining with the partitions it holds matches
what it joined with, and the broker answers with the current assignment.
(2) A consumer offers this one protocol, with no ``roundrobin`` fallback: aiokafka 0.14 sends
one JoinGroup per configured assignor, the first with only the first protocol
(aio-libs/aiokafka#1168, not fixed in 0.15.0rc1), so with two assignors every join carried
two protocol lists and the second always looked like new metadata: each rebalance started
another (a saga chaos run on a loaded machine reached generation 378 and stalled).
`tests/integration/test_sticky_rejoin.py` pins both. The price of (2): a group agrees on one
protocol, so workers with ``kafka.rebalance=sticky`` cannot join a group whose members use
round robin (``eager``, or a Tether from before this assignor): their fetches fail with a
`ConfigurationError` that says so until the last round-robin member has left, and then they
take the partitions (a rolling switch runs on fewer workers meanwhile; README, "Rebalances").

User data (msgpack): ``{"v": 1, "p": {topic: [partition, ...]}}``. Empty or undecodable user
data (a member's first join, another client's) claims nothing; unknown keys are ignored.
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
    p: dict[str, list[pydantic.NonNegativeInt]]


@dataclass(frozen=True)
class Claim:
    """What a member says it held before this rebalance."""

    topics: frozenset[str]
    """The topics it subscribes to."""
    partitions: Mapping[str, frozenset[int]] = field(default_factory=dict)
    """By topic."""


def encode_user_data(partitions: Mapping[str, Iterable[int]]) -> bytes:
    """A member's claim, as it travels in its join metadata: the same bytes for the same claim."""
    return pack({"v": 1, "p": {t: sorted(ps) for t, ps in sorted(partitions.items())}})


def decode_user_data(data: bytes | None) -> dict[str, frozenset[int]]:
    """The partitions by topic a claim names; nothing for empty or foreign user data."""
    if not data:
        return {}
    try:
        decoded = _UserData.model_validate(unpack(data))
    except (TetherError, pydantic.ValidationError) as exc:
        log.warning("ignoring a group member's assignment user data (%d bytes): %s", len(data), exc)
        return {}
    if decoded.v != 1:
        log.warning("ignoring a group member's assignment user data of version %d", decoded.v)
        return {}
    return {t: frozenset(ps) for t, ps in decoded.p.items()}


def sticky_assignment(partitions: Mapping[str, int], claims: Mapping[str, Claim]) -> dict[str, dict[str, list[int]]]:
    """Partitions by topic for each member: balanced, and moving as few as balance allows.

    Per topic, each subscribed member gets ``n // k`` or ``n // k + 1`` of its ``n``
    partitions; the larger shares go to the members that held the most. A member keeps the
    partitions it claims up to its share (a partition claimed by two members goes to the first
    member id). The rest is dealt out
    in partition order to the members with room. Deterministic for the same input.
    """
    out: dict[str, dict[str, list[int]]] = {m: {} for m in claims}
    for topic, count in sorted(partitions.items()):
        members = sorted(m for m, c in claims.items() if topic in c.topics)
        if not members or count <= 0:
            continue
        owner: dict[int, str] = {}
        for m in members:
            for p in claims[m].partitions.get(topic, ()):
                if 0 <= p < count:
                    owner.setdefault(p, m)
        kept: dict[str, list[int]] = {m: [] for m in members}
        for p, m in sorted(owner.items()):
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
    generation its consumer is in (read when it joins): a member without one claims nothing.
    """

    name = PROTOCOL
    version = 0

    def __init__(self, generation: Callable[[], int] | None = None) -> None:
        self.generation = generation
        self.assigned: dict[str, list[int]] = {}
        """This member's partitions by topic, as of its last assignment."""

    def metadata(self, topics: Iterable[str]) -> Any:  # noqa: ANN401 - aiokafka's struct
        """aiokafka: this member's subscription and claim, for JoinGroup."""
        member = self.generation is None
        if self.generation is not None:
            try:
                member = int(self.generation()) != NO_GENERATION
            except TetherError:  # not (or no longer) a member
                member = False
        user_data = encode_user_data(self.assigned) if self.assigned and member else b""
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), user_data)

    def assign(self, cluster: Any, members: Mapping[str, Any]) -> dict[str, Any]:  # noqa: ANN401
        """aiokafka: the leader's assignment for every member (member id -> assignment)."""
        claims: dict[str, Claim] = {}
        topics: set[str] = set()
        for member_id, metadata in members.items():
            subscribed = frozenset(metadata.subscription)
            topics |= subscribed
            claims[member_id] = Claim(subscribed, decode_user_data(metadata.user_data))
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
