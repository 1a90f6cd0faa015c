"""What Tether's own observability code costs per invocation and per client call, in one process.

``python -m bench.trace_cost [--iterations 1000] [--repeats 60]``: no broker, no worker; a loop
over the code the runtime and the client run around each invocation and each call, timed with
``time.process_time`` (CPU, so another job on the machine slows it less than wall time), the
best of `repeats` loops of `iterations` per arm (the least disturbed one; the garbage collector
runs before each loop, and during it as in a worker; the batch span processor is flushed between
loops, outside the timing). Many short loops, because on the shared machine loops of 20,000 of
one arm differed by up to 40 % (collector pauses, the processor's thread, other jobs), while
the best of 60 loops of 1,000 repeats within ~10 % (1,000: an invocation makes 2 spans, and the
processor queues at most 2,048 before it drops some; the run checks that none was). The arms run in this order, in one
process, because OpenTelemetry's global tracer provider can be set only once:

- ``off``: no metrics, no tracer provider (what a deployment without observability pays);
- ``metrics``: Prometheus metrics recorded (``METRICS.enable()``);
- ``unsampled``: metrics, and the SDK installed (as `bench._harness.tracing` sets it up: batch
  span processor, an exporter that counts and drops, ``ParentBased`` sampling) with a sampler
  that samples nothing, and ``trace_unsampled`` True (an invocation gets a span of its own);
- ``unsampled_auto``: the same with ``trace_unsampled`` "auto", the default (no span of its own:
  the parent-based sampler would drop it);
- ``traced``: metrics, and every span recorded by the SDK.

In the last two arms, `sdk_floor` times what the OpenTelemetry API itself charges for the same
two spans (parent extracted, the spans started with the same attributes and ended): the part of
an invocation's figure that no code on that API can avoid.

Per invocation: an `InvocationScope` entered and left around a message that carries a
``traceparent`` (as a traced client sends it), with one executed step span and one
``ctx.send``'s ``traceparent`` inside it. Per client call: the client's span around building a
message's ``traceparent``. What this leaves out is the same in every arm (Kafka, the event loop,
encoding), so an arm's figure minus ``off`` is what that observability adds.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from collections.abc import Callable
from typing import Any

from actors.observability import METRICS, tracing
from actors.observability.scope import InvocationScope
from actors.protocol.inbox import Message
from bench._harness import tracing as bench_tracing

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
"""The parent of a traced invocation (sampled); an unsampled arm's message carries flags 00."""
UNSAMPLED = TRACEPARENT[:-2] + "00"
_parent = TRACEPARENT


def _message(i: int) -> Message:
    return Message(
        id=f"m{i}",
        o="Counter",
        k=f"key-{i % 64}",
        h="add",
        p={"n": 1},
        ts=0,
        tp=_parent,
    )


def invocation(message: Message) -> None:
    """What the runtime's tracing and metrics do around one run with one step and one send."""
    with InvocationScope("bench", message, object_label="Counter", handler_label="add") as scope:
        step = tracing.step_span(message, scope.attempt, "work", 0) if tracing.enabled() else None
        tracing.current_traceparent()  # ctx.send's message
        if METRICS.enabled:
            METRICS.step("Counter", "work", "ok", 1e-5)
        if step is not None:
            step.end(attributes={"tether.attempts": 1, "tether.cost": 0.0})
        scope.outcome = "ok"


def client_call(message: Message) -> None:
    """What the client's tracing does around one call: its span, and the message's traceparent."""
    attributes = {"tether.object": message.object, "tether.handler": message.handler, "tether.key": message.key}
    with tracing.client_span(f"call {message.object}.{message.handler}", one_way=False, attributes=attributes):
        tracing.current_traceparent()


_PROPAGATOR: Any = None


def sdk_floor(message: Message) -> None:
    """What any code on the OpenTelemetry API pays for an invocation's spans: the message's parent
    extracted, the invocation's span and a step's span with Tether's attributes, nothing else
    (no context made current, no outcome, no ``traceparent`` for a send)."""
    global _PROPAGATOR
    if _PROPAGATOR is None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        _PROPAGATOR = TraceContextTextMapPropagator()
    from opentelemetry import trace

    tracer = tracing.tracer()
    m = message
    parent = _PROPAGATOR.extract({"traceparent": m.trace_parent})
    span = tracer.start_span(
        f"{m.object}.{m.handler}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "tether.namespace": "bench",
            "tether.object": m.object,
            "tether.key": m.key,
            "tether.handler": m.handler,
            "tether.invocation_id": m.invocation_id,
            "tether.message_id": m.id,
        },
    )
    step = tracer.start_span(
        "step work",
        context=trace.set_span_in_context(span),
        attributes={
            "tether.object": m.object,
            "tether.key": m.key,
            "tether.handler": m.handler,
            "tether.invocation_id": m.invocation_id,
            "tether.attempt": 1,
            "tether.step": "work",
            "tether.step_index": 0,
        },
    )
    step.set_attributes({"tether.attempts": 1, "tether.cost": 0.0})
    step.end()
    span.set_attributes({"tether.outcome": "ok", "tether.attempt": 1})
    span.end()


def _time(fn: Callable[[Message], None], iterations: int, repeats: int) -> float:
    """Microseconds of CPU per call of `fn`, the best of `repeats` loops."""
    messages = [_message(i) for i in range(256)]
    for m in messages[:200]:
        fn(m)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        gc.collect()  # every loop starts from the same heap: the collector's pauses vary less
        t0 = time.process_time()
        for i in range(iterations):
            fn(messages[i & 255])
        best = min(best, time.process_time() - t0)
        bench_tracing.spans_exported()  # flush the batch processor between loops, outside the timing
    return best / iterations * 1e6


def measure(iterations: int, repeats: int) -> dict[str, dict[str, float]]:
    """Per arm, microseconds per invocation and per client call."""
    out: dict[str, dict[str, float]] = {}

    def arm(name: str) -> None:
        out[name] = {
            "invocation_us": _time(invocation, iterations, repeats),
            "client_call_us": _time(client_call, iterations, repeats),
        }
        print(
            f"{name:10} invocation {out[name]['invocation_us']:7.2f} us   "
            f"client call {out[name]['client_call_us']:7.2f} us",
            flush=True,
        )

    arm("off")
    METRICS.enable()
    arm("metrics")
    global _parent
    bench_tracing.install()
    bench_tracing.set_sampling(0.0)
    _parent = UNSAMPLED  # as a client that sampled nothing sends it: the worker follows its parent
    tracing.trace_unsampled(True)
    arm("unsampled")
    out["unsampled"]["sdk_floor_us"] = _time(sdk_floor, iterations, repeats)
    tracing.trace_unsampled("auto")  # the default: the parent-based sampler drops such spans anyway
    arm("unsampled_auto")
    bench_tracing.set_sampling(1.0)
    _parent = TRACEPARENT
    before = bench_tracing.spans_exported()
    arm("traced")
    spans = bench_tracing.spans_exported() - before
    expected = 3 * (200 + iterations * repeats)  # an invocation makes 2 spans, a client call 1
    out["traced"]["sdk_floor_us"] = _time(sdk_floor, iterations, repeats)
    for name in ("unsampled", "traced"):
        print(f"{name:10} the SDK's floor for an invocation's two spans: {out[name]['sdk_floor_us']:7.2f} us")
    print(f"spans exported while traced: {spans} (expected {expected})", flush=True)
    out["traced"]["spans"] = spans
    return out


def main(argv: list[str] | None = None) -> None:
    """Print each arm's cost, then the results as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.trace_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args(argv)
    results: dict[str, Any] = measure(args.iterations, args.repeats)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
