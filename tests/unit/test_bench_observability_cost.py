"""`python -m bench overhead`: each arm's cost is paired with the `off` run of its own round."""

from __future__ import annotations

from bench.observability_cost import ARMS, costs


def _run(arm: str, rnd: int, calls_per_s: float, cpu: float) -> dict[str, object]:
    return {"arm": arm, "round": rnd, "calls_per_s": calls_per_s, "cpu_ms_per_call": cpu}


def test_costs_pair_each_arm_with_the_off_run_of_the_same_round() -> None:
    runs = [
        _run("off", 1, 1000, 1.00),
        _run("metrics", 1, 990, 1.01),
        _run("traced", 1, 800, 1.20),
        _run("off", 2, 500, 2.00),  # a slow round: its ratios still hold
        _run("metrics", 2, 495, 2.02),
        _run("traced", 2, 400, 2.40),
        _run("off", 3, 1000, 1.00),
        _run("metrics", 3, 900, 1.50),  # one noisy run: the median ignores it
        _run("traced", 3, 800, 1.20),
    ]
    out = costs(runs)
    assert round(out["cpu_cost_pct_metrics"], 6) == 1.0
    assert round(out["cpu_cost_pct_traced"], 6) == 20.0
    assert round(out["throughput_cost_pct_traced"], 6) == 25.0
    assert "cpu_cost_pct_sampled" not in out, "an arm that did not run has no figure"
    assert [a.name for a in ARMS][0] == "off"
