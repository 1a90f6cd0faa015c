"""The web console in a real browser: headless Chromium (Debian's package) driven by Selenium.

The console is served by uvicorn on 127.0.0.1 against a worker on the real Kafka broker. One
test does what an operator does about a failure: find the failed session, open its timeline,
replay its dead letter (a dry run first) and watch the session succeed. Another takes the
screenshots the README shows (docs/console/). The browser is the system's Chromium and
chromedriver (`apt-get install chromium chromium-driver`, which .ci/run does); nothing is
downloaded. Blocking browser calls run in a thread, so the in-process worker keeps running.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from harness import console_sessions
from harness.console_sessions import Order, Shipment, orders, place, shipment, shipment_coordinator
from pydantic import SecretStr

from actors import InvocationError, Settings
from console import ConsoleConfig, create_app
from sagas import SagaClient

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.serves(orders, shipment_coordinator, reset=console_sessions.reset, backend="kafka"),
]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
TOKEN = "browser-test-token"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """The console app on uvicorn in a thread of its own (with its own event loop)."""

    def __init__(self, settings: Settings, config: ConsoleConfig) -> None:
        self.port = _free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(settings, config), host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, name="console", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the console did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        if os.environ.get("CI") or os.environ.get("TETHER_REQUIRE_KAFKA"):
            pytest.fail("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
async def served(runtime: Any) -> AsyncIterator[Served]:
    config = ConsoleConfig(token=SecretStr(TOKEN), token_holder="test-operator", poll_seconds=1.0)
    served = Served(runtime.settings, config)
    await asyncio.to_thread(served.__enter__)
    try:
        yield served
    finally:
        await asyncio.to_thread(served.__exit__)


async def in_browser(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def wait_for(driver: Any, what: Callable[[Any], Any], timeout: float = 60.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(what)


async def test_an_operator_finds_a_failed_session_replays_its_dead_letter_and_sees_it_succeed(
    runtime: Any, served: Served, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    with pytest.raises(InvocationError):
        await runtime.client.call(place, "order-7", Order(item="anvil", bad=True), timeout=60)

    def find_and_open() -> None:
        browser.get(served.url + "/sessions")
        browser.find_element(By.CSS_SELECTOR, "select[name=status] option[value=failed]").click()
        browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
        wait_for(browser, lambda d: "status=failed" in d.current_url)
        rows = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.session"))
        assert [r.get_attribute("data-status") for r in rows] == ["failed"]
        rows[0].find_element(By.LINK_TEXT, "order-7").click()
        wait_for(browser, lambda d: d.find_elements(By.ID, "timeline"))
        assert browser.current_url == served.url + "/sessions/orders/order-7"  # a stable URL to paste
        timeline = browser.find_element(By.ID, "timeline").text
        assert "step #0 price" in timeline and "TerminalError" in timeline and "warehouse refused it" in timeline
        browser.find_element(By.LINK_TEXT, "its dead letters").click()
        letters = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.letter"))
        assert len(letters) == 1
        letters[0].find_element(By.TAG_NAME, "a").click()
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "pre.trace"))
        assert "warehouse refused it" in browser.find_element(By.CSS_SELECTOR, "pre.trace").text

    await in_browser(find_and_open)
    letter_url = await in_browser(lambda: browser.current_url)

    def dry_run() -> None:
        form = browser.find_element(By.CSS_SELECTOR, "form.action[action$='/replay']")
        form.find_element(By.NAME, "token").send_keys(TOKEN)
        form.find_element(By.TAG_NAME, "button").click()
        report = wait_for(browser, lambda d: d.find_elements(By.ID, "report"))[0].text
        assert report.startswith("dry run of replay: 1 dead letter(s): 1 would-replay")
        assert "anvil" in browser.find_element(By.TAG_NAME, "main").text  # the payload it would send

    await in_browser(dry_run)
    console_sessions.CAUSE.fix()

    def replay() -> None:
        browser.get(letter_url)
        form = browser.find_element(By.CSS_SELECTOR, "form.action[action$='/replay']")
        token = form.find_element(By.NAME, "token")
        wait_for(browser, lambda _: token.get_attribute("value") == TOKEN)  # kept for this tab by the script
        form.find_element(By.NAME, "dry_run").click()  # untick: for real
        form.find_element(By.TAG_NAME, "button").click()
        assert wait_for(browser, lambda d: d.find_elements(By.ID, "report"))[0].text.startswith(
            "replay: 1 dead letter(s): 1 replayed"
        )

    await in_browser(replay)

    def session_succeeds() -> None:
        browser.get(served.url + "/sessions/orders/order-7")
        # The timeline refreshes by itself: the replayed invocation's finish appears without a reload.
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline .entry.done[data-kind=done]"))
        browser.refresh()
        status = browser.find_element(By.ID, "session-status")
        assert status.get_attribute("data-status") == "idle"
        browser.get(letter_url)
        assert browser.find_element(By.ID, "letter-status").get_attribute("data-status") == "replayed"
        assert "test-operator via console" in browser.find_element(By.CSS_SELECTOR, "ul.audit").text

    await in_browser(session_succeeds)
    state = await runtime.client.state("orders", "order-7")
    assert state["state"]["placed"] == ["anvil"]


async def test_a_new_dead_letter_appears_live_and_a_wrong_token_is_refused_with_why(
    runtime: Any, served: Served, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    def open_list() -> None:
        browser.get(served.url + "/dead-letters")
        assert not browser.find_elements(By.CSS_SELECTOR, "tr.letter")

    await in_browser(open_list)
    with pytest.raises(InvocationError):
        await runtime.client.call(place, "order-8", Order(item="anvil", bad=True), timeout=60)

    def wrong_token() -> None:
        # The new dead letter shows up on the open page by itself (no reload).
        rows = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#letters tr.letter"))
        rows[0].find_element(By.TAG_NAME, "a").click()
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "pre.trace"))
        form = browser.find_element(By.CSS_SELECTOR, "form.action[action$='/discard']")
        form.find_element(By.NAME, "reason").send_keys("duplicate")
        form.find_element(By.NAME, "token").send_keys("not-the-token")
        form.find_element(By.TAG_NAME, "button").click()
        error = wait_for(browser, lambda d: d.find_elements(By.ID, "error"))[0]
        assert "discard refused: the token is wrong" in error.text

    await in_browser(wrong_token)


async def test_screenshots_of_the_three_main_pages(runtime: Any, served: Served, browser: Any, tmp_path: Path) -> None:
    """Screenshots of the main pages; into docs/console/ (the README's) with TETHER_UPDATE_SCREENSHOTS=1."""
    from selenium.webdriver.common.by import By

    for key, item in (("order-1", "kettle"), ("order-2", "teapot")):
        await runtime.client.call(place, key, Order(item=item), timeout=60)
    for key in ("order-3", "order-4"):
        with pytest.raises(InvocationError):
            await runtime.client.call(place, key, Order(item="anvil", bad=True), timeout=60)
    sagas = SagaClient(runtime.client)
    await (await sagas.start(shipment, "ship-1", Shipment())).result(timeout=60)
    await (await sagas.start(shipment, "ship-2", Shipment(card="declined"))).result(timeout=60)
    shots_dir = DOCS if os.environ.get("TETHER_UPDATE_SCREENSHOTS") == "1" else tmp_path
    shots_dir.mkdir(parents=True, exist_ok=True)

    def shoot() -> list[Path]:
        shots = []
        for name, path, marker in (
            ("sessions", "/sessions", "tr.session"),
            ("session", "/sessions/orders/order-3", "#timeline .entry"),
            ("dead-letters", "/dead-letters", "tr.letter"),
            ("sagas", "/sagas", "tr.saga"),
            ("saga", "/sagas/shipment/ship-2", "h3"),
        ):
            browser.get(served.url + path)
            assert browser.find_elements(By.CSS_SELECTOR, marker), path
            target = shots_dir / f"{name}.png"
            assert browser.save_screenshot(str(target))
            shots.append(target)
        return shots

    for shot in await in_browser(shoot):
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
