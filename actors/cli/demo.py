"""`tether demo`: a research agent whose worker is killed mid-task and resumes without repeats.

The agent plans with a (simulated) LLM, searches three sources in parallel (one answers 429
once), summarizes, and emails the report. Each side effect appends to a ledger file, the
stand-in for the outside world, so the demo can show that every effect happened exactly once.
Then the agent explains its report token by token (a deterministic stand-in model) and the
terminal prints the tokens as they arrive through `client.stream`, then the reply.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ..client import Client
from ..context import ObjectContext
from ..definitions import VirtualObject
from ..errors import RetryableError
from ..settings import Settings

LEDGER_ENV = "TETHER_DEMO_LEDGER"
STEP_SECONDS_ENV = "TETHER_DEMO_STEP_SECONDS"
TOKEN_SECONDS_ENV = "TETHER_DEMO_TOKEN_SECONDS"


class ResearchState(BaseModel):
    """What a research session remembers."""

    reports: list[str] = Field(default_factory=list)
    emails_sent: int = 0


class Research(BaseModel):
    """Research a topic and email the report."""

    topic: str
    email: str = "team@example.com"


class Report(BaseModel):
    """The agent's answer."""

    topic: str
    summary: str
    sources: list[str]


class Explain(BaseModel):
    """Explain the last report, streaming the answer."""

    audience: str = "a newcomer"


class Explanation(BaseModel):
    """The whole streamed answer, as the reply."""

    text: str
    tokens: int


class ReportWritten(BaseModel):
    """A report was written and emailed."""

    topic: str
    summary: str
    email: str


agent = VirtualObject("research_agent", state=ResearchState)

_failed_once: set[str] = set()


def _ledger(kind: str, step: str, **extra: Any) -> None:
    path = os.environ.get(LEDGER_ENV)
    if not path:
        return
    line = json.dumps({"kind": kind, "step": step, "pid": os.getpid(), "t": time.time(), **extra})
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


async def _effect(step: str, result: Any, *, flaky: bool = False) -> Any:
    """A slow side effect that records itself in the ledger when it completes."""
    _ledger("start", step)
    await asyncio.sleep(float(os.environ.get(STEP_SECONDS_ENV, "0.4")))
    if flaky and step not in _failed_once:
        _failed_once.add(step)
        _ledger("transient-failure", step)
        raise RetryableError(f"{step}: 429 Too Many Requests", retry_after=0.2)
    _ledger("effect", step)
    return result


@agent.handler()
async def research(ctx: ObjectContext[ResearchState], req: Research) -> Report:
    """Plan, search three sources in parallel, summarize, email."""
    plan = await ctx.run("llm:plan", lambda: _effect("llm:plan", [f"{req.topic} basics", f"{req.topic} 2026"]))
    web, papers, news = await asyncio.gather(
        ctx.run("search:web", lambda: _effect("search:web", f"web results for {plan[0]}")),
        ctx.run("search:papers", lambda: _effect("search:papers", f"papers on {plan[1]}", flaky=True)),
        ctx.run("search:news", lambda: _effect("search:news", f"news about {req.topic}")),
    )
    summary = await ctx.run(
        "llm:summarize", lambda: _effect("llm:summarize", f"{req.topic}: {len(web + papers + news)} chars of findings")
    )
    await ctx.run("email:send", lambda: _effect("email:send", {"to": req.email, "id": str(ctx.uuid())}))
    ctx.emit(ReportWritten(topic=req.topic, summary=summary, email=req.email))
    return Report(topic=req.topic, summary=summary, sources=["web", "papers", "news"])


EXPLANATION = "A durable agent journals every step, so a killed worker's successor resumes it without repeats."


async def _stand_in_model(ctx: ObjectContext[ResearchState], prompt: str) -> str:
    """A deterministic fake LLM: publishes its answer word by word with `ctx.stream`."""
    words = EXPLANATION.split(" ")
    for n, word in enumerate(words):
        await ctx.stream(word if n == 0 else " " + word)
        await asyncio.sleep(float(os.environ.get(TOKEN_SECONDS_ENV, "0.03")))
    return EXPLANATION


@agent.handler()
async def explain(ctx: ObjectContext[ResearchState], req: Explain) -> Explanation:
    """Explain the latest report to `req.audience`, streaming tokens as the model writes them."""
    prompt = f"explain {ctx.state.reports[-1] if ctx.state.reports else 'durability'} to {req.audience}"
    text = await ctx.run("llm:explain", lambda: _stand_in_model(ctx, prompt))
    return Explanation(text=text, tokens=len(text.split(" ")))


@agent.on_event(ReportWritten)
def _written(state: ResearchState, event: ReportWritten) -> None:
    state.reports.append(event.summary)
    state.emails_sent += 1


# -- the demo runner ------------------------------------------------------------------------
def _read_ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _start_worker(settings: Settings, ledger: Path, log_file: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "TETHER_NAMESPACE": settings.namespace,
            "TETHER_DATA_DIR": str(settings.data_dir),
            "TETHER_PARTITIONS": str(settings.partitions),
            LEDGER_ENV: str(ledger),
        }
    )
    if settings.resolved_backend == "kafka" and settings.kafka.bootstrap_servers:
        env.update(settings.kafka.environment())  # bootstrap, TLS and SASL alike
        env["TETHER_BACKEND"] = "kafka"
    cmd = [sys.executable, "-c", "from actors.cli.main import main; main()", "serve", "actors.cli.demo:agent", "-v"]
    with open(log_file, "ab") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def run_demo(settings: Settings, *, use_kafka: bool = False) -> int:
    """Run the demo; returns the exit code (0 when every effect happened exactly once)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    root = Path(settings.data_dir) / "demo"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    broker_dir: Path | None = None
    updates: dict[str, Any] = {"data_dir": root, "namespace": f"demo{uuid.uuid4().hex[:6]}", "partitions": 2}
    if use_kafka and not settings.kafka.bootstrap_servers:
        from eventstore.kafka.localbroker.manager import LocalBroker

        broker_dir = Path(settings.data_dir) / "kafka"
        with console.status("starting a local Kafka broker (first time: resolving jars with Maven)"):
            info = LocalBroker().start(broker_dir)
        console.print(f"Kafka broker at [bold]{info.bootstrap}[/]")
        updates["kafka"] = settings.kafka.model_copy(update={"bootstrap_servers": info.bootstrap})
        updates["backend"] = "kafka"
    elif not use_kafka:
        updates["backend"] = "embedded"
    settings = settings.model_copy(update=updates)
    ledger = root / "ledger.jsonl"
    log_file = root / "worker.log"
    backend = settings.resolved_backend
    console.rule(f"[bold]Tether demo[/] on the {backend} backend")
    try:
        code = asyncio.run(_demo(console, settings, ledger, log_file))
    finally:
        if broker_dir is not None:
            console.print("[dim]the local broker keeps running; stop it with `tether kafka down`[/]")
    if code == 0:
        table = Table("step", "side effects", "attempts", "worker pids")
        entries = _read_ledger(ledger)
        for step in dict.fromkeys(e["step"] for e in entries):
            mine = [e for e in entries if e["step"] == step]
            effects = sum(e["kind"] == "effect" for e in mine)
            table.add_row(
                step,
                f"[green]{effects}[/]" if effects == 1 else f"[red]{effects}[/]",
                str(sum(e["kind"] == "start" for e in mine)),
                ", ".join(sorted({str(e["pid"]) for e in mine})),
            )
        console.print(table)
        effects_ok = all(
            sum(e["kind"] == "effect" and e["step"] == s for e in entries) == 1 for s in {e["step"] for e in entries}
        )
        if effects_ok:
            console.print("[bold green]Every side effect happened exactly once, across a kill -9.[/]")
        else:
            console.print("[bold red]Some side effect happened more than once.[/]")
            code = 1
    return code


async def _stream_explanation(console: Any, client: Client) -> None:  # noqa: ANN401 - a rich Console
    console.print("[bold]streaming:[/] research_agent/demo-1 explains its report, token by token")
    stream = client.stream(explain, "demo-1", Explain(), timeout=60)
    chunks = 0
    async for chunk in stream:
        console.out(str(chunk.data), end="", highlight=False)
        console.file.flush()
        chunks += 1
    console.out("")
    reply = stream.result()
    console.print(f"[bold]reply:[/] {reply.tokens} tokens, streamed as {chunks} chunks before the reply")


async def _demo(console: Any, settings: Settings, ledger: Path, log_file: Path) -> int:
    worker = _start_worker(settings, ledger, log_file)
    console.print(f"worker started (pid {worker.pid}); asking research_agent/demo-1 to research 'durable agents'")
    try:
        async with Client.connect(settings) as client:
            call = asyncio.create_task(client.call(research, "demo-1", Research(topic="durable agents"), timeout=120))
            # Kill the worker once the summarize step has started: plan and searches are journaled.
            deadline = time.monotonic() + 60
            while not any(e["step"] == "llm:summarize" for e in _read_ledger(ledger)):
                if time.monotonic() > deadline or call.done():
                    console.print("[red]the worker did not reach the summarize step; see", log_file)
                    return 1
                await asyncio.sleep(0.05)
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            done = [e["step"] for e in _read_ledger(ledger) if e["kind"] == "effect"]
            console.print(
                f"[bold red]kill -9[/] worker {worker.pid} during llm:summarize; done so far: {', '.join(done)}"
            )
            worker = _start_worker(settings, ledger, log_file)
            console.print(f"new worker started (pid {worker.pid}); it restores the session from the log")
            report = await call
            console.print(f"[bold]reply:[/] {report.summary} (sources: {', '.join(report.sources)})")
            state = await client.state("research_agent", "demo-1")
            console.print(f"[bold]state:[/] version {state['version']}, emails sent {state['state']['emails_sent']}")
            await _stream_explanation(console, client)
            return 0
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
