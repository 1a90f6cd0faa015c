"""The sticky assignor: balanced shares, previous partitions kept, its user data pinned."""

from __future__ import annotations

import logging

import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata
from aiokafka.structs import TopicPartition

from eventstore import pack
from eventstore.errors import UsageError
from eventstore.kafka.sticky import (
    NO_GENERATION,
    PROTOCOL,
    Claim,
    StickyAssignor,
    decode_user_data,
    encode_user_data,
    sticky_assignment,
)

T = "ns.inbox"
SUBSCRIBED = frozenset({T})

# The claim of a member that holds partitions 0, 2 and 5 of ns.inbox: member metadata that the
# broker keeps for the group's members. Pinned: the same claim must give the same bytes, or a
# member's rejoin looks like new metadata to the broker and starts a rebalance.
USER_DATA_V1 = b"\x82\xa1v\x01\xa1p\x81\xa8ns.inbox\x93\x00\x02\x05"


def claim(*partitions: int) -> Claim:
    return Claim(SUBSCRIBED, {T: frozenset(partitions)})


def test_the_user_data_is_pinned_and_reads_back() -> None:
    assert encode_user_data({T: [5, 0, 2]}) == USER_DATA_V1
    assert encode_user_data({T: (2, 5, 0)}) == USER_DATA_V1
    assert decode_user_data(USER_DATA_V1) == {T: frozenset({0, 2, 5})}
    # What the assignor sent while its claims carried a generation: read, the generation ignored.
    assert decode_user_data(b"\x83\xa1v\x01\xa1g\x07\xa1p\x81\xa8ns.inbox\x93\x00\x02\x05") == {T: frozenset({0, 2, 5})}


@pytest.mark.parametrize(
    "data",
    [
        None,
        b"",  # a member's first join
        b"\x00\x01garbage",  # another client's user data
        pack({"v": 2, "g": 1, "p": {T: [0]}}),  # a later version: no claim rather than a wrong one
        pack({"v": 1, "g": 1, "p": {T: [-1]}}),
        pack([1, 2, 3]),
    ],
)
def test_user_data_that_is_absent_or_foreign_claims_nothing(
    data: bytes | None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert decode_user_data(data) == {}


def test_a_fresh_group_is_dealt_out_evenly() -> None:
    out = sticky_assignment({T: 8}, {"a": Claim(SUBSCRIBED), "b": Claim(SUBSCRIBED)})
    assert sorted(out["a"][T] + out["b"][T]) == list(range(8))
    assert len(out["a"][T]) == len(out["b"][T]) == 4


def test_a_survivor_keeps_its_partitions_and_takes_the_dead_members() -> None:
    out = sticky_assignment({T: 8}, {"b": claim(1, 3, 5, 7)})
    assert out == {"b": {T: list(range(8))}}


def test_a_joining_member_takes_only_what_balance_needs() -> None:
    before = {"a": [0, 1, 2, 3], "b": [4, 5, 6, 7]}
    out = sticky_assignment({T: 8}, {"a": claim(*before["a"]), "b": claim(*before["b"]), "c": Claim(SUBSCRIBED)})
    assert set(out["a"][T]) <= set(before["a"]) and set(out["b"][T]) <= set(before["b"])
    assert sorted(len(out[m][T]) for m in "abc") == [2, 3, 3]
    assert sorted(out["a"][T] + out["b"][T] + out["c"][T]) == list(range(8))


def test_an_uneven_split_gives_the_larger_share_to_who_held_more() -> None:
    # 5 partitions, 2 members: the one that held 3 keeps all 3.
    out = sticky_assignment({T: 5}, {"a": claim(0, 1, 2), "b": claim(3)})
    assert out["a"][T] == [0, 1, 2]
    assert out["b"][T] == [3, 4]


def test_a_partition_claimed_twice_goes_to_the_first_member_id() -> None:
    # Members of one generation hold disjoint partitions, so this is a tie-break only.
    out = sticky_assignment({T: 2}, {"z": claim(0, 1), "a": claim(0)})
    assert out["a"][T] == [0]
    assert out["z"][T] == [1]


def test_claims_beyond_the_topic_or_for_unsubscribed_topics_are_ignored() -> None:
    out = sticky_assignment(
        {T: 2, "other": 2},
        {"a": Claim(SUBSCRIBED, {T: frozenset({0, 9}), "other": frozenset({0})}), "b": Claim(frozenset({"other"}))},
    )
    assert out["a"] == {T: [0, 1]}
    assert out["b"] == {"other": [0, 1]}


def test_the_assignment_is_deterministic() -> None:
    claims = {m: claim(n) for n, m in enumerate("dcba")}
    assert sticky_assignment({T: 6}, claims) == sticky_assignment({T: 6}, dict(reversed(claims.items())))


class _Cluster:
    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(4)) if topic == T else None


def test_the_aiokafka_assignor_claims_what_it_was_assigned_and_the_same_bytes_again() -> None:
    generation = [NO_GENERATION]
    a, b = StickyAssignor(lambda: generation[0]), StickyAssignor()
    assert a.name == b.name == PROTOCOL
    first = a.metadata({T})
    assert first.user_data == b""  # nothing held yet
    assignment = a.assign(_Cluster(), {"a": first, "b": b.metadata({T})})
    assert all(isinstance(x, ConsumerProtocolMemberAssignment) for x in assignment.values())
    a.on_assignment(assignment["a"])
    b.on_assignment(assignment["b"])
    held_a = {tp.partition for tp in assignment["a"].partitions()}
    assert len(held_a) == 2
    generation[0] = 1
    rejoin = a.metadata({T})
    assert isinstance(rejoin, ConsumerProtocolMemberMetadata)
    assert decode_user_data(rejoin.user_data) == {T: frozenset(held_a)}
    generation[0] = 2  # a rebalance that changed nothing: the same metadata, so no new rebalance
    assert a.metadata({T}).user_data == rejoin.user_data
    # b leaves: a keeps its partitions and takes b's.
    again = a.assign(_Cluster(), {"a": rejoin})
    assert [tp for tp in again["a"].partitions()] == [TopicPartition(T, p) for p in range(4)]


def test_a_member_that_is_no_longer_in_the_group_claims_nothing() -> None:
    def expelled() -> int:
        raise UsageError("no group member")

    assignor = StickyAssignor(expelled)
    assignor.assigned = {T: [0]}
    assert assignor.metadata({T}).user_data == b""
    reset = StickyAssignor(lambda: NO_GENERATION)  # aiokafka's reset_generation: -1
    reset.assigned = {T: [0]}
    assert reset.metadata({T}).user_data == b""
