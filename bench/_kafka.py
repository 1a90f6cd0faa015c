"""Where the benchmarks get a Kafka broker: the environment, or Tether's own LocalBroker.

1. ``TETHER_KAFKA__BOOTSTRAP_SERVERS`` names a broker someone else runs; it is left untouched.
2. Otherwise ``eventstore.kafka.localbroker.LocalBroker`` starts the real single-node KRaft broker on
   127.0.0.1 in a temporary data directory, and stops it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench._harness import KAFKA_VERSION, console

ENV_BOOTSTRAP = "TETHER_KAFKA__BOOTSTRAP_SERVERS"
BROKER_HEAP = "512m"


class NoBrokerError(RuntimeError):
    """Neither a bootstrap address in the environment nor Tether's LocalBroker is available."""


@contextlib.asynccontextmanager
async def kafka_bootstrap(data_dir: Path | None = None) -> AsyncIterator[dict[str, Any]]:
    """Yield ``{"bootstrap", "source", "kafka"}`` for a running broker; stop it after if ours.

    Args:
        data_dir: Where a broker we start keeps its data (a fresh temporary folder when None,
            deleted afterwards).

    Raises:
        NoBrokerError: No broker in the environment and ``eventstore.kafka.localbroker`` missing.
    """
    env = os.environ.get(ENV_BOOTSTRAP)
    if env:
        yield {"bootstrap": env, "source": f"env {ENV_BOOTSTRAP}", "kafka": "unknown (external)"}
        return
    try:
        from eventstore.kafka.localbroker import LocalBroker, kafka_version
    except ImportError as exc:
        raise NoBrokerError(
            f"no Kafka broker: set {ENV_BOOTSTRAP}=host:port, or install Tether so that "
            "eventstore.kafka.localbroker can start one"
        ) from exc
    tmp: Path | None = None
    if data_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="tether-bench-kafka-"))
        data_dir = tmp
    broker = LocalBroker()
    console().print("[dim]starting a local Kafka broker...[/dim]")
    try:
        # LocalBroker is synchronous (it waits for the JVM); keep the event loop free meanwhile.
        info = await asyncio.to_thread(broker.start, data_dir, heap=BROKER_HEAP)
        try:
            yield {
                "bootstrap": info.bootstrap,
                "source": "eventstore.kafka.localbroker.LocalBroker",
                "kafka": kafka_version() or KAFKA_VERSION,
                "pid": info.pid,
                "heap": BROKER_HEAP,
            }
        finally:
            await asyncio.to_thread(broker.stop, info.data_dir)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
