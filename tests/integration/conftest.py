"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from actors import Client, Settings


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    """A started client for the module's `settings` (each module that uses it defines them)."""
    async with Client.connect(settings) as c:
        yield c
