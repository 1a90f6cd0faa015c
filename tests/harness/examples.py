"""The repository's `examples/` as modules (``examples.<name>``), without editing ``sys.path``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as ``examples.<name>`` (once; later calls return the same module)."""
    qualified = f"examples.{name}"
    found = sys.modules.get(qualified)
    if found is not None:
        return found
    if "examples" not in sys.modules:
        package = ModuleType("examples")
        package.__path__ = [str(EXAMPLES)]
        sys.modules["examples"] = package
    spec = importlib.util.spec_from_file_location(qualified, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module
    spec.loader.exec_module(module)
    return module
