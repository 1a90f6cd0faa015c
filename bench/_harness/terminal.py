"""Progress bars, the console, and the ports benchmarks bind on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from eventstore.kafka.localbroker import port_is_free

from .latency import Progress


@contextlib.contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True) -> Iterator[Progress]:
    """A rich progress bar for ``total`` calls; yields a callable that advances it."""
    if not enabled or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import (
        Progress as RichProgress,
    )

    with RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def console() -> Any:
    """A shared rich console writing to stderr (results go to files, chatter to stderr)."""
    global _CONSOLE
    if _CONSOLE is None:
        from rich.console import Console

        _CONSOLE = Console(stderr=True, highlight=False)
    return _CONSOLE


_CONSOLE: Any = None


def check_mark(figures: dict[str, Any]) -> str:
    """``ok`` in green for a correct run; ``WRONG`` and its first three problems in red."""
    return "[green]ok[/green]" if figures["correct"] else f"[red]WRONG {figures['check']['problems'][:3]}[/red]"


def free_port(host: str = "127.0.0.1", avoid: Iterable[int] = ()) -> int:
    """A port the kernel says is free now (it may be taken by the time it is used)."""
    import socket

    avoid = set(avoid)
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port
    raise RuntimeError(f"could not find a free TCP port on {host}")


def pick_port(preferred: int, host: str = "127.0.0.1", avoid: Iterable[int] = ()) -> int:
    """``preferred`` if it is free, else another free port."""
    avoid = set(avoid)
    if preferred not in avoid and port_is_free(preferred, host):
        return preferred
    return free_port(host, avoid)


async def wait_for_port(port: int, host: str = "127.0.0.1", timeout_s: float = 60.0) -> None:
    """Wait until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout_s:.0f} s") from exc
            await asyncio.sleep(0.1)
        else:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
