"""While the broker is down, `send` and `call` end within their timeout with a typed, retryable
error (no 47 s hang behind the client's request timeout), and a retry with the same idempotency
key after the broker is back applies once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from harness import isolation_sessions as iso
from harness.session_harness import make_settings, open_runtime

from actors import SendTimeoutError  # noqa: E402

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


async def test_send_and_call_end_in_time_while_the_broker_is_down(local_broker, namespace: str, tmp_path: Path) -> None:
    iso.reset()
    settings = make_settings("kafka", tmp_path, namespace, bootstrap=local_broker.bootstrap, partitions=2)
    async with open_runtime(iso.SERVED, settings) as rt:
        assert (await rt.client.call(iso.add, "o1", iso.Add(by=1), timeout=30)).total == 1
        local_broker.stop(kill=True)
        try:
            started = time.monotonic()
            with pytest.raises(SendTimeoutError) as timed_out:
                await rt.client.send(iso.add, "o1", iso.Add(by=1), idempotency_key="order-1", timeout=3)
            assert time.monotonic() - started < 10, "the send must end near its timeout"
            assert timed_out.value.retriable and "same idempotency key" in str(timed_out.value)
            started = time.monotonic()
            with pytest.raises(SendTimeoutError):
                await rt.client.call(iso.add, "o1", iso.Add(by=1), timeout=3, idempotency_key="order-2")
            assert time.monotonic() - started < 10
        finally:
            local_broker.start()
        # The caller retries with the same keys: each applies once, whether or not the
        # first attempt reached the log before the broker died.
        await rt.client.send(iso.add, "o1", iso.Add(by=1), idempotency_key="order-1", timeout=60)
        await rt.client.call(iso.add, "o1", iso.Add(by=1), timeout=90, idempotency_key="order-2")
        assert (await rt.client.call(iso.add, "o1", iso.Add(by=0), timeout=60)).total == 3
