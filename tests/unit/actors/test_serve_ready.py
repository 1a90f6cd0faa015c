"""`tether serve` says once that it is ready, and the embedded log it creates is its owner's only."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path

from harness.cli import TETHER
from harness.session_harness import REPO

from eventstore import EmbeddedLog


def serve(data_dir: Path, *extra: str) -> tuple[str, int, str]:
    """Start `tether serve` on the quickstart, read its first stdout line, stop it by its pid."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "examples"), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [*TETHER, "serve", "quickstart:agent", "--data-dir", str(data_dir), "-n", "ready", "--partitions", "3", *extra],
        cwd=REPO / "examples",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    return line, proc.pid, err


def test_serve_prints_one_ready_line(tmp_path: Path) -> None:
    line, pid, err = serve(tmp_path / "data")
    assert line.startswith("tether serve: ready; namespace ready, embedded log in "), (line, err)
    assert f"{tmp_path / 'data'}" in line and "3 partitions" in line and f"pid {pid}" in line
    assert "Traceback" not in err

    document, pid, err = serve(tmp_path / "data", "--json")
    ready = json.loads(document)
    assert ready["ready"] is True and ready["namespace"] == "ready" and ready["pid"] == pid, err


async def test_the_embedded_log_is_created_for_its_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    log = EmbeddedLog(data)
    await log.start()
    await log.close()
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(log.path).st_mode) == 0o600


async def test_the_embedded_durability_is_a_setting(tmp_path: Path) -> None:
    from eventstore import LogSettings, open_log

    levels = {}
    for fsync in (False, True):
        log = open_log(LogSettings(backend="embedded", data_dir=tmp_path / str(fsync), embedded_fsync=fsync))
        await log.start()
        try:
            assert isinstance(log, EmbeddedLog)
            levels[fsync] = log.db.execute("PRAGMA synchronous").fetchone()[0]
        finally:
            await log.close()
    assert levels == {False: 1, True: 2}  # NORMAL, FULL
