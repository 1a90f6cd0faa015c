"""A namespace's partition count is fixed when it is created: asking for another one explicitly
(``--partitions``, ``TETHER_PARTITIONS``, ``Settings(partitions=...)``) is a typed error, not a
client or worker that silently routes by the count it did not ask for."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from actors import Client, Settings
from actors.cli.main import build
from eventstore import PartitionCountError, UsageError


async def test_another_partition_count_for_an_existing_namespace_is_refused(tmp_path: Path) -> None:
    async with Client.connect(Settings(backend="embedded", data_dir=tmp_path, namespace="ns", partitions=2)):
        pass  # the namespace now exists with 2 partitions
    with pytest.raises(PartitionCountError) as caught:
        async with Client.connect(Settings(backend="embedded", data_dir=tmp_path, namespace="ns", partitions=3)):
            pass
    assert isinstance(caught.value, UsageError)
    assert (caught.value.asked, caught.value.found) == (3, 2) and "has 2 partition(s)" in str(caught.value)
    # The same count, or none asked for (the default), is fine.
    async with Client.connect(Settings(backend="embedded", data_dir=tmp_path, namespace="ns", partitions=2)):
        pass
    async with Client.connect(Settings(backend="embedded", data_dir=tmp_path, namespace="ns")) as client:
        assert client._partitions == 2

    args = ["awakeable", "resolve", "awk:a/k#m#1", "1", "--force", "--data-dir", str(tmp_path), "-n", "ns"]
    result = await asyncio.to_thread(CliRunner().invoke, build(), [*args, "--partitions", "5", "--timeout", "1"])
    assert result.exit_code == 2, result.output
    assert "has 2 partition(s)" in result.output and "Traceback" not in result.output
