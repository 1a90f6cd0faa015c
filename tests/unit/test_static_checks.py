"""Guards: mypy --strict, the import layers, and the pinned public exports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_mypy_strict_on_packages_and_typing_checks() -> None:
    result = run(str(BIN / "mypy"), "eventstore", "actors", "sagas", "dlq", "console", "tests/typing")
    assert result.returncode == 0, result.stdout + result.stderr


SOURCES = ("eventstore", "actors", "sagas", "dlq", "console", "tests", "bench", "examples")


def test_ruff_lint_and_docstrings() -> None:
    result = run(str(BIN / "ruff"), "check", *SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = run(str(BIN / "ruff"), "format", "--check", *SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_layers_point_one_way() -> None:
    result = run(str(BIN / "lint-imports"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_package_ships_py_typed() -> None:
    for package in ("eventstore", "actors", "sagas", "dlq", "console"):
        assert (ROOT / package / "py.typed").exists()


def test_nothing_unpickles_wire_data() -> None:
    for package in ("eventstore", "actors", "sagas", "dlq", "console"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            assert "pickle.loads" not in text and "pickle.load(" not in text, path
