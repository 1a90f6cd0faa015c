"""Record bytes never reach the operator's terminal raw: `tether dlq list|stats|show` print the
control characters, bidi overrides and rich markup of a dead letter as visible text.

Anyone who can write to the inbox writes these bytes: ESC[2J clears the screen, ESC]0;...BEL
sets the terminal's title, U+202E reverses what follows, ``[link=...]`` would be a rich link.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from harness.cli import invoke_ok

from actors import Settings, TerminalError
from actors.messages import Message, session_key
from actors.runtime.deadletters import Failure, dead_letter
from eventstore import EmbeddedLog, Record, Topics

NS = "escapes"
CLEAR = "\x1b[2J"
TITLE = "\x1b]0;pwned\x07"
RLO = "\u202e"
MARKUP = "[red]alarm[/red] [link=https://evil.example]click[/link] :warning:"
RAW = (CLEAR, "\x1b", "\x07", RLO, "\x9b", "\r")
"""What must never appear in the output as it is."""


def hostile(text: str) -> str:
    return f"{text} {CLEAR}{TITLE}{RLO}gnp.exe \x9b31m\r{MARKUP}"


async def write_letter(data_dir: Path) -> None:
    log = EmbeddedLog(data_dir / "log")
    await log.start()
    topics = Topics(NS)
    await log.create_topics(topics.specs(2))
    key = hostile("k1")
    message = Message(id=hostile("m1"), o="orders", k=key, h=hostile("apply"), p={"note": hostile("payload")}, ts=1)
    source = Record(
        topics.inbox,
        0,
        3,
        session_key("orders", key),
        message.encode(),
        ((hostile("trace"), hostile("header").encode()),),
        1234,
    )
    try:
        raise TerminalError(hostile("bad order") + "\nsecond line")
    except TerminalError as exc:
        failure = Failure(exc, "terminal", 2, 1_000, 2_000, "orders", key, hostile("apply"), hostile("m1"))
    # A poison record too: its undecodable value and its record key are shown as well.
    poison = Record(topics.inbox, 1, 4, hostile("orders/k2").encode(), hostile("not msgpack").encode(), (), 1234)
    await log.append(
        [
            dead_letter(source, failure, dlq_topic=topics.dlq, group=topics.group()),
            dead_letter(poison, Failure(ValueError(hostile("undecodable")), "poison"), dlq_topic=topics.dlq, group="g"),
        ]
    )
    await log.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    asyncio.run(write_letter(tmp_path))
    return tmp_path


def tether(data_dir: Path, *args: str) -> str:
    return invoke_ok(Settings(), *args, data_dir=data_dir, namespace=NS, columns=400)


def assert_escaped(output: str) -> None:
    for raw in RAW:
        assert raw not in output, f"{raw!r} reached the terminal raw"


@pytest.mark.parametrize(
    "args",
    [
        ("dlq", "show", "0-0"),
        ("dlq", "show", "0-1"),
        ("dlq", "list"),
        ("dlq", "stats"),
        ("dlq", "stats", "--by", "error_class,handler,message"),
    ],
)
def test_people_see_control_characters_and_markup_as_text(data_dir: Path, args: tuple[str, ...]) -> None:
    output = tether(data_dir, *args)
    assert_escaped(output)
    assert "\\x1b[2J" in output, output
    assert "[red]alarm" in output, "rich markup in a record is printed, not interpreted"


def test_show_escapes_every_field_of_a_dead_letter(data_dir: Path) -> None:
    output = tether(data_dir, "dlq", "show", "0-0")
    assert "\\x1b]0;pwned\\x07" in output and "\\u202egnp.exe" in output and "\\x9b31m\\r" in output
    for field in ("k1", "m1", "apply", "trace", "header", "bad order"):
        assert f"{field} \\x1b[2J" in output, field
    assert "payload \\u001b[2J" in output, "the payload is shown as JSON, with JSON's escapes"
    assert "[link=https://evil.example]click[/link] :warning:" in output
    assert "second line" in output, "a multi-line error keeps its lines"


def test_show_escapes_a_poison_record(data_dir: Path) -> None:
    output = tether(data_dir, "dlq", "show", "0-1")
    for field in ("orders/k2", "not msgpack", "undecodable"):
        assert f"{field} \\x1b[2J" in output, field


@pytest.mark.parametrize("args", [("dlq", "show", "0-0"), ("dlq", "list"), ("dlq", "stats")])
def test_json_escapes_control_characters_too(data_dir: Path, args: tuple[str, ...]) -> None:
    output = tether(data_dir, *args, "--json")
    assert_escaped(output)
    assert "\\u001b[2J" in output and "\\u202e" in output
    assert json.loads(output), "still JSON"
