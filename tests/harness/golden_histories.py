"""Golden session histories of the examples, recorded with the kit (deterministic: virtual time, fixed ids).

``python -m harness.golden_histories`` (from ``tests/``) writes them again into
``tests/golden/histories/``; the replay tests check the examples' current code against them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from actors.testing import SessionHistory, SessionTestKit
from harness.examples import example

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "histories"


async def record() -> dict[str, SessionHistory]:
    """The histories: the quickstart agent's two questions, an approved and a timed-out approval."""
    quickstart = example("quickstart")
    approval = example("approval_flow")
    out: dict[str, SessionHistory] = {}
    async with SessionTestKit(quickstart.agent) as kit:
        await kit.call(quickstart.ask, "s1", quickstart.Ask(question="why?"), idempotency_key="q1")
        await kit.call(quickstart.ask, "s1", quickstart.Ask(question="and then?"), idempotency_key="q2")
        out["quickstart-agent"] = SessionHistory.from_json(await kit.history(quickstart.agent, "s1"))
    async with SessionTestKit(approval.agent) as kit:
        pending = await kit.start(approval.publish, "doc-1", approval.Draft(text="hello"), idempotency_key="p1")
        await kit.advance(seconds=30)
        waiting = kit.state(approval.agent, "doc-1").waiting_for
        await kit.resolve(waiting, "yes")
        await pending.result()
        late = await kit.start(approval.publish, "doc-2", approval.Draft(text="late"), idempotency_key="p2")
        await late.result()  # times out after a day
        out["approval-approved"] = SessionHistory.from_json(await kit.history(approval.agent, "doc-1"))
        out["approval-timed-out"] = SessionHistory.from_json(await kit.history(approval.agent, "doc-2"))
    return out


def main() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name, history in asyncio.run(record()).items():
        (GOLDEN / f"{name}.json").write_text(history.dumps())
        print("wrote", GOLDEN / f"{name}.json")


if __name__ == "__main__":
    main()
