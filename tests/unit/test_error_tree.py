"""The error tree: every exception Tether defines is a `TetherError` or documented control flow,
and each layer's `errors` module draws the tree as the classes really are.

The drawing is what a user reads to decide what to catch; a class missing from it, or drawn
under the wrong parent, is a documentation bug this test turns into a failure.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from types import ModuleType

import pytest

from eventstore.errors import TetherError

PACKAGES = ("eventstore", "actors", "sagas", "dlq", "console")
NODE = re.compile(r"^(?P<indent>[\s│├└─]*?)(?:[├└]── )?(?P<name>[A-Z]\w*(?:Error|Exception))\b")


def all_modules() -> list[ModuleType]:
    modules = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        modules.append(root)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            modules.append(importlib.import_module(info.name))
    return modules


def defined_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in all_modules():
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def errors_module_of(cls: type[BaseException]) -> ModuleType:
    """The nearest ``errors`` module at or above the package that defines `cls`."""
    parts = cls.__module__.split(".")
    for n in range(len(parts), 0, -1):
        try:
            return importlib.import_module(".".join([*parts[:n], "errors"]))
        except ModuleNotFoundError:
            continue
    raise AssertionError(f"no errors module above {cls.__module__}")


def drawn_parents(docstring: str) -> dict[str, str]:
    """``{class name: parent name}`` as the tree in `docstring` draws them."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in docstring.splitlines():
        match = NODE.match(line)
        if match is None or not ("──" in line or line.strip().startswith("TetherError")):
            continue
        depth = len(match.group("indent")) + (4 if "──" in line else 0)
        name = match.group("name")
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            parents[name] = stack[-1][1]
        stack.append((depth, name))
    return parents


EXCEPTIONS = defined_exceptions()


def test_the_walk_finds_the_known_classes() -> None:
    names = {cls.__name__ for cls in EXCEPTIONS}
    assert {"TetherError", "StepTimeoutError", "WorkerPoolError", "Suspended", "BrokerStartError", "DlqError"} <= names


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda cls: f"{cls.__module__}.{cls.__qualname__}")
def test_every_exception_is_a_tether_error_or_documented_control_flow(cls: type[BaseException]) -> None:
    if issubclass(cls, TetherError):
        return
    assert not issubclass(cls, Exception), (
        f"{cls.__qualname__} derives from Exception but not TetherError: users catching TetherError miss it"
    )
    doc = errors_module_of(cls).__doc__ or ""
    assert "control flow" in doc.lower() and f"`{cls.__name__}`" in doc, (
        f"{cls.__qualname__} is control flow (BaseException) but {errors_module_of(cls).__name__} does not say so"
    )


@pytest.mark.parametrize(
    "cls",
    [cls for cls in EXCEPTIONS if issubclass(cls, TetherError) and cls is not TetherError],
    ids=lambda cls: f"{cls.__module__}.{cls.__qualname__}",
)
def test_every_error_is_drawn_under_its_parent(cls: type[TetherError]) -> None:
    module = errors_module_of(cls)
    parents = drawn_parents(module.__doc__ or "")
    assert cls.__name__ in parents, f"{cls.__qualname__} is missing from the tree in {module.__name__}'s docstring"
    bases = {base.__name__ for base in cls.__bases__}
    assert parents[cls.__name__] in bases, (
        f"{module.__name__} draws {cls.__name__} under {parents[cls.__name__]}, but its bases are {sorted(bases)}"
    )


def test_the_parser_reads_a_drawing() -> None:
    doc = """
    TetherError (x)
    ├── AError     a
    │   └── BError b
    └── CError
        └── DError
    """
    assert drawn_parents(doc) == {
        "AError": "TetherError",
        "BError": "AError",
        "CError": "TetherError",
        "DError": "CError",
    }


def test_errors_with_keyword_only_fields_survive_pickling() -> None:
    # A Ray task that raises one hands it to its caller pickled; `error_type` is keyword-only.
    import pickle

    from actors.errors import InvocationError, UnknownObjectError
    from eventstore.errors import DecodeError

    for error in (
        InvocationError("boom", error_type="ValueError", object_name="Counter", key="k", handler="add", attempts=3),
        UnknownObjectError("no such object", error_type="UnknownObject"),
        DecodeError("bad bytes", topic="t", partition=1, offset=7),
    ):
        copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes, in memory
        assert type(copy) is type(error) and str(copy) == str(error) and vars(copy) == vars(error)
