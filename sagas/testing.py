"""Test kit: a file-backed stand-in for the outside world that honours idempotency keys.

Point the actions and compensations of a saga under test at a `Ledger`: every process that
opens the same file sees the same effects, so a test can kill workers and then check that
each effect happened once, and which ones were executed again (and absorbed by their key).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class Ledger:
    """An append-only JSON-lines file of effects, keyed by idempotency key.

    `apply` is what an idempotent API does: the first request with a key takes effect and its
    result is stored; a repeat changes nothing and returns the stored result. Repeats are
    written down as ``duplicate`` lines, so a test sees re-executions that the key absorbed.
    Safe across processes (an exclusive `flock` around each read-and-append); a SIGKILL never
    leaves half a line visible to the next writer. An instance reads only what was appended
    since its last look, so keep one per process (`Ledger.at`): reading the whole file on every
    call would block an event loop for longer and longer as the ledger grows.
    """

    _open: dict[Path, Ledger] = {}

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._pos = 0
        self._entries: list[dict[str, Any]] = []
        self._effects: dict[str, dict[str, Any]] = {}

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> Ledger:
        """This process's ledger at `path` (one instance per file, so reads stay incremental)."""
        key = Path(path).absolute()
        ledger = cls._open.get(key)
        if ledger is None:
            ledger = cls._open[key] = cls(key)
        return ledger

    @contextmanager
    def _locked(self) -> Iterator[int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # releases the lock

    def _catch_up(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size <= self._pos:
            return
        data = os.pread(fd, size - self._pos, self._pos)
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            if line.strip():
                self._seen(json.loads(line))
        self._pos += end

    def _seen(self, entry: dict[str, Any]) -> None:
        self._entries.append(entry)
        if entry.get("kind") == "effect":
            self._effects.setdefault(entry["key"], entry)

    def _append(self, fd: int, entry: dict[str, Any]) -> None:
        # Under the lock, after `_catch_up`: this line is the next one in the file.
        line = (json.dumps(entry, default=str) + "\n").encode()
        os.write(fd, line)
        self._seen(json.loads(line))
        self._pos += len(line)

    def apply(self, key: str, op: str, result: Any = None, **data: Any) -> tuple[bool, Any]:
        """Take effect once per `key`; returns (first time?, the stored result)."""
        with self._locked() as fd:
            self._catch_up(fd)
            done = self._effects.get(key)
            entry = {
                "kind": "effect" if done is None else "duplicate",
                "key": key,
                "op": op,
                "pid": os.getpid(),
                "t": time.time(),
                "result": result,
                **data,
            }
            self._append(fd, entry)
            if done is None:
                return True, result
            return False, done.get("result")

    def note(self, kind: str, key: str, **data: Any) -> None:
        """Write down something that is not an effect (a call, a failure, a pause)."""
        with self._locked() as fd:
            self._catch_up(fd)
            self._append(fd, {"kind": kind, "key": key, "pid": os.getpid(), "t": time.time(), **data})

    def entries(self) -> list[dict[str, Any]]:
        """Every line so far."""
        if not self.path.exists():
            return []
        with self._locked() as fd:
            self._catch_up(fd)
        return list(self._entries)

    def effects(self) -> dict[str, dict[str, Any]]:
        """Key -> the effect it took (one per key, by construction)."""
        self.entries()
        return dict(self._effects)

    def duplicates(self) -> list[dict[str, Any]]:
        """Repeats that the idempotency key absorbed (each one a re-execution)."""
        return [e for e in self.entries() if e["kind"] == "duplicate"]
