"""Topic names, topic configuration and the partitioner."""

from __future__ import annotations

import pytest

from eventstore import Topics, TopicSpec, UsageError, partition_for


def test_names_of_a_namespace() -> None:
    topics = Topics("acme-prod_1")
    assert topics.inbox == "acme-prod_1.inbox"
    assert topics.events == "acme-prod_1.events"
    assert topics.snapshots == "acme-prod_1.snapshots"
    assert topics.replies == "acme-prod_1.replies"
    assert topics.streams == "acme-prod_1.streams"
    assert topics.dlq == "acme-prod_1.dlq"
    assert topics.control == "acme-prod_1.control"
    assert topics.group() == "acme-prod_1-workers"
    assert topics.group("dlq-replayer") == "acme-prod_1-dlq-replayer"
    assert Topics().events == "tether.events"


@pytest.mark.parametrize("namespace", ["", "a.b", "with space", "slash/ed", "ü", "a:b", "x" * 201])
def test_invalid_namespace(namespace: str) -> None:
    with pytest.raises(UsageError, match="namespace"):
        Topics(namespace)
    assert Topics("x" * 200).snapshots.startswith("x" * 200)


def test_specs() -> None:
    topics = Topics("ns")
    specs = {s.name: s for s in topics.specs(6)}
    assert list(specs) == [
        "ns.inbox",
        "ns.events",
        "ns.snapshots",
        "ns.replies",
        "ns.streams",
        "ns.dlq",
        "ns.control",
    ]
    # Inbox, events and snapshots share the partition count: partition p of each is one owner's.
    assert [specs[t].partitions for t in ("ns.inbox", "ns.events", "ns.snapshots", "ns.streams")] == [6, 6, 6, 6]
    assert specs["ns.streams"].config["retention.ms"] == str(24 * 3600 * 1000)
    assert specs["ns.dlq"].partitions == 1
    assert specs["ns.snapshots"].config["cleanup.policy"] == "compact"
    assert specs["ns.snapshots"].compacted
    assert specs["ns.control"].compacted
    assert not specs["ns.events"].compacted
    assert specs["ns.events"].config["retention.ms"] == "-1"
    assert specs["ns.inbox"].config["retention.ms"] == str(7 * 24 * 3600 * 1000)
    with pytest.raises(UsageError):
        topics.specs(0)


def test_topic_spec_compacted() -> None:
    assert TopicSpec("t", 1, {"cleanup.policy": "compact,delete"}).compacted
    assert not TopicSpec("t", 1, {"cleanup.policy": "delete"}).compacted
    assert not TopicSpec("t", 1).compacted


def test_partition_for_is_pinned() -> None:
    # CRC-32 of the key, modulo the partition count. These values are a wire contract: every
    # process, language and release must route a key to the same partition.
    assert partition_for(b"123456789", 1 << 32) == 0xCBF43926  # CRC-32's published check value
    assert partition_for(b"session-1", 8) == 6
    assert partition_for(b"session-2", 8) == 4
    assert partition_for(b"", 8) == 0
    assert partition_for(b"user:42", 12) == 10
    assert partition_for(b"\x00\xff", 3) == 1


def test_partition_for_is_in_range_and_spreads() -> None:
    counts = [0] * 8
    for i in range(8000):
        p = partition_for(b"key-%d" % i, 8)
        assert 0 <= p < 8
        counts[p] += 1
    assert min(counts) > 800
    assert partition_for(b"anything", 1) == 0
