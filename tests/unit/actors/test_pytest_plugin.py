"""The kit's pytest plugin: declared as a ``pytest11`` entry point, and a user's test file that
needs no set-up code runs with its fixtures (in a pytest process of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

USER_TESTS = """
import tempfile

import pytest
from pydantic import BaseModel
from actors import ObjectContext, RuntimeSettings, VirtualObject


class Counter(BaseModel):
    n: int = 0


class Add(BaseModel):
    by: int


class Added(BaseModel):
    by: int


counter = VirtualObject("counter", state=Counter)


@counter.handler()
async def add(ctx: ObjectContext[Counter], req: Add) -> Counter:
    await ctx.sleep(3600)  # an hour, in virtual time
    ctx.emit(Added(by=req.by))
    return ctx.state


@counter.on_event(Added)
def added(state: Counter, event: Added) -> None:
    state.n += event.by


@pytest.fixture
def tether_objects():
    return [counter]


async def test_with_the_fixture(session_kit):
    result = await session_kit.call(add, "c", Add(by=2))
    assert result.reply == Counter(n=2)
    assert (session_kit.now.timestamp() % 86400) == 3600


@pytest.mark.tether(counter, partitions=3)
async def test_with_the_marker(session_kit):
    assert session_kit.settings.partitions == 3
    await session_kit.call(add, "c", Add(by=1))


async def test_replayer_fixture(replayer):
    assert list(replayer.objects) == ["counter"]


BLOBS = RuntimeSettings(blob_threshold_bytes=1000, blob_dir=tempfile.mkdtemp())


@pytest.mark.tether(counter, runtime=BLOBS)
async def test_the_replayer_reads_the_kits_blob_store(session_kit, replayer):
    assert replayer.runtime == session_kit.settings.runtime == BLOBS
"""


def test_the_plugin_is_registered_by_entry_point() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"tether": "actors.testing.pytest_plugin"}


def test_a_user_test_file_needs_no_setup(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env = {k: v for k, v in env.items() if not k.startswith("TETHER_")}
    installed = any(e.value == "actors.testing.pytest_plugin" for e in entry_points(group="pytest11"))
    # Until Tether is installed again with this entry point, -p loads the plugin as it would.
    plugin = [] if installed else ["-p", "actors.testing.pytest_plugin"]
    cmd = [sys.executable, "-m", "pytest", *plugin, "-p", "no:cacheprovider"]
    cmd += ["-o", "asyncio_mode=auto", "-q", "test_user.py"]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 passed" in out.stdout
