"""`tether serve --ray`: long-lived workers hosted by Ray actors, each consuming Kafka itself.

Ray only places and restarts processes. Each actor runs one `Worker` in its own event loop: it
joins the namespace's consumer group and processes its partitions with no Ray call per message.
A killed actor is restarted by Ray (``max_restarts=-1``), which runs ``__init__`` again with no
state; the restarted worker rejoins the group and the group protocol hands partitions back.
Everything durable lives in Kafka, nothing in Ray.

The embedded log is one file-locked directory and cannot be shared by processes as a group, so
Ray workers need a Kafka broker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import ray
from ray.exceptions import ActorAlreadyExistsError, GetTimeoutError, RayActorError, RayError

from eventstore import UsageError
from eventstore.settings import REVEAL_SECRETS

from ..errors import ActorError
from ..runtime.processor import PartitionProcessor
from ..settings import Settings
from .logs import configure_logging
from .worker import Worker, load_objects

log = logging.getLogger(__name__)

RAY_NAMESPACE = "tether"
"""The Ray namespace of every Tether actor; actor names carry the Tether namespace."""
PING_INTERVAL = 2.0
"""Seconds between the supervisor's pings of its actors."""
NEEDS_KAFKA = "--ray needs a Kafka broker: pass -b/--bootstrap-servers or TETHER_KAFKA__BOOTSTRAP_SERVERS"
NAME_TAKEN = (
    "Ray actor {name!r} already exists in Ray namespace {ray_ns!r}: another `tether serve --ray` "
    "serves Tether namespace {ns!r} on this Ray cluster. Stop it, or give this one more --workers."
)


class WorkerPoolError(ActorError):
    """The Ray workers did not start: an actor died in start-up, or was not ready in time."""


# -- the actor ------------------------------------------------------------------------------


class _CountingWorker(Worker):
    """A `Worker` that also counts the invocations of the partitions it has given up."""

    retired_invocations = 0

    async def _release(self, p: int, *, flush: bool = True) -> None:
        processor: PartitionProcessor | None = self.processors.get(p)
        await super()._release(p, flush=flush)
        if processor is not None:
            self.retired_invocations += processor.stats["invocations"]

    @property
    def invocations(self) -> int:
        """Invocations finished by this worker, in partitions it owns now or owned before."""
        live = sum(p.stats["invocations"] for p in self.processors.values())
        return self.retired_invocations + live


class WorkerHost:
    """The body of a Ray actor that hosts one `Worker` (see `WorkerActor`).

    ``__init__`` does only what cannot fail later (import the target, parse the settings): Ray
    reruns it on every restart and gives up on an actor whose constructor raises. Joining the
    group happens in a background task that retries until the broker answers, so a restart
    while Kafka is briefly away still ends with a working worker.

    Args:
        target: ``MODULE:OBJECT`` naming the session types to serve.
        settings: `Settings.model_dump(mode="json")` from the driver (plain data, not a pickle),
            secrets included (`REVEAL_SECRETS`).
        name: This actor's name, for logs.
        sys_paths: Directories to put on ``sys.path`` first (where the driver found MODULE).
        verbose: Logging verbosity of the driver (0 warnings, 1 info, 2 debug).
    """

    # Ray awaits the async __init__ of an async actor (mypy wants __init__ to return None).
    async def __init__(  # type: ignore[misc]
        self,
        target: str,
        settings: Mapping[str, Any],
        *,
        name: str,
        sys_paths: Sequence[str] = (),
        verbose: int = 0,
    ) -> None:
        self._settings = Settings.model_validate(dict(settings))
        configure_logging(verbose, log_format=self._settings.runtime.log_format)
        for path in reversed(sys_paths):
            if path not in sys.path and os.path.isdir(path):
                sys.path.insert(0, path)
        self._name = name
        self._objects = load_objects(target)
        self._worker: _CountingWorker | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._error: str | None = None
        self._starts = 0
        self._retired_invocations = 0
        self._created = time.time()
        self._task = asyncio.create_task(self._run(), name=f"tether-ray-{name}")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._error = f"supervision failed: {task.exception()!r}"
            log.error("%s: %s", self._name, self._error, exc_info=task.exception())

    async def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            worker = _CountingWorker(self._objects, self._settings)
            try:
                await worker.start()
            except Exception as exc:
                self._error = f"start failed: {exc!r}"
                log.warning(
                    "%s: starting the worker failed (%r); retrying in %.1f s",
                    self._name,
                    exc,
                    backoff,
                )
                await self._discard(worker)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            self._starts += 1
            self._worker, self._error = worker, None
            self._ready.set()
            log.info("%s: worker started in pid %d", self._name, os.getpid())
            waiter = asyncio.create_task(worker.wait())
            stopper = asyncio.create_task(self._stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            self._ready.clear()
            if waiter.done() and not waiter.cancelled() and waiter.exception() is not None:
                self._error = f"worker failed: {waiter.exception()!r}"
                log.error("%s: the worker failed (%s); starting a new one", self._name, self._error)
            self._worker = None
            await self._discard(worker)
            await asyncio.gather(waiter, return_exceptions=True)

    async def _discard(self, worker: _CountingWorker) -> None:
        """Stop a worker (committing what finished, leaving the group) and keep its count."""
        try:
            await worker.stop()
        except Exception:
            log.warning("%s: stopping the worker failed", self._name, exc_info=True)
        self._retired_invocations += worker.invocations

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    async def ready(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait up to `timeout` s for the worker to have joined the group; return `ping()`."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            pass
        return await self.ping()

    async def ping(self) -> dict[str, Any]:
        """This actor's state: pid, readiness, partitions owned and invocations finished."""
        worker = self._worker
        return {
            "name": self._name,
            "pid": os.getpid(),
            "ready": self._ready.is_set(),
            "partitions": sorted(worker.processors) if worker is not None else [],
            "invocations": self._retired_invocations + (worker.invocations if worker else 0),
            "starts": self._starts,
            "error": self._error,
            "uptime": time.time() - self._created,
        }

    async def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        """Stop the worker gracefully: commit what finished, leave the group; return `ping()`."""
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            log.warning("%s: the worker did not stop within %.0f s", self._name, timeout)
        except Exception:
            log.warning("%s: the worker failed while stopping", self._name, exc_info=True)
        return await self.ping()


WorkerActor: Any = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)(WorkerHost)
"""`WorkerHost` as a Ray actor class: no CPU reserved (I/O bound), restarted forever by Ray."""


# -- the driver -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerStatus:
    """What the supervisor knows of one Ray worker after a ping."""

    index: int
    """Position in the pool (`RayWorkerPool.kill` takes it)."""
    name: str
    """The actor's name in the Ray namespace ``tether``."""
    reachable: bool
    """Whether the actor answered the ping (False while Ray restarts it)."""
    ready: bool = False
    """Whether its worker has joined the consumer group."""
    pid: int | None = None
    """The process hosting it; a new pid means Ray restarted the actor."""
    partitions: tuple[int, ...] = ()
    """Inbox partitions it processes now."""
    invocations: int = 0
    """Invocations it finished since this process started."""
    restarts: int = 0
    """Restarts the supervisor has seen (pid changes)."""
    error: str | None = None
    """The last start or run failure, if the worker is not running."""


@dataclass
class _Member:
    name: str
    handle: Any
    pid: int | None = None
    restarts: int = 0


def _verbosity() -> int:
    level = logging.getLogger().getEffectiveLevel()
    return 0 if level > logging.INFO else 1 if level > logging.DEBUG else 2


def _import_root(target: str) -> str | None:
    """The ``sys.path`` entry the driver imported MODULE of ``MODULE:OBJECT`` from."""
    module_name = target.partition(":")[0]
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if not file:
        return None
    path = Path(file).absolute()
    root = path.parent.parent if path.name == "__init__.py" else path.parent
    for _ in range(module_name.count(".")):
        root = root.parent
    return str(root)


def _answers(address: str) -> bool:
    """Whether a ``[ray://]host:port`` address accepts TCP connections (other forms: True)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return True  # "local", "auto" and the like: Ray resolves them itself
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
            return True
    except OSError:
        return False


class RayWorkerPool:
    """N Ray actors, each hosting one `Worker` of the same namespace.

    Use ``pool.start(...)`` then ``pool.status()`` and finally ``pool.stop()`` (or use the pool as
    a context manager after `start`). If Ray is not yet initialized, `start` initializes it
    and `stop` shuts it down; a caller's own Ray session is left running.
    """

    def __init__(self) -> None:
        self._members: list[_Member] = []
        self._owns_ray = False
        self.settings: Settings | None = None

    def __enter__(self) -> RayWorkerPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def names(self) -> list[str]:
        """The actors' names, in pool order."""
        return [m.name for m in self._members]

    def actor(self, index: int) -> Any:
        """The Ray handle of actor `index`."""
        return self._members[index].handle

    def start(
        self,
        target: str,
        settings: Settings,
        *,
        workers: int,
        address: str | None = None,
        ready_timeout: float = 120.0,
        runtime_env: Mapping[str, Any] | None = None,
    ) -> list[WorkerStatus]:
        """Start `workers` actors serving ``MODULE:OBJECT`` and wait until each joined the group.

        Args:
            target: ``MODULE:OBJECT``; it must be importable here and in the Ray workers (the
                directory it is imported from here is put on the workers' ``sys.path``).
            settings: The namespace and broker; the backend must be Kafka.
            workers: How many actors.
            address: A Ray cluster to join; default ``RAY_ADDRESS``, else a new local Ray.
            ready_timeout: Seconds to wait for every worker to join the group.
            runtime_env: Ray's ``runtime_env`` for the job when this pool initializes Ray (for
                a remote cluster, e.g. ``{"working_dir": "."}`` to ship MODULE there).

        Returns:
            The status of each worker once all are ready.

        Raises:
            UsageError: no Kafka broker configured, fewer than one worker, a bad target, or
                another pool serves the namespace on this Ray cluster.
            WorkerPoolError: Ray could not start or be joined, or an actor died in start-up or
                was not ready in time.
        """
        if self._members:
            raise UsageError("this pool is already started")
        if workers < 1:
            raise UsageError(f"--workers must be at least 1, got {workers}")
        if settings.resolved_backend != "kafka" or not settings.kafka.bootstrap_servers:
            raise UsageError(NEEDS_KAFKA)
        load_objects(target)  # fail here, not in N actors
        self.settings = settings
        self._init_ray(address, runtime_env)
        try:
            self._create(target, settings, workers)
            return self._wait_ready(ready_timeout)
        except BaseException:
            self.stop(timeout=10.0)
            raise

    def _init_ray(self, address: str | None, runtime_env: Mapping[str, Any] | None) -> None:
        if ray.is_initialized():
            return
        address = address or os.environ.get("RAY_ADDRESS") or "local"
        options: dict[str, Any] = {
            "address": address,
            "ignore_reinit_error": True,
            "logging_level": logging.WARNING,
        }
        if address == "local":
            options.update(num_cpus=2, include_dashboard=False)
        if runtime_env:
            options["runtime_env"] = dict(runtime_env)
        if not _answers(address):
            # Ray's own client would retry a wrong address for minutes before giving up.
            raise WorkerPoolError(
                f"no Ray cluster answers at {address}: start one (`ray start --head`) or fix "
                "--ray-address / RAY_ADDRESS"
            )
        started = time.monotonic()
        # `ray.init` installs signal handlers of its own (SIGTERM: log and exit at once): keep the
        # Python handlers set before it, so a SIGTERM during start-up still stops gracefully.
        main_thread = threading.current_thread() is threading.main_thread()
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)} if main_thread else {}
        try:
            ray.init(**options)
        except Exception as exc:  # ConnectionError, ValueError, RuntimeError: Ray's own choice
            where = "start a local Ray" if address == "local" else f"join the Ray cluster at {address}"
            raise WorkerPoolError(f"could not {where}: {exc}") from exc
        finally:
            for sig, handler in handlers.items():
                if callable(handler) and handler not in (signal.default_int_handler,):
                    signal.signal(sig, handler)
        self._owns_ray = True
        log.info(
            "ray %s in %.1f s", "started" if address == "local" else f"joined at {address}", time.monotonic() - started
        )

    def _create(self, target: str, settings: Settings, workers: int) -> None:
        root = _import_root(target)
        for i in range(workers):
            name = f"{settings.namespace}-worker-{i}"
            # Secrets in clear: the actors connect with them. They travel as actor arguments inside
            # the Ray cluster (trusted like the workers' hosts), never into a log line.
            data = settings.model_dump(mode="json", context={REVEAL_SECRETS: True})
            if settings.kafka.group_instance_id:  # static membership: one stable id per worker
                data["kafka"]["group_instance_id"] = f"{settings.kafka.group_instance_id}-{i}"
            if settings.runtime.metrics_port:  # one endpoint per worker: PORT + index
                data["runtime"]["metrics_port"] = settings.runtime.metrics_port + i
            try:
                handle = WorkerActor.options(name=name, namespace=RAY_NAMESPACE).remote(
                    target, data, name=name, sys_paths=[root] if root else [], verbose=_verbosity()
                )
            except ActorAlreadyExistsError as exc:
                raise UsageError(NAME_TAKEN.format(name=name, ray_ns=RAY_NAMESPACE, ns=settings.namespace)) from exc
            self._members.append(_Member(name, handle))

    def _wait_ready(self, timeout: float) -> list[WorkerStatus]:
        refs = [m.handle.ready.remote(timeout) for m in self._members]
        try:
            # Each actor bounds its own wait; the margin covers creating the actor processes.
            pings = ray.get(refs, timeout=timeout + 30)
        except GetTimeoutError:
            raise WorkerPoolError(f"the Ray workers did not start within {timeout:.0f} s") from None
        except RayActorError as exc:
            raise WorkerPoolError(f"a Ray worker died while starting: {exc}") from exc
        statuses = [self._record(i, ping) for i, ping in enumerate(pings)]
        late = [s for s in statuses if not s.ready]
        if late:
            detail = "; ".join(f"{s.name}: {s.error or 'not ready'}" for s in late)
            raise WorkerPoolError(f"the Ray workers did not join the group within {timeout:.0f} s ({detail})")
        return statuses

    def _record(self, index: int, ping: dict[str, Any] | None) -> WorkerStatus:
        member = self._members[index]
        if ping is None:
            status = WorkerStatus(index, member.name, reachable=False, restarts=member.restarts)
        else:
            pid = int(ping["pid"])
            if member.pid is not None and pid != member.pid:
                member.restarts += 1
                log.warning("%s was restarted by Ray (pid %d -> %d)", member.name, member.pid, pid)
            member.pid = pid
            status = WorkerStatus(
                index,
                member.name,
                reachable=True,
                ready=bool(ping["ready"]),
                pid=pid,
                partitions=tuple(ping["partitions"]),
                invocations=int(ping["invocations"]),
                restarts=member.restarts,
                error=ping["error"],
            )
        return status

    def status(self, timeout: float = 5.0) -> list[WorkerStatus]:
        """Ping every actor (up to `timeout` s) and return what each reported."""
        refs = [m.handle.ping.remote() for m in self._members]
        ray.wait(refs, num_returns=len(refs), timeout=timeout)
        statuses = []
        for i, ref in enumerate(refs):
            ping: dict[str, Any] | None
            try:
                ping = ray.get(ref, timeout=0)
            except (RayError, GetTimeoutError):
                ping = None  # restarting (or gone); the next ping will tell
            statuses.append(self._record(i, ping))
        return statuses

    def kill(self, index: int) -> None:
        """Kill actor `index` the hard way; Ray restarts it (for tests and chaos drills)."""
        ray.kill(self._members[index].handle, no_restart=False)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every worker gracefully, then the actors, then Ray if `start` started it."""
        members, self._members = self._members, []
        try:
            if members:
                refs = [m.handle.stop.remote(timeout) for m in members]
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout + 5)
                for ref in ready:
                    try:
                        ray.get(ref, timeout=0)
                    except RayError as exc:
                        log.warning("a Ray worker failed to stop cleanly: %s", exc)
                for m in members:
                    ray.kill(m.handle, no_restart=True)
                log.info("stopped %d Ray workers", len(members))
        finally:
            if self._owns_ray:
                self._owns_ray = False
                ray.shutdown()


def _ownership(statuses: Sequence[WorkerStatus]) -> str:
    parts = []
    for s in statuses:
        if not s.reachable:
            parts.append(f"{s.name}: unreachable")
        elif not s.ready:
            parts.append(f"{s.name} (pid {s.pid}): starting{f' ({s.error})' if s.error else ''}")
        else:
            owned = ",".join(map(str, s.partitions)) or "-"
            parts.append(f"{s.name} (pid {s.pid}): partitions {owned}")
    return "; ".join(parts)


def serve_on_ray(target: str, settings: Settings, *, workers: int, address: str | None) -> None:
    """Run `workers` Ray actors serving ``MODULE:OBJECT`` until SIGTERM or SIGINT.

    Every `PING_INTERVAL` s the driver pings the actors and logs partition ownership when it
    changes; on a signal it stops the workers gracefully and shuts Ray down if it started it.

    Raises:
        UsageError: no Kafka broker configured (the embedded log cannot be shared by processes).
        WorkerPoolError: the workers did not start.
    """
    stop = threading.Event()
    pool = RayWorkerPool()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Before the pool starts (it keeps them across `ray.init`): a SIGTERM while the workers
    # start stops them once they are up, instead of Ray's handler ending the process at once.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        pool.start(target, settings, workers=workers, address=address)
    except BaseException:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise
    try:
        log.info("serving %s on %d Ray workers (namespace %s)", target, workers, settings.namespace)
        last = ""
        while not stop.wait(PING_INTERVAL):
            summary = _ownership(pool.status(timeout=PING_INTERVAL))
            if summary != last:
                log.info("ownership: %s", summary)
                last = summary
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("stopping %d Ray workers", workers)
        pool.stop()
