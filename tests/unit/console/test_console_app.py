"""The console's pages and actions over HTTP (httpx on the ASGI app), against an embedded-log worker.

Each test sends orders to a real in-process worker; some fail for good and are dead-lettered.
The console is then read and driven as an operator's browser would (without running its script).
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from harness import console_sessions
from harness.console_sessions import (
    Approval,
    Hold,
    Order,
    Shipment,
    approve,
    hold,
    orders,
    place,
    shipment,
    shipment_coordinator,
)
from harness.session_harness import assert_eventually
from pydantic import SecretStr

from actors import InvocationError, Settings
from console import ConsoleConfig, create_app
from dlq import DeadLetters
from sagas import SagaClient

pytestmark = pytest.mark.serves(orders, shipment_coordinator, reset=console_sessions.reset)

TOKEN = "s3cret-token"
NASTY = "</pre><script>alert(1)</script>\x1b[2J<img src=x onerror=alert(2)>"


def console(settings: Settings, **config: Any) -> httpx.AsyncClient:
    app = create_app(settings, ConsoleConfig(**config))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8088")


async def fail_one(runtime: Any, key: str, item: str = "anvil") -> None:
    with pytest.raises(InvocationError):
        await runtime.client.call(place, key, Order(item=item, bad=True), timeout=30)


async def letter_ids(settings: Settings) -> list[str]:
    async with DeadLetters(settings) as dead:
        return [letter.id for letter in await dead.all()]


async def placed_anvil(runtime: Any, key: str) -> None:
    """Wait until the session ``orders/<key>`` has placed exactly ``anvil``."""

    async def check() -> None:
        state = await runtime.client.state("orders", key)
        assert state["state"]["placed"] == ["anvil"], state

    await assert_eventually(check, timeout=15)


async def page_when(web: httpx.AsyncClient, path: str, ready: Callable[[str], bool]) -> httpx.Response:
    """GET `path` until its text is `ready`; that page."""

    async def check() -> httpx.Response:
        page = await web.get(path)
        assert ready(page.text), page.text[-2000:]
        return page

    return await assert_eventually(check, timeout=15)


async def test_sessions_list_filters_and_the_session_page_shows_state_and_timeline(runtime: Any) -> None:
    await runtime.client.call(place, "alice", Order(item="kettle"), timeout=30)
    await fail_one(runtime, "bob")
    async with console(runtime.settings) as web:
        listing = await web.get("/sessions")
        assert listing.status_code == 200
        assert 'href="/sessions/orders/alice"' in listing.text and 'href="/sessions/orders/bob"' in listing.text
        failed = await web.get("/sessions", params={"status": "failed"})
        assert "orders/bob" in failed.text and "orders/alice" not in failed.text
        searched = await web.get("/sessions", params={"q": "ali"})
        assert "orders/alice" in searched.text and "orders/bob" not in searched.text
        assert (await web.get("/sessions", params={"status": "nonsense"})).status_code == 400
        assert (await web.get("/sessions", params={"since": "yesterday-ish"})).status_code == 400

        page = await web.get("/sessions/orders/bob")
        assert page.status_code == 200
        assert 'data-status="failed"' in page.text
        assert "step #0 price" in page.text  # the journaled step, with its output
        assert "TerminalError" in page.text and "warehouse refused it" in page.text
        assert 'href="/dead-letters?session=orders%2Fbob"' in page.text
        alice = await web.get("/sessions/orders/alice")
        assert "kettle" in alice.text and 'data-status="idle"' in alice.text
        fragment = await web.get("/fragments/timeline/orders/bob", headers={"X-Console-Fragment": "1"})
        assert fragment.status_code == 200 and "<html" not in fragment.text and "step #0 price" in fragment.text
        missing = await web.get("/sessions/orders/nobody")
        assert missing.status_code == 404 and "no session orders/nobody" in missing.text


async def test_record_text_is_escaped_everywhere_and_no_inline_script_is_served(runtime: Any) -> None:
    key = "k/" + NASTY
    await fail_one(runtime, key, item=NASTY)
    [letter_id] = await letter_ids(runtime.settings)
    async with console(runtime.settings) as web:
        listing = await web.get("/sessions")
        [link] = re.findall(r'href="(/sessions/orders/[^"]+)"', listing.text)
        assert link == "/sessions/orders/" + quote(key, safe="")  # the stable URL of the session
        pages = [
            listing,
            await web.get(html.unescape(link)),
            await web.get("/dead-letters"),
            await web.get(f"/dead-letters/{letter_id}"),
        ]
    for response in pages:
        assert response.status_code == 200, response.text
        assert "<script>alert" not in response.text and "<img src=x" not in response.text
        assert "\x1b" not in response.text
        # The only script is the console's own file; the policy forbids any other.
        assert re.findall(r"<script[^>]*>", response.text) == ['<script src="/static/console.js" defer>']
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[2J" in pages[3].text


async def test_without_a_token_the_console_is_read_only_and_says_why(runtime: Any) -> None:
    await fail_one(runtime, "carol")
    [letter_id] = await letter_ids(runtime.settings)
    async with console(runtime.settings) as web:
        page = await web.get(f"/dead-letters/{letter_id}")
        assert "no token is configured" in page.text and "TETHER_CONSOLE__TOKEN" in page.text
        assert '<form class="action"' not in page.text
        refused = await web.post(f"/actions/dead-letters/{letter_id}/replay", data={"token": "anything"})
        assert refused.status_code == 403 and "no token is configured" in refused.text
    async with console(runtime.settings, token=SecretStr(TOKEN), read_only=True) as web:
        page = await web.get(f"/dead-letters/{letter_id}")
        assert "started read-only" in page.text and '<form class="action"' not in page.text
        refused = await web.post(f"/actions/dead-letters/{letter_id}/discard", data={"token": TOKEN, "reason": "x"})
        assert refused.status_code == 403 and "read-only" in refused.text
    async with DeadLetters(runtime.settings) as dead:
        assert (await dead.show(letter_id)).status == "pending"  # nothing happened


async def test_every_action_needs_the_right_token(runtime: Any) -> None:
    await fail_one(runtime, "dave")
    [letter_id] = await letter_ids(runtime.settings)
    actions = [
        (f"/actions/dead-letters/{letter_id}/replay", {}),
        (f"/actions/dead-letters/{letter_id}/discard", {"reason": "dup"}),
        ("/actions/dead-letters/bulk", {"action": "discard", "reason": "dup", "confirm": "yes"}),
        ("/actions/restart/orders/dave", {"from_step": "0", "confirm": "yes"}),
        ("/actions/saga-retry/booking/trip-1", {}),
        ("/actions/cancel/orders/dave", {"confirm": "yes"}),
        ("/actions/awakeable/orders/dave", {"awakeable": "x", "outcome": "resolve", "value": "1"}),
    ]
    async with console(runtime.settings, token=SecretStr(TOKEN)) as web:
        page = await web.get(f"/dead-letters/{letter_id}")
        assert '<form class="action"' in page.text and 'name="token"' in page.text
        for url, fields in actions:
            for token, why in ((None, "no token was given"), ("wrong", "the token is wrong")):
                data = dict(fields) if token is None else {**fields, "token": token}
                refused = await web.post(url, data=data)
                assert refused.status_code == 403, (url, refused.text)
                assert why in refused.text
    async with DeadLetters(runtime.settings) as dead:
        assert (await dead.show(letter_id)).status == "pending"
    history = await runtime.client.state("orders", "dave")
    assert history["state"]["placed"] == []


async def test_replay_with_dry_run_then_for_real_and_the_session_succeeds(runtime: Any) -> None:
    await fail_one(runtime, "erin")
    [letter_id] = await letter_ids(runtime.settings)
    async with console(runtime.settings, token=SecretStr(TOKEN), token_holder="alice") as web:
        shown = await web.get(f"/dead-letters/{letter_id}")
        assert "Stack trace" in shown.text and "warehouse refused it" in shown.text
        assert "tether.handler" in shown.text  # the headers
        preview = await web.post(f"/actions/dead-letters/{letter_id}/replay", data={"token": TOKEN, "dry_run": "yes"})
        assert preview.status_code == 200 and "dry run of replay" in preview.text and "would-replay" in preview.text
        assert f"dlq-replay:{letter_id}" in preview.text and "anvil" in preview.text
        transformed = await web.post(
            f"/actions/dead-letters/{letter_id}/replay",
            data={"token": TOKEN, "dry_run": "yes", "transform": "harness.console_sessions:shout"},
        )
        assert transformed.status_code == 200 and "ANVIL" in transformed.text  # the transformed payload
        async with DeadLetters(runtime.settings) as dead:
            assert (await dead.show(letter_id)).status == "pending"
        console_sessions.CAUSE.fix()
        done = await web.post(f"/actions/dead-letters/{letter_id}/replay", data={"token": TOKEN})
        assert done.status_code == 200 and 'data-outcome="replayed"' in done.text
        async with DeadLetters(runtime.settings) as dead:
            letter = await dead.show(letter_id)
        assert letter.status == "replayed" and letter.resolution is not None
        assert letter.resolution.by.startswith("alice via console ")
        await placed_anvil(runtime, "erin")
        letter_page = await web.get(f"/dead-letters/{letter_id}")
        assert 'data-status="replayed"' in letter_page.text and "alice via console" in letter_page.text


async def test_bulk_discard_on_a_filter_reports_progress(runtime: Any) -> None:
    for key in ("f1", "f2", "f3"):
        await fail_one(runtime, key)
    async with console(runtime.settings, token=SecretStr(TOKEN)) as web:
        listing = await web.get("/dead-letters", params={"session": "orders"})
        assert "3 dead letter(s)" in listing.text and "TerminalError" in listing.text
        assert "Last failures by hour" in listing.text
    async with console(runtime.settings, page_size=2) as web:
        first = await web.get("/dead-letters", params={"session": "orders"})
        assert first.text.count('<tr class="letter"') == 2 and "page 1 of 2" in first.text
        older = re.findall(r'<a href="([^"]+)">older</a>', first.text)
        assert older == ["/dead-letters?session=orders&amp;page=1"]
        second = await web.get(html.unescape(older[0]))
        assert second.text.count('<tr class="letter"') == 1 and "page 2 of 2" in second.text
    async with console(runtime.settings, token=SecretStr(TOKEN)) as web:
        not_confirmed = await web.post(
            "/actions/dead-letters/bulk", data={"token": TOKEN, "action": "discard", "reason": "dup"}
        )
        assert not_confirmed.status_code == 400 and "not confirmed" in not_confirmed.text
        started = await web.post(
            "/actions/dead-letters/bulk",
            data={"token": TOKEN, "action": "discard", "reason": "duplicates", "confirm": "yes", "session": "orders"},
        )
        assert started.status_code == 303
        job_url = started.headers["location"]
        for _ in range(200):
            progress = await web.get("/fragments/" + job_url.removeprefix("/"), headers={"X-Console-Fragment": "1"})
            if 'data-finished="yes"' in progress.text:
                break
            await asyncio.sleep(0.05)
        assert "3 of 3 handled (3 discarded)" in progress.text
        assert (await web.get(job_url)).status_code == 200
    async with DeadLetters(runtime.settings) as dead:
        letters = await dead.all()
    assert {x.status for x in letters} == {"discarded"}
    assert all(x.resolution is not None and x.resolution.reason == "duplicates" for x in letters)


async def test_restart_from_a_step_needs_confirmation_and_runs_again(
    runtime: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tether.console.audit")
    await fail_one(runtime, "gus")
    console_sessions.CAUSE.fix()
    async with console(runtime.settings, token=SecretStr(TOKEN)) as web:
        page = await web.get("/sessions/orders/gus")
        assert 'action="/actions/restart/orders/gus"' in page.text
        unconfirmed = await web.post("/actions/restart/orders/gus", data={"token": TOKEN, "from_step": "1"})
        assert unconfirmed.status_code == 400 and "not confirmed" in unconfirmed.text
        done = await web.post("/actions/restart/orders/gus", data={"token": TOKEN, "from_step": "1", "confirm": "yes"})
        assert done.status_code == 200 and "restarted as message" in done.text
    audited = [r.getMessage() for r in caplog.records if r.name == "tether.console.audit"]
    assert any(m.startswith("console-operator via console ") and "restart orders/gus from step 1" in m for m in audited)
    await placed_anvil(runtime, "gus")


async def test_sagas_page_and_errors_for_what_does_not_exist(runtime: Any) -> None:
    await runtime.client.call(place, "hal", Order(item="x"), timeout=30)
    async with console(runtime.settings) as web:
        sagas = await web.get("/sagas")
        assert sagas.status_code == 200 and "0 saga(s)" in sagas.text
        assert (await web.get("/sagas/booking/none")).status_code == 404
        assert (await web.get("/dead-letters/9-999")).status_code == 404
        assert (await web.get("/dead-letters", params={"status": "lost"})).status_code == 400
        assert (await web.get("/jobs/nope")).status_code == 400


async def test_a_namespace_that_does_not_exist_is_an_error_page_and_nothing_is_created(tmp_path: Any) -> None:
    settings = Settings(data_dir=tmp_path / "none", namespace="nothing")
    async with console(settings) as web:
        for url in ("/sessions", "/dead-letters", "/sagas"):
            response = await web.get(url)
            assert response.status_code == 404, (url, response.text)
            assert "nothing" in response.text
    assert not (tmp_path / "none").exists()


async def test_cancel_a_waiting_invocation_with_confirmation(runtime: Any) -> None:
    await runtime.client.send(hold, "ivy", Hold())
    async with console(runtime.settings, token=SecretStr(TOKEN), token_holder="bea") as web:
        page = await page_when(web, "/sessions/orders/ivy", lambda text: 'data-status="waiting"' in text)
        assert 'action="/actions/cancel/orders/ivy"' in page.text
        [invocation] = re.findall(r'<select name="invocation"><option value="([^"]+)"', page.text)[:1]
        unconfirmed = await web.post("/actions/cancel/orders/ivy", data={"token": TOKEN, "invocation": invocation})
        assert unconfirmed.status_code == 400 and "not confirmed" in unconfirmed.text
        done = await web.post(
            "/actions/cancel/orders/ivy",
            data={"token": TOKEN, "invocation": invocation, "reason": "not needed", "confirm": "yes"},
        )
        assert done.status_code == 200 and "cancelled invocation" in done.text and "bea via console" in done.text
        page = await page_when(web, "/sessions/orders/ivy", lambda text: 'data-status="waiting"' not in text)
        assert "InvocationCancelledError" in page.text and "nothing running or waiting to cancel" in page.text


async def test_sagas_by_status_a_saga_timeline_and_retry_of_a_stuck_one(runtime: Any) -> None:
    sagas = SagaClient(runtime.client)
    assert (await (await sagas.start(shipment, "s-ok", Shipment())).result()).status == "completed"
    console_sessions.RELEASE_BROKEN["value"] = True
    outcome = await (await sagas.start(shipment, "s-stuck", Shipment(card="declined"))).result()
    assert outcome.status == "stuck"
    async with console(runtime.settings, token=SecretStr(TOKEN)) as web:
        listing = await web.get("/sagas")
        assert "2 saga(s)" in listing.text and 'href="/sagas/shipment/s-stuck"' in listing.text
        stuck_only = await web.get("/sagas", params={"status": "stuck"})
        assert "s-stuck" in stuck_only.text and "s-ok" not in stuck_only.text
        page = await web.get("/sagas/shipment/s-stuck")
        assert 'data-status="stuck"' in page.text and "card declined" in page.text
        assert "compensation attempt 1" in page.text and "the warehouse is offline" in page.text
        assert 'action="/actions/saga-retry/shipment/s-stuck"' in page.text
        console_sessions.RELEASE_BROKEN["value"] = False
        retried = await web.post("/actions/saga-retry/shipment/s-stuck", data={"token": TOKEN})
        assert retried.status_code == 200 and 'class="done" id="retry-result"' in retried.text
        page = await page_when(web, "/sagas/shipment/s-stuck", lambda text: 'data-status="compensated"' in text)
        assert 'data-status="compensated"' in page.text


async def test_an_awakeable_is_resolved_from_the_session_page(runtime: Any) -> None:
    call = asyncio.ensure_future(runtime.client.call(approve, "jo", Hold(seconds=60), timeout=60))
    async with console(runtime.settings, token=SecretStr(TOKEN), token_holder="kim") as web:
        page = await page_when(web, "/sessions/orders/jo", lambda text: 'name="awakeable"' in text)
        [awakeable] = re.findall(r'name="awakeable" value="([^"]+)"', page.text)
        form = {"token": TOKEN, "awakeable": html.unescape(awakeable), "outcome": "resolve"}
        bad = await web.post("/actions/awakeable/orders/jo", data={**form, "value": "yes"})
        assert bad.status_code == 400 and "must be JSON" in bad.text
        done = await web.post("/actions/awakeable/orders/jo", data={**form, "value": '"yes"'})
        assert done.status_code == 200 and "resolved awakeable" in done.text, done.text
        assert await call == Approval(verdict="yes")
        again = await web.post("/actions/awakeable/orders/jo", data={**form, "value": '"no"'})
        assert "already completed by kim via console" in again.text


async def test_a_request_naming_another_host_is_refused(runtime: Any) -> None:
    async with console(runtime.settings) as web:
        assert (await web.get("/sessions", headers={"host": "attacker.example"})).status_code == 400
        assert (await web.get("/healthz", headers={"host": "localhost:8088"})).status_code == 200


def test_a_done_entry_without_a_start_time_shows_no_duration() -> None:
    from actors.inspection.views import history_item
    from actors.protocol.entries import Done

    failed = Done("m1", "place", [], 1, 0, None, {"type": "TerminalError", "message": "x"}, 1, 0, 1_790_000_000_000)
    assert history_item(5, failed)["duration_ms"] is None
    timed = Done("m2", "place", [], 2, 1, {"ok": 1}, None, 1, 1_790_000_000_000, 1_790_000_000_250)
    assert history_item(6, timed)["duration_ms"] == 250


def test_errors_map_to_status_codes_that_say_whose_mistake_it_is() -> None:
    from actors.errors import SessionNotFoundError
    from console.app import _status
    from console.errors import ActionRefusedError
    from dlq import InvalidFilterError
    from eventstore.errors import LogUnavailableError, UsageError
    from sagas import SagaError, SagaNotFoundError

    assert _status(ActionRefusedError("no")) == 403
    assert _status(SessionNotFoundError("gone")) == 404 and _status(SagaNotFoundError("gone")) == 404
    assert _status(UsageError("typo")) == 400 and _status(InvalidFilterError("bad")) == 400
    assert _status(SagaError("two sagas have that id")) == 400
    assert _status(LogUnavailableError("broker down")) == 503
