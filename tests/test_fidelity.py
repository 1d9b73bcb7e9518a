"""``--fidelity auto`` (simulator/run/fidelity.py): the estimate, the choice, the deadline and what every result
says about them, through the library, the commands and sweeps."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

import simulator.run.training as training
from simulator.compute.roofline import load_device
from simulator.network import flow, make_network
from simulator.network.fabric import Fabric
from simulator.network.schedule import Pattern, Schedule
from simulator.options import COARSE_RATE_TOLERANCE
from simulator.run import fidelity
from simulator.run.collective import ORDERED_REASON
from simulator.run.fidelity import FidelityChoice, choose, flow_cost_s
from simulator.run.training import make_cluster, simulate_step
from topologies import load_topology
from workloads import load_workload


def test_the_estimate_is_its_stated_formula() -> None:
    a = Schedule(8)
    a.add(Pattern.of(8, [0, 1, 2], [1, 2, 3], 1.0), repeat=2)  # a chain: no rank in two sends or receives
    a.add(Pattern.of(8, list(range(5)), [5, 6, 7, 5, 6], 1.0))  # ranks 5 and 6 receive twice: shared links
    m3 = fidelity.PER_MESSAGE_S * 3 + fidelity.STEP_IN_TRAINING_S
    m5 = (fidelity.PER_MESSAGE_S + fidelity.PER_SHARED_MESSAGE_S) * 5 + fidelity.STEP_IN_TRAINING_S
    assert flow_cost_s([a, a]) == pytest.approx(2 * (2 * m3 + m5), rel=1e-12)
    alone = 3 * fidelity.STEP_ALONE_S - 3 * fidelity.STEP_IN_TRAINING_S  # three pattern steps, one collective
    assert flow_cost_s([a], alone=True) == pytest.approx(2 * m3 + m5 + alone, rel=1e-12)
    spread = (2 * (fidelity.PER_MESSAGE_S * 3 + fidelity.STEP_ALONE_S)
              + (fidelity.PER_MESSAGE_S + fidelity.PER_SHARED_MESSAGE_SPREAD_S) * 5 + fidelity.STEP_ALONE_S)
    assert flow_cost_s([a], spread=True) == pytest.approx(spread, rel=1e-12)  # dmodk: ranks in step, few levels
    weighted = 3 * fidelity.WEIGHTED_STEP_S + fidelity.WEIGHTED_MESSAGE_S * (2 * 3 + 5)
    assert flow_cost_s([a], maxmin=False) == pytest.approx(weighted, rel=1e-12)
    estimate = flow_cost_s([a])
    growth = (5 / 2) ** fidelity.SHARED_GROWTH
    bigger = (fidelity.PER_MESSAGE_S + fidelity.PER_SHARED_MESSAGE_S * growth) * 5 + fidelity.STEP_IN_TRAINING_S
    coarse_growth = (5 / 2) ** fidelity.SHARED_GROWTH_COARSE
    coarse_m5 = (fidelity.PER_MESSAGE_S + fidelity.PER_SHARED_MESSAGE_COARSE_S * coarse_growth) * 5 + (
        fidelity.STEP_IN_TRAINING_S)
    with pytest.MonkeyPatch.context() as patch:  # past SHARED_REF_MESSAGES: x (m / SHARED_REF_MESSAGES)^SHARED_GROWTH
        patch.setattr(fidelity, "SHARED_REF_MESSAGES", 2)
        assert flow_cost_s([a, a]) == pytest.approx(2 * (2 * m3 + bigger), rel=1e-12)
        assert flow_cost_s([a], rate_tolerance=COARSE_RATE_TOLERANCE) == pytest.approx(  # its own, slower growth
            2 * m3 + coarse_m5, rel=1e-12)
    many = Schedule(8)  # past the compiled switch, lone messages cost less, after numba's load; shared ones do not
    numpy_steps = flow.COMPILED_WINDOWS // fidelity.WINDOWS_PER_STEP
    many.add(Pattern.of(8, [0, 1], [1, 2], 1.0), repeat=numpy_steps - 3)
    many.add(Pattern.of(8, [0, 1], [1, 2], 1.0), repeat=13)  # straddles the switch: 3 steps before, 10 after
    many.add(Pattern.of(8, [0, 1], [2, 2], 1.0), repeat=4)
    assert flow_cost_s([many]) == pytest.approx(
        (numpy_steps * 2 * fidelity.PER_MESSAGE_S + 10 * 2 * fidelity.LONE_MESSAGE_COMPILED_S
         + 4 * 2 * (fidelity.PER_MESSAGE_S + fidelity.PER_SHARED_MESSAGE_S))
        + numpy_steps * fidelity.STEP_IN_TRAINING_S + fidelity.NUMBA_LOAD_S, rel=1e-12)
    assert flow_cost_s([many], fused=False) == pytest.approx(  # runs sharing the network: no fused windows
        (numpy_steps + 10) * 2 * fidelity.PER_MESSAGE_S
        + 4 * 2 * (fidelity.PER_MESSAGE_S + fidelity.PER_SHARED_MESSAGE_S) + 14 * fidelity.STEP_COMPILED_S
        + numpy_steps * fidelity.STEP_IN_TRAINING_S + fidelity.NUMBA_LOAD_S, rel=1e-12)
    assert choose([many], shared=[many]).estimate_s == pytest.approx(
        flow_cost_s([many]) + flow_cost_s([many], fused=False), rel=1e-12)
    assert choose([a], budget_s=estimate / fidelity.ESTIMATE_MARGIN).fidelity == "flow"  # fits, with the margin
    over = choose([a], budget_s=estimate / fidelity.ESTIMATE_MARGIN * 0.999)
    assert over.fidelity == "analytical" and f"over 0.8 x the {over.budget_s:g} s budget" in over.reason


def test_auto_tries_the_coarse_tolerance_before_the_analytical_model() -> None:
    """Unset, the tolerance is the default, or the coarse one where only that fits the budget; a tolerance the user
    set is kept; where no message shares a hashed link, the tolerance changes nothing and is not tried."""
    a = Schedule(8)
    a.add(Pattern.of(8, list(range(5)), [5, 6, 7, 5, 6], 1.0))  # ranks 5 and 6 receive twice: shared links
    default, coarse = flow_cost_s([a]), flow_cost_s([a], rate_tolerance=COARSE_RATE_TOLERANCE)
    assert default - coarse == pytest.approx(5 * (fidelity.PER_SHARED_MESSAGE_S - fidelity.PER_SHARED_MESSAGE_COARSE_S),
                                             rel=1e-12)
    budget = (default + coarse) / 2 / fidelity.ESTIMATE_MARGIN
    middle = choose([a], budget_s=budget)
    assert (middle.fidelity, middle.rate_tolerance, middle.estimate_s) == ("flow", COARSE_RATE_TOLERANCE, coarse)
    assert middle.reason == (f"auto: flow level at rate tolerance 0.01, estimated at {coarse:.3g} s, within the "
                             f"{budget:g} s budget (at the default 0.001: {default:.3g} s)")
    below = choose([a], budget_s=coarse / fidelity.ESTIMATE_MARGIN * 0.999)
    assert below.fidelity == "analytical" and f"{default:.3g} s ({coarse:.3g} s at rate tolerance 0.01), over" in (
        below.reason)
    assert choose([a], budget_s=budget, rate_tolerance=1e-3).fidelity == "analytical"  # set by the user: kept
    assert choose([a], budget_s=budget, rate_tolerance=0.05) == FidelityChoice("flow", coarse, budget, 0.05)
    spread = choose([a], budget_s=flow_cost_s([a], spread=True) / fidelity.ESTIMATE_MARGIN * 0.999, spread=True)
    assert spread.fidelity == "analytical" and spread.default_estimate_s is None


@pytest.fixture(scope="module")
def small() -> tuple:
    fabric = Fabric(load_topology("leafspine16"))
    return load_workload("dlrm-small"), make_cluster(fabric, "des", load_device("h100"), None, workers=8)


def test_auto_runs_flow_level_when_it_fits_and_says_how_far_the_analytical_model_is(small: tuple) -> None:
    workload, cluster = small
    auto = simulate_step(workload, cluster, "des", "auto").summary
    flow = simulate_step(workload, cluster, "des", "flow").summary
    analytical = simulate_step(workload, cluster, "des", "analytical").summary
    assert auto.fidelity == "flow" and auto.fidelity_reason.startswith("auto: flow level estimated at")
    assert "within the 60 s budget" in auto.fidelity_reason
    assert auto.step_time_s == flow.step_time_s and flow.fidelity_reason == "requested"
    expected = (analytical.step_time_s - flow.step_time_s) / flow.step_time_s
    assert auto.analytical_difference == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert flow.analytical_difference is None and "analytical_difference" not in flow.document()


def test_auto_runs_flow_level_at_the_coarse_tolerance_when_only_that_fits(small: tuple,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    workload, cluster = small
    monkeypatch.setattr(fidelity, "PER_SHARED_MESSAGE_S", 1.0)  # the default tolerance far over the budget
    made = []
    monkeypatch.setattr(training, "make_network", lambda *args, **kwargs: made.append(kwargs) or make_network(
        *args, **kwargs))
    auto = simulate_step(workload, cluster, "des", "auto").summary
    assert made[0]["rate_tolerance"] == COARSE_RATE_TOLERANCE
    coarse = simulate_step(workload, cluster, "des", "flow", rate_tolerance=COARSE_RATE_TOLERANCE).summary
    assert auto.fidelity == "flow" and "at rate tolerance 0.01" in auto.fidelity_reason
    assert auto.step_time_s == coarse.step_time_s
    assert simulate_step(workload, cluster, "des", "auto", rate_tolerance=1e-3).summary.fidelity == "analytical"


def test_auto_runs_analytical_when_the_estimate_is_over_budget(small: tuple) -> None:
    workload, cluster = small
    auto = simulate_step(workload, cluster, "des", "auto", budget_s=1e-6).summary
    analytical = simulate_step(workload, cluster, "des", "analytical").summary
    assert auto.fidelity == "analytical" and "over 0.8 x the 1e-06 s budget" in auto.fidelity_reason
    assert auto.step_time_s == analytical.step_time_s and auto.analytical_difference is None


def test_a_flow_run_past_its_deadline_stops_and_the_step_runs_analytical(small: tuple,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The estimate can err low: then flow level stops at the budget and the result says so."""
    workload, cluster = small
    monkeypatch.setattr(training, "choose", lambda schedules, budget_s, **_: FidelityChoice("flow", 0.0, budget_s))
    auto = simulate_step(workload, cluster, "des", "auto", budget_s=1e-9).summary
    analytical = simulate_step(workload, cluster, "des", "analytical").summary
    assert auto.fidelity == "analytical" and "passed the 1e-09 s budget" in auto.fidelity_reason
    assert auto.step_time_s == analytical.step_time_s


def test_commands_default_to_auto_and_print_what_they_chose(capsys: pytest.CaptureFixture) -> None:
    args = ["--workload", "dlrm-small", "--topology", "leafspine16", "--workers", "8"]
    code, out, _ = run_cli(capsys, "run", *args, "--json")
    document = json.loads(out)
    assert code == 0 and document["fidelity"] == "flow" and document["fidelity_reason"].startswith("auto:")
    code, out, _ = run_cli(capsys, "compare", *args, "--budget-s", "1e-6")
    assert code == 0 and "ps: analytical fidelity (auto: flow level estimated at" in " ".join(out.split())
    code, out, _ = run_cli(capsys, "run", *args, "--fidelity", "flow", "--json")
    assert json.loads(out)["fidelity_reason"] == "requested"
    code, _, err = run_cli(capsys, "run", *args, "--budget-s", "0")
    assert code == 2 and "--budget-s: got 0.0; allowed: a number > 0 and <= 86400" in err


def test_a_collective_chooses_too(capsys: pytest.CaptureFixture) -> None:
    def run(*args: str) -> dict:
        code, out, _ = run_cli(capsys, "collective", "--topology", "star8", "--size", "1MiB", "--json", *args)
        assert code == 0
        return json.loads(out)

    flow, analytical = run("--op", "alltoall"), run("--op", "alltoall", "--budget-s", "1e-9")
    assert flow["fidelity"] == "flow" and "within" in flow["fidelity_reason"]
    assert analytical["fidelity"] == "analytical" and "over 0.8 x the" in analytical["fidelity_reason"]
    ring = run("--budget-s", "1e-9")  # no two messages ever meet: flow level in closed form, whatever the budget
    assert ring["fidelity"] == "flow" and ring["fidelity_reason"] == ORDERED_REASON
    assert run("--fidelity", "analytical")["time_s"] == pytest.approx(ring["time_s"], rel=1e-9)  # contention-free


def test_a_collective_keeps_its_tolerance_when_auto_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lone collective's network is built at its tolerance: ``auto`` estimates at that one, never the coarse."""
    from simulator.run import collective

    asked = []
    monkeypatch.setattr(collective, "choose", lambda *args, **kwargs: asked.append(kwargs) or choose(*args, **kwargs))
    report, _ = collective.simulate_collective("alltoall", "direct", 2**20, Fabric(load_topology("star8")), "auto")
    assert asked[0]["rate_tolerance"] == report.rate_tolerance == 1e-3
    assert "rate tolerance" not in report.fidelity_reason


def test_sweep_rows_say_the_fidelity_each_point_ran_at() -> None:
    from simulator.run.sweep import sweep

    rows = sweep({"base": {"workload": "dlrm-small", "workers": 4},
                  "grid": {"strategy": ["ps", "des"], "budget_s": [60, 1e-9]}}, jobs=1)
    assert list(rows.fidelity) == ["flow", "analytical", "flow", "analytical"]
    assert all(reason.startswith("auto: ") for reason in rows.fidelity_reason)
