"""A broker outage is one log line and a summary a minute, not hundreds of client errors a second."""

from __future__ import annotations

import logging

from actors.hosting.logs import OutageFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_flood_of_client_errors_becomes_one_line_and_a_summary_per_window() -> None:
    clock = Clock()
    outage = OutageFilter(window=60.0, clock=clock)
    passed = []
    for n in range(390 * 40):  # 390 lines a second for 40 s, as seen in an outage
        clock.now = n / 390
        r = record("aiokafka.conn", "Unable connect to node with id %s: %s", 1, "refused")
        if outage.filter(r):
            passed.append(r.getMessage())
    assert len(passed) == 1 and passed[0].startswith("broker unreachable since ")
    clock.now = 61.0
    r = record("aiokafka.conn", "Unable connect to node with id %s: %s", 1, "refused")
    assert outage.filter(r) and f"and {390 * 40 - 1} more like it" in r.getMessage()


def test_tether_lines_and_info_pass_untouched_and_a_recovery_starts_a_new_outage() -> None:
    outage = OutageFilter(clock=Clock())
    for _ in range(3):
        assert outage.filter(record("actors.hosting.worker", "partition %d failed", 3))
        assert outage.filter(record("aiokafka.consumer", "joined", level=logging.INFO))
    assert outage.filter(record("kafka.conn", "timed out"))
    assert not outage.filter(record("kafka.conn", "timed out"))
    outage.recovered()
    again = record("kafka.conn", "timed out")
    assert outage.filter(again) and again.getMessage().startswith("broker unreachable since")
