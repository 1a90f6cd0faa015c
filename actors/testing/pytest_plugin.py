"""The pytest plugin of the test kit (registered by the ``pytest11`` entry point ``tether``).

Name the session types under test with a ``tether_objects`` fixture or a ``tether`` marker,
and take the fixtures; no other set-up::

    @pytest.fixture
    def tether_objects():
        return [agent]

    async def test_ask(session_kit):
        result = await session_kit.call(ask, "s1", Ask(question="why?"))

    @pytest.mark.tether(agent, partitions=2)   # or per test, with the kit's options
    async def test_replays(replayer): ...

Fixtures: ``session_kit`` (an open `SessionTestKit`, closed after the test), ``replayer`` (a
`Replayer`) and ``tether_objects``. Async fixtures need pytest-asyncio (Tether's test extra).
Nothing of Tether is imported until a fixture is used, so the plugin costs other test suites
nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .kit import SessionTestKit
    from .replayer import Replayer

try:
    import pytest_asyncio

    HAS_ASYNCIO = True
except ImportError:  # pragma: no cover - the fixtures say what is missing when used
    HAS_ASYNCIO = False


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``tether`` marker."""
    config.addinivalue_line(
        "markers", "tether(*objects, **kit_options): the session types (and SessionTestKit options) of a test"
    )


def _marker(request: pytest.FixtureRequest) -> pytest.Mark | None:
    mark: pytest.Mark | None = request.node.get_closest_marker("tether")
    return mark


@pytest.fixture
def tether_objects(request: pytest.FixtureRequest) -> list[Any]:
    """The session types under test: the ``tether`` marker's arguments (override this fixture instead)."""
    from eventstore.errors import UsageError

    mark = _marker(request)
    if mark is None or not mark.args:
        raise UsageError(
            "no session types to test: define a `tether_objects` fixture returning them, "
            "or mark the test with @pytest.mark.tether(agent, ...)"
        )
    return list(mark.args)


def _kit(request: pytest.FixtureRequest, objects: list[Any]) -> SessionTestKit:
    from .kit import SessionTestKit

    mark = _marker(request)
    return SessionTestKit(objects, **(mark.kwargs if mark is not None else {}))


if HAS_ASYNCIO:

    @pytest_asyncio.fixture
    async def session_kit(request: pytest.FixtureRequest, tether_objects: list[Any]) -> AsyncIterator[SessionTestKit]:
        """An open `SessionTestKit` of `tether_objects` (virtual time, temporary log), closed after the test."""
        async with _kit(request, tether_objects) as kit:
            yield kit

else:  # pragma: no cover

    @pytest.fixture
    def session_kit() -> None:
        """Needs pytest-asyncio."""
        raise pytest.UsageError("the session_kit fixture needs pytest-asyncio: pip install 'tether[test]'")


@pytest.fixture
def replayer(request: pytest.FixtureRequest, tether_objects: list[Any]) -> Replayer:
    """A `Replayer` of `tether_objects` (reading blobs from the store of the marker's ``runtime=``, if any)."""
    from .replayer import Replayer

    mark = _marker(request)
    return Replayer(tether_objects, runtime=mark.kwargs.get("runtime") if mark is not None else None)
