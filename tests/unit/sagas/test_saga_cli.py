"""`tether saga list|show|retry` on the embedded log, through the installed `tether` entry point
group; and the README's booking example, run as a script."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from actors.cli import build

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "workloads"))

from session_harness import Runtime, make_settings, open_runtime  # noqa: E402
from test_saga_coordinator import BROKEN, CALLS, EFFECTS, Order, agent, booking, coordinator  # noqa: E402

from sagas import SagaClient  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    # The CLI configures the root logger for its process; give the test's back afterwards.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
async def runtime(tmp_path: Path, namespace: str) -> AsyncIterator[Runtime]:
    CALLS.clear()
    EFFECTS.clear()
    BROKEN.clear()
    settings = make_settings("embedded", tmp_path, namespace, partitions=2)
    async with open_runtime([coordinator, agent], settings) as rt:
        yield rt


async def tether(runtime: Runtime, *args: str) -> Result:
    """Run `tether ARGS` in a thread (the command runs its own event loop)."""
    options = ["--data-dir", str(runtime.settings.data_dir), "-n", runtime.settings.namespace]
    cmd = [*args[:2], *options, *args[2:]]
    return await asyncio.to_thread(CliRunner().invoke, build(), cmd)


async def test_list_show_and_retry(runtime: Runtime) -> None:
    sagas = SagaClient(runtime.client)
    await (await sagas.start(booking, "ok-1", Order())).result(timeout=30)
    await (await sagas.start(booking, "bad-1", Order(script={"car:action": ["fatal"]}))).result(timeout=30)
    BROKEN.add("flight:compensation")
    stuck = await sagas.start(booking, "stuck-1", Order(script={"charge:action": ["fatal"]}))
    assert (await stuck.result(timeout=30)).status == "stuck"

    listed = await tether(runtime, "saga", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {r["saga_id"]: r for r in map(json.loads, listed.output.splitlines())}
    assert {k: r["status"] for k, r in rows.items()} == {
        "ok-1": "completed", "bad-1": "compensated", "stuck-1": "stuck",
    }
    assert rows["bad-1"]["note"].startswith("car: TerminalError")
    only = await tether(runtime, "saga", "list", "--status", "stuck", "--json")
    assert [json.loads(line)["saga_id"] for line in only.output.splitlines()] == ["stuck-1"]
    table = await tether(runtime, "saga", "list")
    assert table.exit_code == 0 and "stuck-1" in table.output and "3 saga(s)" in table.output

    shown = await tether(runtime, "saga", "show", "stuck-1", "--json")
    assert shown.exit_code == 0, shown.output
    view = json.loads(shown.output)
    steps = {s["name"]: s for s in view["state"]["steps"]}
    assert view["state"]["status"] == "stuck" and view["saga"] == "booking"
    assert steps["flight"]["status"] == "compensation_failed"
    assert steps["flight"]["compensation_error"]["message"] == "flight:compensation service is down"
    assert len(steps["flight"]["compensation_attempts"]) == 3
    assert steps["charge"]["error"]["type"] == "TerminalError"
    assert steps["hotel"]["result"] == {"ref": "ref-stuck-1:hotel:action"}
    assert [f["handler"] for f in view["failures"]] == ["park"]
    human = await tether(runtime, "saga", "show", "stuck-1")
    assert "stuck" in human.output and "flight" in human.output and "dead-lettered" in human.output

    missing = await tether(runtime, "saga", "show", "nope")
    assert missing.exit_code == 1 and "no saga 'nope'" in missing.output

    BROKEN.clear()
    retried = await tether(runtime, "saga", "retry", "stuck-1")
    assert retried.exit_code == 0, retried.output
    assert "resumed its compensation" in retried.output
    outcome = await sagas.handle(booking, "stuck-1").result(timeout=30)
    assert outcome.status == "compensated"
    again = await tether(runtime, "saga", "retry", "stuck-1", "--saga", "booking")
    assert again.exit_code == 1 and "nothing to retry" in again.output


def test_the_booking_example_runs_and_shows_the_compensations(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "booking_saga.py")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "BOOKING_LEDGER": str(tmp_path / "ledger.jsonl"), "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "trip-1 (Ada, compact car): completed" in out
    assert "trip-2 (Grace, convertible car): compensated, car failed: no convertibles left in Lisbon" in out
    trip2 = out[out.index("trip-2 (") :]
    assert trip2.index("cancel hotel") < trip2.index("cancel flight")
    assert "rent car" not in trip2
