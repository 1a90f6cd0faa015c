"""`tether saga list|show|retry` on the embedded log, run as the installed `tether` command (so
the entry point is tested too); and the README's booking example, run as a script."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from harness.cli import Result
from harness.cli import run as run_tether
from harness.saga_workload import BROKEN, Order, agent, booking, coordinator, reset
from harness.session_harness import Runtime, assert_eventually, make_settings, open_runtime

from actors import Settings
from actors.cli.main import build
from actors.runtime.deadletters import KEY
from sagas import SagaClient  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


pytestmark = pytest.mark.serves(coordinator, agent, reset=reset)


async def _three_sagas(settings: Settings) -> None:
    reset()
    async with open_runtime([coordinator, agent], settings) as rt:
        sagas = SagaClient(rt.client)
        await (await sagas.start(booking, "ok-1", Order())).result(timeout=30)
        await (await sagas.start(booking, "bad-1", Order(script={"car:action": ["fatal"]}))).result(timeout=30)
        BROKEN.add("flight:compensation")
        stuck = await sagas.start(booking, "stuck-1", Order(script={"charge:action": ["fatal"]}))
        assert (await stuck.result(timeout=30)).status == "stuck"
        await assert_eventually(lambda: _has_dead_letter(rt))
    BROKEN.clear()


async def _has_dead_letter(rt: Runtime) -> None:
    assert [r for r in await rt.dead_letters() if r.header(KEY) == b"stuck-1"]


@pytest.mark.usefixtures("keep_logging")
def test_list_and_show_read_the_log(tmp_path: Path, namespace: str) -> None:
    settings = make_settings("embedded", tmp_path, namespace, partitions=2)
    asyncio.run(_three_sagas(settings))  # no worker runs from here on

    def tether_saga(*args: str) -> Any:
        options = ["--data-dir", str(tmp_path), "-n", namespace]
        return CliRunner().invoke(build(), ["saga", args[0], *options, *args[1:]])

    listed = tether_saga("list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {r["saga_id"]: r for r in json.loads(listed.output)["items"]}
    assert {k: r["status"] for k, r in rows.items()} == {
        "ok-1": "completed",
        "bad-1": "compensated",
        "stuck-1": "stuck",
    }
    assert rows["bad-1"]["note"].startswith("car: TerminalError")
    assert rows["ok-1"]["steps_done"] == rows["ok-1"]["steps"] == 5
    only = tether_saga("list", "--status", "stuck", "--json")
    assert [item["saga_id"] for item in json.loads(only.output)["items"]] == ["stuck-1"]
    table = tether_saga("list")
    assert table.exit_code == 0 and "stuck-1" in table.output and "3 saga(s)" in table.output

    shown = tether_saga("show", "stuck-1", "--json")
    assert shown.exit_code == 0, shown.output
    view = json.loads(shown.output)
    steps = {s["name"]: s for s in view["state"]["steps"]}
    assert view["state"]["status"] == "stuck" and view["saga"] == "booking"
    assert steps["flight"]["status"] == "compensation_failed"
    assert steps["flight"]["compensation_error"]["message"] == "flight:compensation service is down"
    assert len(steps["flight"]["compensation_attempts"]) == 3
    assert steps["charge"]["error"]["type"] == "TerminalError"
    assert steps["hotel"]["result"] == {"ref": "ref-booking/stuck-1:hotel:action"}
    assert steps["hotel"]["attempts"][0]["started"] <= steps["hotel"]["attempts"][0]["ended"]
    assert [f["handler"] for f in view["failures"]] == ["park"]
    human = tether_saga("show", "stuck-1")
    assert human.exit_code == 0
    assert "stuck" in human.output and "flight" in human.output and "dead-lettered" in human.output

    missing = tether_saga("show", "nope")
    assert missing.exit_code == 2 and "no saga 'nope'" in missing.output


async def test_retry_resumes_a_stuck_saga(runtime: Runtime) -> None:
    BROKEN.add("flight:compensation")
    sagas = SagaClient(runtime.client)
    stuck = await sagas.start(booking, "stuck-2", Order(script={"car:action": ["fatal"]}))
    assert (await stuck.result(timeout=30)).status == "stuck"
    BROKEN.clear()  # the cause is fixed
    retried = await tether(runtime, "saga", "retry", "stuck-2")
    assert retried.exit_code == 0, retried.output
    assert "resumed its compensation" in retried.output
    assert (await stuck.result(timeout=30)).status == "compensated"
    again = await tether(runtime, "saga", "retry", "stuck-2", "--saga", "booking")
    assert again.exit_code == 1 and "nothing to retry" in again.output


def test_the_booking_example_runs_and_shows_the_compensations(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "booking_saga.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "BOOKING_LEDGER": str(tmp_path / "ledger.jsonl"), "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "trip-1 (Ada, compact car): completed" in out
    assert "trip-2 (Grace, convertible car): compensated, car failed: no convertibles left in Lisbon" in out
    trip2 = out[out.index("trip-2 (") :]
    assert trip2.index("cancel hotel") < trip2.index("cancel flight")
    assert "rent car" not in trip2


async def tether(runtime: Runtime, *args: str) -> Result:
    """``tether ARGS`` against the runtime's namespace, as a process of its own."""
    return await run_tether(runtime.settings, *args, timeout=60)
