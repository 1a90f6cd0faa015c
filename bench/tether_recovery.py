"""W5: how long a partition processor takes to restore, and how much memory it needs meanwhile.

A one-partition namespace is filled with N ``done`` entries (one ``Added`` event each) over
10,000 Counter sessions, written straight through the eventstore log API in large transactions,
byte for byte what the runtime writes (``actors.messages.done_entry``, the Counter codec's
envelopes, session versions increasing per session). Variants:

- ``no snapshots``: events only (``RuntimeSettings(checkpoint_every=huge)``): restore replays all.
- ``snapshots``: the snapshots topic as log compaction leaves it: the latest snapshot of every
  session and the latest checkpoint record, as ``PartitionProcessor._checkpoint_records``
  writes them (checkpoint every 5,000 events, the default), so restore replays < 5,000 events.
  (Appended to the namespace of ``no snapshots`` after its restores, to generate once.)
- ``snapshots, uncompacted`` (smallest size only): every checkpoint the runtime would have
  written on the way, as the topic holds them until the log cleaner has run (it never touches
  the active segment; the snapshots topic rolls segments every 60 s or 16 MiB).

The wide shape (largest size only): the same number of events in one session, 1,000 per
``done`` entry (1,000,000 events: 1,000 invocations), which a cadence counting records alone
never checkpointed:

- ``wide, no checkpoint``: events only, as such a cadence left them; the restore keeps its
  memory under ``restore_buffer_bytes`` by folding the session as it reads.
- ``wide, checkpoints``: as compaction leaves the checkpoints the runtime now writes every
  ``checkpoint_every_events`` events (20 invocations), so restore reads < 20 entries.

Then a fresh process (``python -m bench.tether_recovery restore ...``) opens the partition's
transactional writer (fencing, as ``Worker._take``) and times ``PartitionProcessor.restore()``
alone, then the lazy decode of every session; it reports its peak RSS (``VmHWM``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from actors import Client, RuntimeSettings, Settings
from actors.protocol import CHECKPOINT_KEY, Checkpoint, Done, Remembered, Snapshot
from actors.runtime import PartitionProcessor
from bench import tether_apps as apps
from bench._harness import REPO_ROOT, console, progress_bar
from bench._tether_harness import delete_namespace, kafka_connection, new_namespace, use_broker
from eventstore import OutRecord, TopicPartition, Topics, open_log

SIZES = (100_000, 1_000_000)
SESSIONS = 10_000
CHECKPOINT_EVERY = RuntimeSettings().checkpoint_every
CHECKPOINT_EVERY_EVENTS = RuntimeSettings().checkpoint_every_events
NEVER = 2**62
"""``checkpoint_every`` that never checkpoints."""
TXN_RECORDS = CHECKPOINT_EVERY
"""Done entries per generating transaction (the runtime checkpoints at this boundary)."""


@dataclass(frozen=True)
class Shape:
    """How the partition's events are spread: over sessions, and per ``done`` entry."""

    name: str
    sessions: int
    events_per_entry: int
    txn_records: int
    """Done entries per generating transaction: where the runtime's cadence checkpoints."""


NARROW = Shape("narrow", SESSIONS, 1, TXN_RECORDS)
WIDE = Shape("wide", 1, 1_000, CHECKPOINT_EVERY_EVENTS // 1_000)
SHAPES = {s.name: s for s in (NARROW, WIDE)}
SINGLE_RUN_FROM = 1_000_000
"""From this size on, the variant without snapshots is restored once, not `runs` times (it takes
tens of seconds and more than a GiB; the snapshot variants restore `runs` times)."""


def _settings(bootstrap: str, namespace: str, checkpoint_every: int) -> Settings:
    return Settings(
        backend="kafka",
        namespace=namespace,
        partitions=1,
        kafka=kafka_connection(bootstrap),
        runtime=RuntimeSettings(checkpoint_every=checkpoint_every),
    )


def _expected_versions(entries: int, sessions: int = SESSIONS) -> list[int]:
    """Final version of session j after `entries` round-robin done entries."""
    return [entries // sessions + (1 if j < entries % sessions else 0) for j in range(sessions)]


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


class _Sessions:
    """What the runtime keeps per session to snapshot it: version, count, and the message ids of
    the idempotency retention (all of them: the generated log is younger than the retention)."""

    def __init__(self, shape: Shape = NARROW) -> None:
        self.per = shape.events_per_entry
        self.version = [0] * shape.sessions
        self.recent: list[OrderedDict[str, tuple[dict[str, Any], int]]] = [OrderedDict() for _ in range(shape.sessions)]
        self.dirty: set[int] = set()

    def apply(self, j: int, message_id: str) -> int:
        v = self.version[j] = self.version[j] + 1
        self.recent[j][message_id] = ({"ok": {"value": v * self.per}}, int(time.time() * 1000))
        self.dirty.add(j)
        return v

    def snapshots(self, topic: str) -> list[OutRecord]:
        """`Session.to_snapshot()` of every dirty session, with the version header the runtime adds."""
        out = []
        for j in sorted(self.dirty):
            recent = [Remembered(k, v, at) for k, (v, at) in self.recent[j].items()]
            snapshot = Snapshot({"count": self.version[j] * self.per}, self.version[j], recent)
            out.append(OutRecord(topic, 0, _key(j), snapshot.encode(), snapshot.headers()))
        self.dirty.clear()
        return out


def _key(j: int) -> bytes:
    return f"{apps.counter.name}/s{j}".encode()


def _checkpoint(topic: str, start: int) -> OutRecord:
    return OutRecord(topic, 0, CHECKPOINT_KEY, Checkpoint(start).encode())


@dataclass
class Generated:
    """What `generate` wrote, and what `add_snapshots` needs to write the final checkpoint."""

    written: dict[str, Any]
    state: _Sessions
    last_batch_start: int
    """The events end offset before the last transaction: a checkpoint taken with that
    transaction restores from there (as `_checkpoint_records` computes it)."""


async def generate(bootstrap: str, namespace: str, events: int, snapshots: str, shape: Shape = NARROW) -> Generated:
    """Fill partition 0 of `namespace` with `events` events in done entries of `shape`.

    `snapshots` is ``none`` or ``every`` (every checkpoint the runtime writes on the way, as
    written).
    """
    settings = _settings(bootstrap, namespace, NEVER)
    topics = Topics(namespace)
    log = open_log(settings)
    await log.start()
    envelope = apps.counter.codec.encode_envelope(apps.Added(n=1))
    state = _Sessions(shape)
    per = shape.events_per_entry
    entries = events // per
    txn = shape.txn_records
    written = {"events": 0, "snapshots": 0, "checkpoints": 0, "transactions": 0}
    last_start = 0
    started = time.perf_counter()
    try:
        await log.create_topics(topics.specs(1))
        writer = await log.writer(f"{namespace}-pp-0")
        now = int(time.time() * 1000)
        try:
            label = f"W5 generate {events:,} events ({shape.name}, {snapshots} snapshots)"
            with progress_bar(label, entries) as advance:
                for first in range(0, entries, txn):
                    last_batch = first + txn >= entries
                    records = []
                    for e in range(first, min(entries, first + txn)):
                        j = e % shape.sessions
                        message_id = f"m{e}"
                        v = state.apply(j, message_id)
                        reply = {"value": v * per}
                        value = Done(message_id, "add", [envelope] * per, v, e, reply, None, 1, now, now).encode()
                        records.append(OutRecord(topics.events, 0, _key(j), value))
                    offsets = None
                    if last_batch:
                        last_start = await log.end_offset(topics.events, 0)
                    if snapshots == "every":
                        # As `_checkpoint_records`: the start is the events end before this
                        # batch, whose events are already folded into the snapshots.
                        start = await log.end_offset(topics.events, 0)
                        snaps = state.snapshots(topics.snapshots)
                        records += [*snaps, _checkpoint(topics.snapshots, start)]
                        written["snapshots"] += len(snaps)
                        written["checkpoints"] += 1
                    if last_batch:
                        # Every message these entries finished was consumed: the inbox offset
                        # is committed past them (as the runtime's offset commits do).
                        offsets = {TopicPartition(topics.inbox, 0): entries}
                    await writer.commit(records, group_id=topics.group(), offsets=offsets)
                    written["events"] += (min(entries, first + txn) - first) * per
                    written["transactions"] += 1
                    advance(min(entries, first + txn) - first)
        finally:
            await writer.close()
    finally:
        await log.close()
    seconds = time.perf_counter() - started
    return Generated({**written, "seconds": seconds, "events_per_s": events / seconds}, state, last_start)


async def add_snapshots(bootstrap: str, namespace: str, generated: Generated) -> None:
    """Append what log compaction leaves of the runtime's checkpoints: the latest snapshot of
    every session and the checkpoint taken with the last transaction of `generate`.

    The records are those the runtime's last checkpoint writes (``_checkpoint_records``), in a
    transaction of their own: restore reads the same topic contents either way.
    """
    topics = Topics(namespace)
    log = open_log(_settings(bootstrap, namespace, NEVER))
    await log.start()
    try:
        writer = await log.writer(f"{namespace}-pp-0")
        try:
            snaps = generated.state.snapshots(topics.snapshots)
            await writer.commit([*snaps, _checkpoint(topics.snapshots, generated.last_batch_start)])
        finally:
            await writer.close()
    finally:
        await log.close()
    generated.written["snapshots"] += len(snaps)
    generated.written["checkpoints"] += 1


# --------------------------------------------------------------------------------------------
# Restore, in a process of its own
# --------------------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """This process's peak RSS so far (MiB): VmHWM of its own address space.

    Not ``ru_maxrss``: Linux carries the pre-exec high-water mark over ``execve``, and Python
    spawns with vfork, so a child's ``ru_maxrss`` starts at its parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


async def _restore(
    bootstrap: str, namespace: str, checkpoint_every: int, events: int, shape: Shape = NARROW
) -> dict[str, Any]:
    settings = _settings(bootstrap, namespace, checkpoint_every)
    topics = Topics(namespace)
    log = open_log(settings)
    await log.start()
    rss_before = _rss_mb()
    try:
        t0 = time.perf_counter()
        writer = await log.writer(f"{namespace}-pp-0")
        fence_s = time.perf_counter() - t0
        processor = PartitionProcessor(
            partition=0,
            partitions=1,
            log=log,
            writer=writer,
            topics=topics,
            objects={apps.counter.name: apps.counter},
            settings=settings.runtime,
            client=Client(settings, log=log),
            on_failure=lambda p, exc: None,
        )
        try:
            t0 = time.perf_counter()
            resume = await processor.restore()
            restore_s = time.perf_counter() - t0
            peak_restore = _peak_rss_mb()
            rss_restored = _rss_mb()
            # Sessions decode lazily, on their first message: decode all of them once.
            t0 = time.perf_counter()
            for session in processor.sessions.values():
                session.load(apps.counter, settings.runtime.retention_ms)
            load_s = time.perf_counter() - t0
            per = shape.events_per_entry
            entries = events // per
            expected = _expected_versions(entries, shape.sessions)
            wrong = [
                j
                for j in range(shape.sessions)
                if (s := processor.sessions.get(_key(j))) is None
                or s.version != expected[j]
                or getattr(s.state, "count", None) != expected[j] * per
            ]
        finally:
            await writer.close()
    finally:
        await log.close()
    return {
        "events": events,
        "shape": shape.name,
        "restore_s": restore_s,
        "fence_s": fence_s,
        "load_all_sessions_s": load_s,
        "records_read": processor.stats["restored_records"],
        "sessions": len(processor.sessions),
        "resume_offset": resume,
        "rss_before_mb": rss_before,
        "rss_restored_mb": rss_restored,
        "peak_rss_restore_mb": peak_restore,
        "peak_rss_mb": _peak_rss_mb(),
        "correct": not wrong and resume == entries,
        "wrong_sessions": len(wrong),
    }


async def restore_in_subprocess(
    bootstrap: str, namespace: str, checkpoint_every: int, events: int, shape: Shape = NARROW
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "bench.tether_recovery",
        "restore",
        "--bootstrap",
        bootstrap,
        "--namespace",
        namespace,
        "--checkpoint-every",
        str(checkpoint_every),
        "--events",
        str(events),
        "--shape",
        shape.name,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=1800)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"restore failed ({proc.returncode}): {stderr.decode(errors='replace')[-2000:]}")
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------------------------
# The workload
# --------------------------------------------------------------------------------------------

SERIES = ("no snapshots", "snapshots", "snapshots, uncompacted", "wide, no checkpoint", "wide, checkpoints")


async def _restores(
    bootstrap: str, namespace: str, series: str, size: int, checkpoint_every: int, runs: int, shape: Shape = NARROW
) -> list[dict[str, Any]]:
    out = console()
    results = []
    for r in range(runs):
        res = await restore_in_subprocess(bootstrap, namespace, checkpoint_every, size, shape)
        results.append(res)
        mark = "[green]ok[/green]" if res["correct"] else f"[red]WRONG ({res['wrong_sessions']} sessions)[/red]"
        out.print(
            f"tether W5 {size:,} events, {series}, run {r + 1}/{runs}: "
            f"restore {res['restore_s']:.2f} s ({res['records_read']:,} records), "
            f"peak RSS {res['peak_rss_restore_mb']:.0f} MiB (from {res['rss_before_mb']:.0f}), "
            f"decode all sessions {res['load_all_sessions_s']:.2f} s, check {mark}"
        )
    return results


async def recovery(opts: Any) -> dict[str, Any]:
    """W5: restore time and peak RSS vs. events in the partition, with and without snapshots.

    Per size, one namespace serves both main variants: restored first with events only, then
    again after the final checkpoint's snapshots are appended (generating 1,000,000 events
    once, not twice). The uncompacted variant (smallest size) gets a namespace of its own.
    """
    sizes = sorted({max(10_000, int(s * opts.scale)) for s in SIZES})
    entries: list[dict[str, Any]] = []

    def keep(series: str, size: int, written: dict[str, Any], results: list[dict[str, Any]]) -> None:
        med = sorted(results, key=lambda x: x["restore_s"])[(len(results) - 1) // 2]
        entries.append({"series": series, "events": size, "generated": dict(written), "median": med, "runs": results})

    async with use_broker() as broker:
        bootstrap = broker["bootstrap"]
        for size in sizes:
            namespace = new_namespace(f"W5-{size}")
            try:
                generated = await generate(bootstrap, namespace, size, "none")
                runs = 1 if size >= SINGLE_RUN_FROM else opts.runs
                keep(
                    SERIES[0],
                    size,
                    generated.written,
                    await _restores(bootstrap, namespace, SERIES[0], size, NEVER, runs),
                )
                await add_snapshots(bootstrap, namespace, generated)
                results = await _restores(bootstrap, namespace, SERIES[1], size, CHECKPOINT_EVERY, opts.runs)
                keep(SERIES[1], size, generated.written, results)
            finally:
                await delete_namespace(bootstrap, namespace)
        namespace = new_namespace(f"W5-{sizes[0]}-every")
        try:
            generated = await generate(bootstrap, namespace, sizes[0], "every")
            results = await _restores(bootstrap, namespace, SERIES[2], sizes[0], CHECKPOINT_EVERY, opts.runs)
            keep(SERIES[2], sizes[0], generated.written, results)
        finally:
            await delete_namespace(bootstrap, namespace)
        largest = max(sizes)
        namespace = new_namespace(f"W5-{largest}-wide")
        try:
            generated = await generate(bootstrap, namespace, largest, "none", WIDE)
            results = await _restores(bootstrap, namespace, SERIES[3], largest, CHECKPOINT_EVERY, opts.runs, WIDE)
            keep(SERIES[3], largest, generated.written, results)
            await add_snapshots(bootstrap, namespace, generated)
            results = await _restores(bootstrap, namespace, SERIES[4], largest, CHECKPOINT_EVERY, opts.runs, WIDE)
            keep(SERIES[4], largest, generated.written, results)
        finally:
            await delete_namespace(bootstrap, namespace)
    points = [
        {
            "series": e["series"],
            "events": e["events"],
            "seconds": e["median"]["restore_s"],
            "peak_rss_mb": e["median"]["peak_rss_restore_mb"],
        }
        for e in entries
    ]

    def at(series: str, size: int, key: str) -> Any:
        for e in entries:
            if e["series"] == series and e["events"] == size:
                return e["median"][key]
        return None

    median = {
        "events_max": largest,
        "restore_s_snapshots": at("snapshots", largest, "restore_s"),
        "restore_s_no_snapshots": at("no snapshots", largest, "restore_s"),
        "peak_rss_mb_snapshots": at("snapshots", largest, "peak_rss_restore_mb"),
        "peak_rss_mb_no_snapshots": at("no snapshots", largest, "peak_rss_restore_mb"),
        "restore_s_snapshots_uncompacted": at("snapshots, uncompacted", sizes[0], "restore_s"),
        "restore_s_wide_no_checkpoint": at("wide, no checkpoint", largest, "restore_s"),
        "restore_s_wide_checkpoints": at("wide, checkpoints", largest, "restore_s"),
        "peak_rss_mb_wide_no_checkpoint": at("wide, no checkpoint", largest, "peak_rss_restore_mb"),
        "peak_rss_mb_wide_checkpoints": at("wide, checkpoints", largest, "peak_rss_restore_mb"),
    }
    return {
        "system": "tether",
        "params": {
            "sizes": sizes,
            "sessions": SESSIONS,
            "partitions": 1,
            "checkpoint_every": CHECKPOINT_EVERY,
            "checkpoint_every_events": CHECKPOINT_EVERY_EVENTS,
            "restore_buffer_bytes": RuntimeSettings().restore_buffer_bytes,
            "wide_events_per_entry": WIDE.events_per_entry,
            "transaction_records": TXN_RECORDS,
            "runs": opts.runs,
            "single_run_from": SINGLE_RUN_FROM,
            "kafka": broker.get("kafka"),
        },
        "median": median,
        "runs": entries,
        "recovery_points": points,
        "correct": all(r["correct"] for e in entries for r in e["runs"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Time PartitionProcessor.restore() of partition 0.")
    sub = parser.add_subparsers(dest="command", required=True)
    restore = sub.add_parser("restore")
    restore.add_argument("--bootstrap", required=True)
    restore.add_argument("--namespace", required=True)
    restore.add_argument("--checkpoint-every", type=int, required=True)
    restore.add_argument("--events", type=int, required=True)
    restore.add_argument("--shape", choices=sorted(SHAPES), default=NARROW.name)
    args = parser.parse_args()
    result = asyncio.run(
        _restore(args.bootstrap, args.namespace, args.checkpoint_every, args.events, SHAPES[args.shape])
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
