"""A dead-letter listing shows what a worker committed just before it started (real broker).

Kafka makes a committed transaction visible to read_committed readers only once the broker has
written its markers, a moment after the writer's commit returned; a listing that took the last
stable offsets in that moment stopped before the transaction's dead letters. The partition
then looks as it does while the transaction is still open: its records are in the log, its
outcome is not. So the tests hold a transaction open while a listing starts, commit it
`HOLD` seconds later, and expect the listing to include it. Without the listing's wait
(`EventLog.settled_end_offset`) each listing returns at once, without the letter.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from actors import Client, ObjectContext, Settings, TerminalError, VirtualObject, Worker
from actors.errors import InvocationError
from actors.protocol import Message
from actors.runtime.deadletters import Failure, dead_letter
from dlq import DeadLetters, Filter
from dlq.cli import dlq as dlq_cli
from eventstore import KafkaSettings, Record, Topics, open_log
from eventstore.kafka import KafkaLog

pytestmark = pytest.mark.kafka

HOLD = 3.0
"""Seconds the transaction stays open after the listing started: long enough for a listing to
connect and take its end offsets first (it then waits), shorter than its wait (5 s)."""


class Items(BaseModel):
    count: int = 0


class Item(BaseModel):
    n: int


items = VirtualObject("items", state=Items)


@items.handler()
async def apply(ctx: ObjectContext[Items], item: Item) -> None:
    raise TerminalError(f"bad item {item.n}")


def _settings(bootstrap: str, namespace: str, data_dir: Path) -> Settings:
    return Settings(
        namespace=namespace,
        partitions=2,
        backend="kafka",
        data_dir=data_dir,
        kafka=KafkaSettings(bootstrap_servers=bootstrap, client_id="dlq-visibility"),
    )


def _letter(topics: Topics, n: int) -> Any:  # noqa: ANN401 - an OutRecord
    message = Message(id=f"m{n}", o="items", k=f"k{n}", h="apply", p={"n": n, "bad": True}, ts=1)
    source = Record(topics.inbox, 0, n, message.session.encode(), message.encode())
    failure = Failure(TerminalError(f"bad item {n}"), "terminal", 1, 1, 1, "items", f"k{n}", "apply", f"m{n}")
    return dead_letter(source, failure, dlq_topic=topics.dlq, group=topics.group())


async def _while_a_transaction_is_open(settings: Settings, n: int, listing: Any) -> Any:  # noqa: ANN401
    """Start `listing()` while a transaction holding dead letter `n` is open (its record in the
    partition), commit it `HOLD` seconds later, and return what the listing found."""
    topics = Topics(settings.namespace)
    log = open_log(settings)
    await log.start()
    try:
        assert isinstance(log, KafkaLog)
        await log.create_topics(topics.specs(settings.partitions))
        writer = await log.writer(f"{settings.namespace}-test-writer")
        try:
            before = await log._high_water_mark(topics.dlq, 0)  # noqa: SLF001
            async with writer.transaction() as txn:
                await txn.send(_letter(topics, n))
                while await log._high_water_mark(topics.dlq, 0) <= before:  # noqa: SLF001
                    await asyncio.sleep(0.01)  # acknowledged: in the partition, not yet committed
                task = asyncio.ensure_future(listing())
                await asyncio.sleep(HOLD)
                assert not task.done(), f"the listing ended while the transaction was open: {task.result()!r}"
            return await asyncio.wait_for(task, 30)
        finally:
            await writer.close()
    finally:
        await log.close()


async def test_listings_wait_for_a_transaction_that_ends_after_they_start(
    kafka_bootstrap: str, namespace: str, tmp_path: Path
) -> None:
    settings = _settings(kafka_bootstrap, namespace, tmp_path)

    async def scan() -> list[str]:
        async with DeadLetters(settings, index=False) as dead:  # another log, as another process
            return [letter.id for letter in await dead.all()]

    async def indexed() -> list[str]:
        async with DeadLetters(settings) as dead:  # `dlq list` without --since: the local index
            letters, _ = await dead.page(Filter(), limit=0)
            return [letter.id for letter in letters]

    def cli() -> Any:  # noqa: ANN401 - the JSON document
        args = ["list", "--json", "-b", kafka_bootstrap, "-n", namespace, "--data-dir", str(tmp_path)]
        result = CliRunner().invoke(dlq_cli, args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    async def by_cli() -> list[str]:
        return [item["id"] for item in (await asyncio.to_thread(cli))["items"]]

    first = await _while_a_transaction_is_open(settings, 0, scan)
    second = await _while_a_transaction_is_open(settings, 1, indexed)
    third = await _while_a_transaction_is_open(settings, 2, by_cli)
    assert first == ["0-0"]  # each transaction's commit marker takes an offset too
    assert len(second) == 2 and second[0] == "0-0" and len(third) == 3 and third[:2] == second
    assert third == await scan()


async def test_a_failed_call_is_listed_right_after_its_error(
    kafka_bootstrap: str, namespace: str, tmp_path: Path
) -> None:
    """As a user would: the call's error arrives, and a listing in another client shows it."""
    settings = _settings(kafka_bootstrap, namespace, tmp_path)
    async with Worker([items], settings), Client.connect(settings) as client:
        for n in range(10):
            with pytest.raises(InvocationError):
                await client.call(apply, f"v{n}", Item(n=n), timeout=60)
            async with DeadLetters(settings, index=False) as dead:
                letters = await dead.all()
            assert len(letters) == n + 1, [letter.object_key for letter in letters]
