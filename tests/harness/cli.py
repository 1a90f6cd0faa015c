"""Running `tether` in tests: in this process (click's runner) or as a process of its own.

Both put the namespace options (``-b``/``--data-dir`` and ``-n``) after the group and command,
``tether GROUP COMMAND OPTIONS ARGS...``, as an operator types them.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner
from click.testing import Result as ClickResult

from actors import Settings
from actors.cli.main import build

from .session_harness import REPO, cli_options

TETHER = [sys.executable, "-c", "from actors.cli.main import main; main()"]
"""The `tether` command, run by this interpreter."""


@dataclass
class Result:
    """How a `tether` process ended: its exit code and its stdout and stderr together."""

    exit_code: int
    output: str


def invoke(
    settings: Settings, *args: str, namespace: str | None = None, data_dir: Path | None = None, columns: int = 300
) -> ClickResult:
    """``tether ARGS`` in this process, pointed at `settings`' namespace (or the one given)."""
    if data_dir is not None or namespace is not None:
        options = ["--data-dir", str(data_dir or settings.data_dir), "-n", namespace or settings.namespace]
    else:
        options = cli_options(settings)
    return CliRunner().invoke(build(), [*args[:2], *options, *args[2:]], env={"COLUMNS": str(columns)})


def invoke_ok(settings: Settings, *args: str, **kwargs: object) -> str:
    """`invoke`, asserting exit code 0; its output."""
    result = invoke(settings, *args, **kwargs)  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    return result.output


async def run(settings: Settings, *args: str, timeout: float = 90) -> Result:
    """``tether ARGS`` as operators run it: a process of its own, no ``TETHER_*`` environment."""
    cmd = [*TETHER, *args[:2], *cli_options(settings), *args[2:]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=REPO
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"`tether {' '.join(args)}` did not finish within {timeout:.0f} s") from None
    return Result(proc.returncode if proc.returncode is not None else -1, out.decode())


async def run_ok(settings: Settings, *args: str, timeout: float = 90) -> str:
    """`run`, asserting exit code 0; its output."""
    result = await run(settings, *args, timeout=timeout)
    assert result.exit_code == 0, f"tether {args} exited {result.exit_code}: {result.output}"
    return result.output
