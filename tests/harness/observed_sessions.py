"""Test workload of the observability tests: sessions that call each other, a saga, five steps, a secret.

- `front.hop` calls `back.ping` (a second session) and starts the `trip` saga, then returns.
- `five.run` runs five journaled steps; each appends its name to ``$TETHER_TEST_STEPS_LOG``
  when it executes, and step 3 waits until the file ``$TETHER_TEST_GATE`` exists, so a test can
  kill the worker between steps 2 and 3.
- `counter.add` folds a number and charges a cost unit; `flaky.once` fails its step once
  (a step retry); `leaky.fail` fails for good with an API key in the exception message.

With ``$TETHER_TEST_SPANS`` set, the process exports every finished span as one JSON line to
that file (an OpenTelemetry SDK `SimpleSpanProcessor`: written when the span ends), so spans of
a worker killed with SIGKILL are kept up to the kill.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from pydantic import BaseModel, Field

from actors import ObjectContext, RetryableError, RetryPolicy, TerminalError, VirtualObject
from harness.models import Add, Added, Empty, Note
from sagas import Saga

SECRET = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
"""The secret `leaky.fail` puts in its exception message (as ``api_key=...`` and bare)."""


class FileSpanExporter(SpanExporter):
    """Appends each span as a JSON line (name, ids, parent, attributes, status, events)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            assert ctx is not None
            lines.append(
                json.dumps(
                    {
                        "name": span.name,
                        "trace_id": format(ctx.trace_id, "032x"),
                        "span_id": format(ctx.span_id, "016x"),
                        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
                        "attributes": dict(span.attributes or {}),
                        "status": span.status.status_code.name,
                        "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in span.events],
                        "pid": os.getpid(),
                    },
                    default=str,
                )
            )
        with self._lock, open(self.path, "a") as out:
            out.write("".join(line + "\n" for line in lines))
            out.flush()
            os.fsync(out.fileno())
        return SpanExportResult.SUCCESS


if os.environ.get("TETHER_TEST_SPANS"):
    _provider = TracerProvider()
    _provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(os.environ["TETHER_TEST_SPANS"])))
    trace.set_tracer_provider(_provider)


# -- two sessions and a saga -------------------------------------------------------------------
back = VirtualObject("back", state=Empty)


@back.handler()
async def ping(ctx: ObjectContext[Empty], note: Note) -> Note:
    echoed = await ctx.run("echo", lambda: f"pong {note.text}")
    return Note(text=echoed)


class Trip(BaseModel):
    city: str


class Booking(BaseModel):
    ref: str


trip = Saga("trip", input=Trip)


@trip.step("hotel", compensate="cancel_hotel")
async def book_hotel(t: Trip, key: str) -> Booking:
    return Booking(ref=f"hotel-{t.city}")


@trip.compensation("hotel")
async def cancel_hotel(t: Trip, booking: Booking, key: str) -> None:
    return None


@trip.step("train")
async def book_train(t: Trip, key: str) -> Booking:
    return Booking(ref=f"train-{t.city}")


trip_coordinator = trip.coordinator()
front = VirtualObject("front", state=Empty)


@front.handler()
async def hop(ctx: ObjectContext[Empty], note: Note) -> Note:
    answer = await ctx.call(ping, f"b-{ctx.key}", note)
    ctx.send(trip.start, f"trip-{ctx.key}", Trip(city=note.text or "paris"))
    return answer


# -- five steps, a gate before the third ---------------------------------------------------------
five = VirtualObject("five", state=Empty)


def _executed(name: str) -> str:
    path = os.environ.get("TETHER_TEST_STEPS_LOG")
    if path:
        with open(path, "a") as out:
            out.write(f"{name} {os.getpid()}\n")
    return name


@five.handler()
async def run(ctx: ObjectContext[Empty], note: Note) -> Note:
    done = [await ctx.run("s1", lambda: _executed("s1")), await ctx.run("s2", lambda: _executed("s2"))]

    async def third() -> str:
        _executed("s3-started")
        gate = os.environ.get("TETHER_TEST_GATE")
        while gate and not Path(gate).exists():
            await asyncio.sleep(0.05)
        return _executed("s3")

    done.append(await ctx.run("s3", third))
    done.append(await ctx.run("s4", lambda: _executed("s4")))
    done.append(await ctx.run("s5", lambda: _executed("s5")))
    return Note(text=",".join(done))


# -- counters -------------------------------------------------------------------------------------
class Count(BaseModel):
    total: int = 0
    seen: list[str] = Field(default_factory=list)


counter = VirtualObject("counter", state=Count)


@counter.handler()
async def add(ctx: ObjectContext[Count], req: Add) -> Count:
    await ctx.run("add", lambda: req.n)
    ctx.charge(0.5)
    ctx.emit(Added(n=req.n))
    return ctx.state


@counter.on_event(Added)
def _added(state: Count, event: Added) -> None:
    state.total += event.n


FLAKY_FAILURES: dict[str, int] = {}
flaky = VirtualObject("flaky", state=Empty)


@flaky.handler()
async def once(ctx: ObjectContext[Empty], note: Note) -> Note:
    def attempt() -> str:
        seen = FLAKY_FAILURES.get(ctx.invocation_id, 0)
        FLAKY_FAILURES[ctx.invocation_id] = seen + 1
        if seen == 0:
            raise RetryableError("429 slow down", retry_after=0.01)
        return "ok"

    text = await ctx.run("llm:flaky", attempt, retry=RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=0.0))
    return Note(text=text)


leaky = VirtualObject("leaky", state=Empty)


@leaky.handler()
async def fail(ctx: ObjectContext[Empty], note: Note) -> Note:
    ctx.logger.warning("calling the provider with Authorization: Bearer %s", SECRET)
    try:
        raise ConnectionError(f"provider refused api_key={SECRET}")
    except ConnectionError as exc:
        raise TerminalError(f"llm call failed with {SECRET}: {exc}") from exc


objects = [front, back, trip_coordinator, five, counter, flaky, leaky]
"""Everything, for ``tether serve observed_sessions:objects``."""
