"""The README's agent, its approval flow and the booking saga, tested with `actors.testing.SessionTestKit`.

The kit runs the real worker on a temporary embedded log in virtual time: the whole file,
a day-long approval timeout and hour-long backoffs included, runs in well under 2 seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.examples import example
from pydantic import BaseModel, Field

from actors import (
    CircuitPolicy,
    InvocationError,
    ObjectContext,
    RetryableError,
    RetryPolicy,
    TerminalError,
    VirtualObject,
)
from actors.testing import RoundTripError, SessionTestKit, SessionTestKitError
from sagas.testing import SagaProbe, run_saga

quickstart = example("quickstart")
approval_flow = example("approval_flow")
booking_saga = example("booking_saga")

pytestmark = pytest.mark.timeout(30)

# -- the README's agent --------------------------------------------------------------------


async def test_a_call_gives_reply_events_state_and_steps() -> None:
    async with SessionTestKit(quickstart.agent) as kit:
        result = await kit.call(quickstart.ask, "s1", quickstart.Ask(question="why?"))
        assert result.ok and result.reply is not None
        assert [s.name for s in result.steps] == ["llm:draft", "tool:web", "tool:docs", "llm:final"]
        assert all(s.attempts == 1 for s in result.steps)
        assert result.events == [quickstart.Answered(text=result.reply.text)]
        assert result.state == quickstart.AgentState(answers=[result.reply.text])
        assert result.step("llm:draft").result == "<answer to 'why?'>"


async def test_restart_rebuilds_every_session_from_the_log_and_it_goes_on() -> None:
    async with SessionTestKit(quickstart.agent, partitions=2) as kit:
        for key in ("a", "b", "c"):
            await kit.call(quickstart.ask, key, quickstart.Ask(question=key))
        await kit.restart()
        assert len(kit.state(quickstart.agent, "b").answers) == 1  # type: ignore[attr-defined]
        again = await kit.call(quickstart.ask, "b", quickstart.Ask(question="more"))
        assert len(again.state.answers) == 2  # type: ignore[attr-defined]


async def test_stubbed_and_failing_steps() -> None:
    async with SessionTestKit(quickstart.agent) as kit:
        kit.stub("llm:final", "stubbed answer")
        kit.fail("tool:web", RetryableError("429"), times=2)  # the default step policy: 3 attempts
        result = await kit.call(quickstart.ask, "s1", quickstart.Ask(question="q"))
        assert result.reply == quickstart.Answer(text="stubbed answer")
        assert result.step("tool:web").attempts == 3
        assert kit.calls("tool:web") == 3

        kit.fail("llm:draft", TerminalError("the model refused"))
        failed = await kit.call(quickstart.ask, "s2", quickstart.Ask(question="q"))
        assert isinstance(failed.error, InvocationError) and "the model refused" in str(failed.error)
        assert failed.step("llm:draft").error is not None
        assert failed.events == [] and failed.state == quickstart.AgentState()
        letters = await kit.dead_letters()
        assert [(d.category, d.headers.key) for d in letters] == [("terminal", "s2")]


# -- time: retries, delays, deadlines ------------------------------------------------------


class Count(BaseModel):
    n: int = 0
    seen: list[str] = Field(default_factory=list)


class Tick(BaseModel):
    label: str = ""


class Ticked(BaseModel):
    label: str


clocked = VirtualObject("clocked", state=Count)


@clocked.handler()
async def flaky(ctx: ObjectContext[Count], req: Tick) -> Tick:
    await ctx.run("fetch", lambda: "page", retry=RetryPolicy(initial_interval=600, max_interval=3600, jitter=0))
    ctx.emit(Ticked(label=req.label))
    return Tick(label=ctx.now().isoformat())


@clocked.handler(deadline=7200)
async def slow(ctx: ObjectContext[Count], req: Tick) -> None:
    await ctx.sleep(3 * 3600)


@clocked.on_event(Ticked)
def ticked(state: Count, event: Ticked) -> None:
    state.n += 1
    state.seen.append(event.label)


async def test_step_backoffs_of_minutes_pass_in_virtual_time() -> None:
    async with SessionTestKit(clocked) as kit:
        started = kit.now
        kit.fail("fetch", RetryableError("upstream down"), times=2)
        result = await kit.call(flaky, "k", Tick(label="x"))
        assert result.ok and result.state.n == 1  # type: ignore[attr-defined]
        # two backoffs without jitter: 600 s, then 1,200 s
        assert (kit.now - started).total_seconds() == pytest.approx(1800, abs=1)


async def test_a_delayed_send_is_delivered_when_time_gets_there() -> None:
    async with SessionTestKit(clocked) as kit:
        await kit.send(flaky, "k", Tick(label="later"), delay=3600)
        await kit.advance(minutes=59)
        assert kit.state(clocked, "k").n == 0  # type: ignore[attr-defined]
        await kit.advance(minutes=1)
        assert kit.state(clocked, "k").seen == ["later"]  # type: ignore[attr-defined]


async def test_a_deadline_ends_a_sleep_that_outlasts_it() -> None:
    async with SessionTestKit(clocked) as kit:
        result = await kit.call(slow, "k", Tick())
        assert isinstance(result.error, InvocationError) and "deadline" in str(result.error)
        assert (kit.now.timestamp() - SessionTestKit(clocked).now.timestamp()) == pytest.approx(7200, abs=1)


breaking = VirtualObject("breaking", state=Count)


@breaking.handler()
async def fetch(ctx: ObjectContext[Count], req: Tick) -> Tick:
    page = await ctx.run(
        "provider",
        lambda: "page",
        retry=RetryPolicy(max_attempts=5, initial_interval=1, max_interval=10, jitter=0),
        circuit=CircuitPolicy(failure_threshold=2, reset_timeout=60),
    )
    return Tick(label=page)


async def test_a_circuit_opens_after_failures_and_lets_a_trial_through_after_its_reset_timeout() -> None:
    async with SessionTestKit(breaking) as kit:
        kit.fail("provider", RetryableError("503"), times=2)
        opened = await kit.call(fetch, "a", Tick())
        # two failures open the breaker; its retry_after (60 s) is over max_interval: the step fails
        assert isinstance(opened.error, InvocationError) and "CircuitOpenError" in str(opened.error)
        assert kit.calls("provider") == 2
        refused = await kit.call(fetch, "b", Tick())  # still open: refused without a call
        assert not refused.ok and kit.calls("provider") == 2
        await kit.advance(seconds=60)
        trial = await kit.call(fetch, "c", Tick())  # half-open: the trial goes through and closes it
        assert trial.reply == Tick(label="page") and kit.calls("provider") == 3


@clocked.handler()
async def nap(ctx: ObjectContext[Count], req: Tick) -> Tick:
    await ctx.sleep(600)
    ctx.emit(Ticked(label=req.label))
    return Tick(label="rested")


@clocked.handler()
async def delegate(ctx: ObjectContext[Count], req: Tick) -> Tick:
    return await ctx.call(nap, "napper", req)  # the other session sleeps ten minutes


async def test_time_skips_while_a_handler_calls_a_session_that_sleeps() -> None:
    async with SessionTestKit(clocked) as kit:
        start = kit.now
        result = await kit.call(delegate, "boss", Tick(label="x"))
        assert result.reply == Tick(label="rested")
        assert [s.name for s in result.steps] == ["call clocked.nap"]
        assert kit.state(clocked, "napper").n == 1  # type: ignore[attr-defined]
        assert (kit.now - start).total_seconds() == pytest.approx(600, abs=1)


# -- the README's approval flow: sleep 30 s, an awakeable with a one-day timeout ---------------


async def test_approval_flow_approved() -> None:
    async with SessionTestKit(approval_flow.agent) as kit:
        pending = await kit.start(approval_flow.publish, "doc", approval_flow.Draft(text="hello"))
        assert not pending.done
        assert [w.wake_at for w in kit.waits()] == [kit.now.replace(second=30)]
        await kit.advance(seconds=30)
        waiting = kit.state(approval_flow.agent, "doc").waiting_for  # type: ignore[attr-defined]
        assert waiting is not None and [w.awakeable for w in kit.waits()] == [waiting]
        kit.fail("llm:final", RetryableError("503"), times=2)  # fallback_after=2: the small model answers
        assert await kit.resolve(waiting, "yes")
        result = await pending.result()
        assert result.reply == approval_flow.Answer(text="ok: hello")
        assert result.step("llm:final").attempts == 3
        assert [type(e).__name__ for e in result.events] == ["ApprovalRequested", "Published"]
        assert result.state.published == ["ok: hello"]  # type: ignore[attr-defined]
        await kit.restart()
        assert kit.state(approval_flow.agent, "doc").published == ["ok: hello"]  # type: ignore[attr-defined]


async def test_approval_flow_times_out_after_a_day_and_survives_a_restart_while_waiting() -> None:
    async with SessionTestKit(approval_flow.agent) as kit:
        start = kit.now
        pending = await kit.start(approval_flow.publish, "doc", approval_flow.Draft(text="hello"))
        await kit.advance(hours=12)
        await kit.restart()  # the wait is durable: it is rebuilt from the log
        result = await pending.result()  # auto-skips to the timeout
        assert isinstance(result.error, InvocationError) and "timed out after 86400" in str(result.error)
        assert (kit.now - start).total_seconds() == pytest.approx(86400 + 30, abs=1)


async def test_a_call_that_waits_for_nothing_that_can_come_is_a_clear_error() -> None:
    waiting = VirtualObject("waiting", state=Count)

    @waiting.handler()
    async def forever(ctx: ObjectContext[Count], req: Tick) -> None:
        await ctx.awakeable(str).result()

    async with SessionTestKit(waiting) as kit:
        with pytest.raises(SessionTestKitError, match="waits for awakeable awk:waiting/k"):
            await kit.call(forever, "k", Tick())


# -- round trips ---------------------------------------------------------------------------


class Noted(BaseModel):
    text: str
    secret: str = Field(default="", exclude=True)  # not serialized: lost on any restart


lossy = VirtualObject("lossy", state=Count)


@lossy.handler()
async def note(ctx: ObjectContext[Count], req: Tick) -> None:
    ctx.emit(Noted(text=req.label, secret="s3cret"))


@lossy.on_event(Noted)
def noted(state: Count, event: Noted) -> None:
    state.seen.append(event.text + event.secret)


async def test_restart_fails_the_test_when_an_event_does_not_round_trip() -> None:
    async with SessionTestKit(lossy) as kit:
        await kit.call(note, "k", Tick(label="a"))
        with pytest.raises(RoundTripError, match="lossy/k"):
            await kit.restart()


# -- the booking saga ------------------------------------------------------------------------


@pytest.fixture
def fast_travel_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def provider(op: str, key: str, price: float = 0.0) -> booking_saga.Booking:
        _, step, _ = key.split(":")
        _, stored = booking_saga.LEDGER.apply(key, op, result={"ref": f"{step}-x", "price": price})
        return booking_saga.Booking.model_validate(stored)

    monkeypatch.setattr(booking_saga.LEDGER, "path", tmp_path / "ledger.jsonl")
    monkeypatch.setattr(booking_saga, "provider", provider)


TRIP = booking_saga.Trip(traveller="Ada", city="Lisbon", nights=3)


async def test_booking_saga_completes_and_a_failed_car_is_compensated_in_reverse_order(fast_travel_api: None) -> None:
    async with SessionTestKit(booking_saga.coordinator) as kit:
        with SagaProbe(booking_saga.booking) as probe:
            done = await run_saga(kit, booking_saga.booking, "trip-1", TRIP)
            assert done.status == "completed" and done.result(booking_saga.charge_card).amount == 320 + 330 + 135
            assert probe.compensations == []
            convertible = TRIP.model_copy(update={"car": "convertible"})
            undone = await run_saga(kit, booking_saga.booking, "trip-2", convertible)
        assert undone.status == "compensated" and undone.failed_step == "car"
        assert probe.compensations == ["hotel", "flight"]
        assert undone.compensated_steps == ["flight", "hotel"]  # in step order
        assert not booking_saga.LEDGER.duplicates()


async def test_booking_saga_step_failing_at_a_given_attempt(fast_travel_api: None) -> None:
    async with SessionTestKit(booking_saga.coordinator) as kit:
        with SagaProbe(booking_saga.booking) as probe:
            probe.fail("charge", RetryableError("card network busy"), at=[1, 2])
            outcome = await run_saga(kit, booking_saga.booking, "trip-3", TRIP)
            assert outcome.status == "completed"
            assert [c.attempt for c in probe.calls if c.step == "charge"] == [1, 2, 3]
            assert probe.compensations == []

            probe.fail("hotel", TerminalError("sold out"), at=[2])  # the hotel's second call overall
            failed = await run_saga(kit, booking_saga.booking, "trip-4", TRIP)
        assert failed.status == "compensated" and failed.failed_step == "hotel"
        assert probe.compensations == ["car", "flight"]
        await kit.restart()
