"""Step results: encoded to journal data and decoded to the declared type, live and on replay."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import BaseModel

from actors import RecordTooLargeError, StepTypeError
from actors.runtime.step_results import StepResults, declared_type
from eventstore import pack, unpack


class Doc(BaseModel):
    url: str


@dataclasses.dataclass
class Hit:
    title: str


def fetch() -> Doc:
    return Doc(url="u")


async def fetch_async() -> list[Hit]:
    return [Hit("a")]


def replayed(results: StepResults, value: object) -> object:
    """What a replay gets: the journal data through msgpack, then decoded."""
    return results.decode(unpack(pack(results.encode(value, 10_000))))


def test_declared_types_come_from_annotations_sync_and_async() -> None:
    assert declared_type(fetch) is Doc
    assert declared_type(fetch_async) == list[Hit]
    assert declared_type(lambda: Doc(url="u")) is None


@pytest.mark.parametrize(
    ("result_type", "value"),
    [
        (Doc, Doc(url="u")),
        (list[Hit], [Hit("a")]),
        (list[Doc], [Doc(url="a")]),
        (int, 7),
        (dict[str, Doc], {"a": Doc(url="x")}),
    ],
)
def test_live_and_replayed_results_are_equal_and_of_one_type(result_type: object, value: object) -> None:
    results = StepResults.of("s", result_type)
    live = results.decode(results.encode(value, 10_000))
    again = replayed(results, value)
    assert live == again == value
    assert type(live) is type(again) is type(value)


def test_plain_results_need_no_declaration_and_tuples_are_lists_both_ways() -> None:
    results = StepResults.of("s", None)
    value = {"a": (1, 2), "b": [b"x", None, 1.5]}
    assert (
        results.decode(results.encode(value, 10_000))
        == replayed(results, value)
        == {"a": [1, 2], "b": [b"x", None, 1.5]}
    )


@pytest.mark.parametrize("value", [Doc(url="u"), [Hit("a")], {"k": {1, 2}}])
def test_an_undeclared_rich_result_fails_live_naming_the_step_and_the_fix(value: object) -> None:
    with pytest.raises(StepTypeError) as refused:
        StepResults.of("llm:plan", None).encode(value, 10_000)
    assert "'llm:plan'" in str(refused.value) and "result_type=" in str(refused.value)


def test_a_result_that_does_not_fit_its_declared_type_fails() -> None:
    with pytest.raises(StepTypeError, match="declares"):
        StepResults.of("s", Doc).encode(42, 10_000)


def test_a_result_over_the_limit_fails_with_its_size() -> None:
    with pytest.raises(RecordTooLargeError) as too_big:
        StepResults.of("fetch page", None).encode("x" * 5000, 1000)
    assert too_big.value.size > 5000 and too_big.value.limit == 1000
    assert "'fetch page'" in str(too_big.value) and "reference" in str(too_big.value)
