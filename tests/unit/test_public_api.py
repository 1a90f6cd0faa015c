"""The public names of each package, pinned: removing or renaming one breaks users' imports.

`public_api.json` lists every package's `__all__`. A name that disappears fails the test (that
is a breaking change: keep the name, or deprecate it first); a new name fails it too, until it is
added to the file, so that every addition to the public API is a decision someone reviewed.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

PINNED: dict[str, list[str]] = json.loads((Path(__file__).parent / "public_api.json").read_text())


@pytest.mark.parametrize("package", sorted(PINNED))
def test_no_public_name_disappears(package: str) -> None:
    module = importlib.import_module(package)
    missing = sorted(set(PINNED[package]) - set(module.__all__))
    assert not missing, f"{package} no longer exports {missing}: a breaking change for users"
    for name in PINNED[package]:
        assert hasattr(module, name), f"{package}.{name} is exported but does not resolve"


@pytest.mark.parametrize("package", sorted(PINNED))
def test_new_public_names_are_pinned(package: str) -> None:
    module = importlib.import_module(package)
    added = sorted(set(module.__all__) - set(PINNED[package]))
    assert not added, f"{package} exports {added}, not in tests/unit/public_api.json: add them there"
    assert list(module.__all__) == sorted(module.__all__), f"{package}.__all__ is not sorted"
