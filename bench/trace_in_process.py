"""What tracing costs a whole call in one busy process: worker and client on the embedded log.

``python -m bench.trace_in_process [--calls 3000] [--rounds 6] [--callers 16]``: no broker; one
process runs a `Worker` serving W2's ``Counter.add`` on the embedded log and a `Client` calling
it from `callers` tasks, and switches tracing between rounds (`bench.observability_switch`:
``off`` is no tracer provider; ``unsampled`` is the SDK installed with a sampler that (all but)
never samples, what every call that is not sampled pays; ``sampled`` is 10 % of new traces; both
with no span under an unsampled parent, what ``trace_unsampled="auto"`` does; ``traced`` is
every call). The arms
rotate inside each round, so a drift of the machine reaches each alike; the figure is the median
over rounds of CPU time (``time.process_time``, all threads, the span processor's included) per
call.

`bench.trace_cost` times the same spans in a tight loop, which keeps the SDK's code and data in
the CPU's caches; here they run among everything else a call does (the event loop, msgpack,
pydantic, SQLite), as in a worker, and cost more. The comparison of the two is the point; the
W2 overhead benches (`python -m bench overhead`) measure the share on the real broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from itertools import count

from actors import Client, Settings, Worker
from bench._harness import tracing
from bench.observability_switch import Arm, apply
from bench.tether_apps import Add, add, counter

ARMS = (
    Arm("off", metrics=False, sampling=0.0),
    Arm("unsampled", metrics=False, sampling=1e-9, trace_unsampled=False),  # 0 would be no provider
    Arm("sampled", metrics=False, sampling=0.1, trace_unsampled=False),
    Arm("traced", metrics=False, sampling=1.0),
)
KEYS = 200


async def _calls(client: Client, calls: int, callers: int) -> None:
    numbers = count()

    async def caller() -> None:
        while (i := next(numbers)) < calls:
            await client.call(add, f"k{i % KEYS}", Add(n=1), timeout=30)

    await asyncio.gather(*(caller() for _ in range(callers)))


async def measure(calls: int, rounds: int, callers: int) -> dict[str, dict[str, float | list[float]]]:
    """Per arm: the median and every round's CPU microseconds per call."""
    tracing.install()
    per_call: dict[str, list[float]] = {arm.name: [] for arm in ARMS}
    with tempfile.TemporaryDirectory(prefix="tether-trace-in-process-") as data_dir:
        settings = Settings(namespace="bench-trace", data_dir=data_dir, partitions=2, backend="embedded")
        async with Worker([counter], settings), Client.connect(settings) as client:
            apply(ARMS[0])
            await _calls(client, calls, callers)  # warm-up: sessions created, code paths hot
            for r in range(rounds):
                for arm in ARMS[r % len(ARMS) :] + ARMS[: r % len(ARMS)]:
                    apply(arm)
                    tracing.spans_exported()  # the last arm's spans flushed outside the timing
                    started = time.process_time()
                    await _calls(client, calls, callers)
                    tracing.spans_exported()  # this arm's spans exported inside it
                    per_call[arm.name].append((time.process_time() - started) / calls * 1e6)
            apply(ARMS[0])
    out: dict[str, dict[str, float | list[float]]] = {}
    for name, series in per_call.items():
        out[name] = {"call_us": statistics.median(series), "rounds_us": [round(v, 1) for v in series]}
    off = statistics.median(per_call["off"])
    for name in per_call:
        out[name]["added_us"] = statistics.median(per_call[name]) - off
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the measurement and print it as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.trace_in_process", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per arm per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--callers", type=int, default=16, help="calls in flight")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(measure(args.calls, args.rounds, args.callers)), indent=2))


if __name__ == "__main__":
    main()
