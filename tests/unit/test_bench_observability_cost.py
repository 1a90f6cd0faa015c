"""`python -m bench overhead`: each arm's cost is paired with the `off` run of its own round."""

from __future__ import annotations

from typing import Any

from bench.observability_cost import ARMS, costs


def _run(
    arm: str, rnd: int, calls_per_s: float, cpu: float, *, other: float = 0.0, own: float | None = None
) -> dict[str, Any]:
    run: dict[str, Any] = {
        "arm": arm,
        "round": rnd,
        "calls_per_s": calls_per_s,
        "cpu_ms_per_call": cpu,
        "machine_load": {"other_cpu_s": other * 10.0, "capacity_cpu_s": 10.0},
    }
    if own is not None:
        run["processes"] = {
            "worker": {"cpu_ms_per_call": own / 2},
            "load_generator": {"cpu_ms_per_call": own / 2},
            "broker": {"cpu_ms_per_call": cpu - own},
        }
    return run


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
    assert (out["quiet_rounds"], out["rounds_used"]) == (3, 3)


def test_costs_leave_out_the_rounds_another_job_disturbed_when_three_quiet_ones_remain() -> None:
    quiet = [
        run
        for rnd in (1, 2, 3)
        for run in (_run("off", rnd, 1000, 1.00, own=0.6), _run("traced", rnd, 900, 1.10, own=0.7))
    ]
    disturbed = [_run("off", 4, 1000, 1.50, other=0.25, own=0.9), _run("traced", 4, 900, 1.10, own=0.7)]
    out = costs(quiet + disturbed)
    assert (out["rounds"], out["quiet_rounds"], out["rounds_used"]) == (4, 3, 3)
    assert round(out["cpu_cost_pct_traced"], 6) == 10.0
    assert len(out["per_round_cpu_cost_pct_traced"]) == 3
    assert round(out["tether_cpu_cost_pct_traced"], 6) == round((0.7 / 0.6 - 1) * 100, 6), "the broker left out"
    # with fewer than three quiet rounds every round counts
    few = costs(quiet[:2] + disturbed)
    assert (few["quiet_rounds"], few["rounds_used"]) == (1, 2)
