"""The package as users install it: a wheel built from this tree, installed in a clean venv.

The venv gets the wheel only (``pip install --no-deps``); its dependencies come from the
project's environment through a ``.pth`` line (offline, and the tree itself is not on the path),
and Ray is made unimportable: the quickstart (embedded log, client, worker) runs without it, and
``tether serve --ray`` says to install the extra. Building needs setuptools>=77, which pip
fetches into its isolated build environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

NO_RAY = """
import importlib.abc, sys

class _NoRay(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoRay())
"""


@pytest.mark.slow
def test_the_wheel_installs_and_runs_the_quickstart_without_ray(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = dist.glob("tether-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert {"actors/py.typed", "dlq/py.typed", "eventstore/kafka/localbroker/pom.xml"} <= names
    assert not any(n.startswith("tests/") for n in names)
    ray_lines = [line for line in metadata.splitlines() if line.startswith("Requires-Dist: ray")]
    assert ray_lines and all("extra ==" in line for line in ray_lines), ray_lines  # Ray is an extra
    assert "dlq = dlq.cli:dlq" in entry_points and "tether = actors.cli.main:main" in entry_points

    # Nothing of the tree on the path (PYTHONPATH would show pip the tree's tether.egg-info).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TETHER_", "PYTHON"))}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
    )
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (site / "sitecustomize.py").write_text(NO_RAY)

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "examples" / "quickstart.py", work / "quickstart.py")
    where = subprocess.run(
        [str(python), "-c", "import actors, dlq; print(actors.__file__); import ray"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.stdout.startswith(str(venv)), where.stderr  # the wheel's copy, not the tree
    assert "No module named 'ray'" in where.stderr

    version = subprocess.run([str(venv / "bin" / "tether"), "--version"], env=env, capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("tether ")

    quickstart = subprocess.run(
        [str(python), "quickstart.py"], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert quickstart.returncode == 0, quickstart.stderr
    assert "answers: 3 version: 3" in quickstart.stdout

    on_ray = subprocess.run(
        [str(venv / "bin" / "tether"), "serve", "quickstart:agent", "--ray", "--data-dir", str(tmp_path / "d")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert on_ray.returncode == 2 and "pip install 'tether[ray]'" in on_ray.stderr, on_ray.stderr
    assert "Traceback" not in on_ray.stderr
