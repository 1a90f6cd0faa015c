"""The record codec: envelopes, schema versions, upcasters and decode errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

from eventstore import (
    Codec,
    DecodeError,
    EnvelopeDecodeError,
    PayloadValidationError,
    UnknownSchemaVersionError,
    UnknownTypeError,
    UsageError,
    pack,
    unpack,
)


class Note(pydantic.BaseModel):
    """NoteAdded at schema v3: v1 had `body`, v2 renamed it `text` and added `tags`."""

    text: str
    tags: list[str]
    author: str
    at: datetime


class Renamed(pydantic.BaseModel):
    title: str
    previous: str | None = None


class Tool(pydantic.BaseModel):
    name: str
    args: dict[str, Any]


class StepDone(pydantic.BaseModel):
    step: int
    tools: list[Tool]
    ratio: float
    ok: bool


def make_codec() -> Codec:
    codec = Codec()
    codec.register(Note, name="NoteAdded", version=3)
    codec.register(Renamed)
    codec.register(StepDone, version=2)  # v1 payloads exist, but no upcaster was written

    @codec.upcaster("NoteAdded", 1)
    def body_to_text(d: dict[str, Any]) -> dict[str, Any]:
        d = dict(d)
        return {"text": d.pop("body"), "tags": [], **d}

    @codec.upcaster("NoteAdded", 2)
    def add_author(d: dict[str, Any]) -> dict[str, Any]:
        return {**d, "author": "unknown"}

    return codec


@pytest.fixture
def codec() -> Codec:
    return make_codec()


# Bytes written by the v1 code of NoteAdded. Checked in as written: they must keep decoding as
# long as the upcasters exist. Never regenerate them with the current encoder.
GOLDEN_V1 = b"\x83\xa1t\xa9NoteAdded\xa1v\x01\xa1d\x82\xa4body\xaafirst note\xa2at\xb42024-05-01T12:00:00Z"
GOLDEN_V2 = (
    b"\x83\xa1t\xa9NoteAdded\xa1v\x02\xa1d\x83\xa4text\xa6second\xa4tags\x92\xa1a\xa1b\xa2at\xb42024-05-02T08:30:00Z"
)


def test_golden_v1_event_still_decodes(codec: Codec) -> None:
    assert codec.decode(GOLDEN_V1) == Note(
        text="first note", tags=[], author="unknown", at=datetime(2024, 5, 1, 12, tzinfo=UTC)
    )


def test_golden_v2_event_still_decodes(codec: Codec) -> None:
    assert codec.decode(GOLDEN_V2) == Note(
        text="second",
        tags=["a", "b"],
        author="unknown",
        at=datetime(2024, 5, 2, 8, 30, tzinfo=UTC),
    )


def test_round_trip_keeps_type_and_values(codec: Codec) -> None:
    values: list[pydantic.BaseModel] = [
        Note(text="héllo ✓", tags=["x"], author="ana", at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)),
        Renamed(title="new"),
        Renamed(title="new", previous="old"),
        StepDone(
            step=3,
            tools=[Tool(name="search", args={"q": "kafka", "n": 3, "deep": [1, None]})],
            ratio=0.25,
            ok=False,
        ),
    ]
    for value in values:
        decoded = codec.decode(codec.encode(value))
        assert type(decoded) is type(value)
        assert decoded == value


def test_envelope_carries_name_version_and_json_payload(codec: Codec) -> None:
    note = Note(text="t", tags=[], author="a", at=datetime(2025, 1, 1, tzinfo=UTC))
    assert unpack(codec.encode(note)) == {
        "t": "NoteAdded",
        "v": 3,
        "d": {"text": "t", "tags": [], "author": "a", "at": "2025-01-01T00:00:00Z"},
    }
    assert unpack(codec.encode(Renamed(title="x"))) == {
        "t": "Renamed",
        "v": 1,
        "d": {"title": "x", "previous": None},
    }
    assert codec.name_of(Note) == "NoteAdded"
    assert codec.knows(Note) and not codec.knows(Tool)


def test_upcasters_run_in_order_from_any_old_version(codec: Codec) -> None:
    at = "2024-01-01T00:00:00Z"
    v1 = pack({"t": "NoteAdded", "v": 1, "d": {"body": "b", "at": at}})
    v2 = pack({"t": "NoteAdded", "v": 2, "d": {"text": "b", "tags": ["t"], "at": at}})
    v3 = pack({"t": "NoteAdded", "v": 3, "d": {"text": "b", "tags": [], "author": "me", "at": at}})
    when = datetime(2024, 1, 1, tzinfo=UTC)

    assert codec.decode(v1) == Note(text="b", tags=[], author="unknown", at=when)
    assert codec.decode(v2) == Note(text="b", tags=["t"], author="unknown", at=when)
    assert codec.decode(v3) == Note(text="b", tags=[], author="me", at=when)


def test_unknown_type(codec: Codec) -> None:
    with pytest.raises(UnknownTypeError) as info:
        codec.decode(pack({"t": "Nope", "v": 1, "d": {}}))
    assert info.value.type_name == "Nope"
    assert info.value.schema_version == 1
    assert isinstance(info.value, DecodeError)


def test_newer_schema_version_than_the_code(codec: Codec) -> None:
    with pytest.raises(UnknownSchemaVersionError, match="newer than this code") as info:
        codec.decode(pack({"t": "NoteAdded", "v": 4, "d": {}}))
    assert (info.value.type_name, info.value.schema_version) == ("NoteAdded", 4)


def test_missing_upcaster(codec: Codec) -> None:
    payload = {"step": 1, "tools": [], "ratio": 1.0, "ok": True}
    with pytest.raises(UnknownSchemaVersionError, match="no upcaster from v1") as info:
        codec.decode(pack({"t": "StepDone", "v": 1, "d": payload}))
    assert (info.value.type_name, info.value.schema_version) == ("StepDone", 1)
    assert "@codec.upcaster('StepDone', 1)" in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",  # a byte msgpack never uses
        b"\x83\xa1t",  # truncated
        pack({"t": "NoteAdded", "v": 1, "d": {}}) + b"\x00",  # trailing bytes
        b"",
    ],
    ids=["reserved-byte", "truncated", "trailing", "empty"],
)
def test_bad_msgpack(codec: Codec, data: bytes) -> None:
    with pytest.raises(EnvelopeDecodeError, match="not valid msgpack"):
        codec.decode(data)


@pytest.mark.parametrize(
    "envelope",
    [
        [1, 2, 3],
        {"t": "NoteAdded", "v": 1},  # no payload
        {"t": 1, "v": 1, "d": {}},
        {"t": "NoteAdded", "v": "1", "d": {}},
        {"t": "NoteAdded", "v": True, "d": {}},  # bool is not a version
    ],
    ids=["not-a-map", "missing-field", "name-not-str", "version-not-int", "version-bool"],
)
def test_not_an_envelope(codec: Codec, envelope: Any) -> None:
    with pytest.raises(EnvelopeDecodeError):
        codec.decode(pack(envelope))


def test_payload_failing_validation(codec: Codec) -> None:
    bad = {"text": "t", "tags": "not-a-list", "author": "a", "at": "2024-01-01T00:00:00Z"}
    with pytest.raises(PayloadValidationError) as info:
        codec.decode(pack({"t": "NoteAdded", "v": 3, "d": bad}))
    assert (info.value.type_name, info.value.schema_version) == ("NoteAdded", 3)
    assert "tags" in str(info.value)
    assert isinstance(info.value.__cause__, pydantic.ValidationError)


def test_old_payload_that_validates_only_after_upcasting_reports_current_version(
    codec: Codec,
) -> None:
    with pytest.raises(PayloadValidationError) as info:
        codec.decode(pack({"t": "NoteAdded", "v": 1, "d": {"body": "b", "at": "not a date"}}))
    assert (info.value.type_name, info.value.schema_version) == ("NoteAdded", 3)


def test_upcaster_failing_on_a_bad_old_payload_is_a_decode_error(codec: Codec) -> None:
    with pytest.raises(PayloadValidationError, match="upcaster from v1") as info:
        codec.decode(pack({"t": "NoteAdded", "v": 1, "d": {"no-body": 1}}))
    assert (info.value.type_name, info.value.schema_version) == ("NoteAdded", 1)
    assert isinstance(info.value.__cause__, KeyError)


def test_located_decode_error_names_where_the_record_is(codec: Codec) -> None:
    with pytest.raises(UnknownTypeError) as info:
        codec.decode(pack({"t": "Nope", "v": 2, "d": {}}))
    error = info.value.located(topic="ns.events", partition=3, offset=1042)
    assert error is info.value
    assert (error.topic, error.partition, error.offset) == ("ns.events", 3, 1042)
    assert str(error) == (
        "unknown type 'Nope' (topic=ns.events, partition=3, offset=1042, type=Nope, schema_version=2)"
    )
    assert str(EnvelopeDecodeError("bad")) == "bad"


def test_registration_mistakes_are_usage_errors(codec: Codec) -> None:
    class Other(pydantic.BaseModel):
        x: int

    with pytest.raises(UsageError, match="already registered"):
        codec.register(Other, name="NoteAdded")
    with pytest.raises(UsageError, match=">= 1"):
        codec.register(Other, version=0)
    with pytest.raises(UsageError, match="already exists"):
        codec.upcaster("NoteAdded", 1)(lambda d: d)
    with pytest.raises(UsageError, match="not registered"):
        codec.encode(Other(x=1))
    with pytest.raises(UsageError, match="not registered"):
        codec.name_of(Other)
    # Registering the same model again (say, on re-import) is fine.
    assert codec.register(Note, name="NoteAdded", version=3) is Note
