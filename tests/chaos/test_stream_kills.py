"""A kill -9 mid-stream: the reader gets one complete stream (the last attempt's) and the reply.

A `tether serve` subprocess streams 30 tokens; it is killed (SIGKILL) while it holds after
token 10, a new worker takes over and streams again from the first token. The reader, which
stays connected through the kill, sees the dead attempt's 11 chunks, then the new attempt from
``seq`` 0 (its cue to start over), all 30 chunks once, in order, and the reply.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import stream_sessions as ss
from harness.session_harness import WorkerProcess, settings_for, worker_env

from actors import Client

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize("backend", ["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
async def test_kill_9_mid_stream_gives_one_complete_stream_and_the_reply(
    request: pytest.FixtureRequest, backend: str, namespace: str, tmp_path: Path
) -> None:
    settings = settings_for(request, backend, tmp_path / "data", namespace, partitions=2)
    hold = tmp_path / "hold"
    hold.touch()
    worker = WorkerProcess(
        "harness.stream_sessions:streamer", worker_env(settings, TETHER_TEST_HOLD=str(hold)), tmp_path
    )
    worker.start()
    chunks = []
    try:
        async with Client.connect(settings) as client:
            stream = client.stream(ss.tell, "kill-9", ss.Tell(tokens=30, pause=0.01, hold_at=10), timeout=240)
            first_pid = worker.pid
            async for chunk in stream:
                chunks.append(chunk)
                if len(chunks) == 11:  # the worker holds after token 10: kill it there
                    worker.kill_and_restart(meanwhile=hold.unlink)
            reply = stream.result()
    except BaseException:
        print(worker.logs())
        raise
    finally:
        worker.cleanup()
    assert worker.pid != first_pid
    restarts = [i for i, c in enumerate(chunks) if c.seq == 0]
    assert restarts == [0, 11], [(c.run, c.attempt, c.seq) for c in chunks]
    final = chunks[restarts[-1] :]
    assert [c.data for c in final] == [ss.token(n) for n in range(30)]
    assert final[0].run_key > chunks[0].run_key
    assert stream.end is not None and stream.end.run_key == final[0].run_key and stream.end.chunks == 30
    assert reply.text == "".join(ss.token(n) for n in range(30))
