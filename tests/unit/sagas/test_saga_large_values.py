"""A saga whose step result is over the blob threshold: its events go by reference and
`tether saga show` (find_saga) reads them back."""

from __future__ import annotations

from pathlib import Path

from harness import blob_sessions as bs
from harness.session_harness import make_settings, open_runtime
from pydantic import BaseModel

from actors import RuntimeSettings
from actors.protocol.entries import Done, decode
from sagas import Saga, SagaClient, find_saga


class Trip(BaseModel):
    mib: int = 1


class Itinerary(BaseModel):
    text: str


planning = Saga("planning_large", input=Trip)


@planning.step("itinerary")
async def write_itinerary(trip: Trip, key: str) -> Itinerary:
    return Itinerary(text=bs.page(trip.mib))


coordinator = planning.coordinator()


async def test_a_saga_with_a_large_step_result_is_shown_whole(tmp_path: Path, namespace: str) -> None:
    runtime = RuntimeSettings(blob_threshold_bytes=100_000, blob_dir=tmp_path / "blobs", checkpoint_every=100_000)
    settings = make_settings("embedded", tmp_path / "data", namespace, partitions=1, runtime=runtime)
    async with open_runtime([coordinator], settings) as rt:
        outcome = await (await SagaClient(rt.client).start(planning, "p1", Trip())).result(timeout=30)
        assert outcome.status == "completed"
        assert outcome.result(write_itinerary) == Itinerary(text=bs.page(1))
        entries = [decode(r.value) for r in await rt.records(rt.topics.events) if r.value is not None]
        record = await find_saga(settings, "p1")
    assert any(isinstance(e, Done) and e.events_blob is not None for e in entries)  # the events went by reference
    assert record.state.status == "completed"
    assert record.state.step("itinerary").result == {"text": bs.page(1)}
