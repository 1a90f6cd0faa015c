"""No package imports itself in a circle (counting imports inside functions, not TYPE_CHECKING)."""

from __future__ import annotations

import grimp
import pytest


@pytest.mark.parametrize("package", ["eventstore", "actors", "sagas", "dlq", "console"])
def test_no_import_cycle(package: str) -> None:
    graph = grimp.build_graph(package, exclude_type_checking_imports=True)
    cycles = sorted(
        {
            tuple(sorted((module, imported)))
            for module in graph.modules
            for imported in graph.find_modules_directly_imported_by(module)
            if imported.startswith(package) and graph.chain_exists(importer=imported, imported=module)
        }
    )
    assert cycles == [], f"modules of {package} that import each other (directly or through others): {cycles}"
