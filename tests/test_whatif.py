"""Faults and heterogeneity (issue 8): link faults, stragglers, mixed devices, PS staleness.

Each expected effect is computed independently of the simulator: from the link rates, or from the
unperturbed run's own numbers.
"""

import json

import numpy as np
import pytest
from conftest import run_flow, star_graph

from simulator.cli import main
from simulator.compute.roofline import load_device
from simulator.core.stragglers import parse_ranks, slowdown_factors
from simulator.errors import SpecError
from simulator.network.fabric import Fabric
from simulator.network.schedule import Pattern, Schedule
from simulator.run.collective import simulate_collective
from simulator.run.training import make_cluster, simulate_step
from simulator.strategies import StrategyOptions
from simulator.strategies.ps import PSOptions
from topologies import load_topology
from topologies.faults import apply_faults, parse_fault
from workloads import load_workload

B = 100e9 / 8  # 100 Gb/s in bytes/s
LAT = 1e-6


# ----- link faults ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fidelity", ["flow", "analytical"])
@pytest.mark.parametrize("n", [4, 8])
def test_one_link_at_half_speed_doubles_a_ring_allreduces_bandwidth_term(fidelity: str, n: int) -> None:
    size = 64e6
    healthy = simulate_collective("allreduce", "ring", size, Fabric(star_graph(n)), fidelity)[0].time_s
    half = Fabric(apply_faults(star_graph(n), ["h0-sw=0.5"]))
    degraded = simulate_collective("allreduce", "ring", size, half, fidelity)[0].time_s
    bandwidth_term = 2 * (n - 1) / n * size / B
    latency_term = 2 * (n - 1) * 2 * LAT
    assert healthy == pytest.approx(latency_term + bandwidth_term, rel=1e-9)
    assert degraded == pytest.approx(latency_term + 2 * bandwidth_term, rel=1e-9)


def test_a_one_way_fault_slows_only_that_direction() -> None:
    graph = apply_faults(star_graph(3), ["h0>sw=0.25"])
    fabric = Fabric(graph)
    assert graph.is_directed() and graph.edges["h0", "sw"]["link_gbps"] == 25
    assert graph.edges["sw", "h0"]["link_gbps"] == 100
    size = 1e6
    for src, dst, rate in [(0, 1, B / 4), (1, 0, B)]:
        schedule = Schedule(3)
        schedule.add(Pattern.of(3, [src], [dst], [size]))
        result, _ = run_flow(fabric, schedule)
        assert result.time_s == pytest.approx(2 * LAT + size / rate, rel=1e-12)


def test_a_failed_uplink_reroutes_over_the_other_spine() -> None:
    """Two flows leaf0 -> leaf1 on a 2-spine leaf-spine: with leaf0-spine0 failed both cross spine1 and
    share its 100 Gb/s uplink (each at B/2); no byte touches the failed cable."""
    topo = "leafspine:leaves=2,hosts_per_leaf=2,spines=2,host_gbps=100,uplink_gbps=100,latency_us=1"
    fabric = Fabric(apply_faults(load_topology(topo), ["leaf0-spine0=fail"]))
    size = 8e6
    schedule = Schedule(4)
    schedule.add(Pattern.of(4, [0, 1], [2, 3], [size, size]))
    result, network = run_flow(fabric, schedule)
    assert result.time_s == pytest.approx(4 * LAT + size / (B / 2), rel=1e-9)
    names = fabric.node_names
    carried = {(names[s], names[d]): b for s, d, b in zip(fabric.link_src, fabric.link_dst, network.link_bytes(),
                                                          strict=True)}
    assert ("leaf0", "spine0") not in carried and carried[("leaf0", "spine1")] == pytest.approx(2 * size)


def test_a_failed_cable_with_a_longer_detour_is_taken() -> None:
    """On a 4-host ring topology, failing r0-r1 sends h0 -> h1 the long way round (3 ring links)."""
    fabric = Fabric(apply_faults(load_topology("ring:hosts=4,latency_us=1"), ["r0-r1=0"]))
    route = fabric.route_ids([0], [1])[0]
    assert fabric.route_latency_s[route] == pytest.approx(5 * LAT)  # host link, 3 ring links, host link


def test_fault_patterns_and_products() -> None:
    graph = apply_faults(load_topology("leafspine:leaves=2,hosts_per_leaf=2,spines=2,uplink_gbps=200"),
                         ["leaf*-spine1=0.5", "leaf0-spine1=0.5"])
    assert graph.edges["leaf0", "spine1"]["link_gbps"] == 50
    assert graph.edges["leaf1", "spine1"]["link_gbps"] == 100
    assert graph.edges["leaf0", "spine0"]["link_gbps"] == 200
    assert graph.graph["faults"] == ["leaf*-spine1=0.5", "leaf0-spine1=0.5"]
    dgx = apply_faults(load_topology("dgx:nodes=2"), ["n0/gpu0-n0/nvswitch=0.5"])  # names with '/' and '-'
    assert dgx.edges["n0/gpu0", "n0/nvswitch"]["link_gbps"] == 1800


@pytest.mark.parametrize(("fault", "says"), [
    ("h0-sw=0", "leaves no path"), ("h9-sw=0.5", "matches no link"), ("h0-sw=1.5", "factor must be"),
    ("h0-sw=nan", "factor must be"), ("h0sw", "expected SRC-DST=FACTOR"), ("h0-sw=-1", "factor must be")])
def test_bad_faults_are_one_clear_error(fault: str, says: str) -> None:
    with pytest.raises(SpecError, match=says) as info:
        apply_faults(star_graph(3), [fault])
    assert info.value.field == "fault"


def test_parse_fault() -> None:
    assert parse_fault(" a-b = fail ") == parse_fault("a-b=0").__class__("a", "b", 0.0, False, "a-b = fail")
    assert parse_fault("a>b=0.3").one_way


# ----- stragglers and mixed devices --------------------------------------------------------------------
def _cluster(strategy: str, hosts: int = 8, device: str = "h100"):
    fabric = Fabric(load_topology(f"star:hosts={hosts},link_gbps=100"))
    return make_cluster(fabric, strategy, load_device(device), load_device("cpu-server"))


def _ps_options(mode: str) -> StrategyOptions:
    options = StrategyOptions.default()
    options.ps = PSOptions(mode=mode)
    return options


def test_slowdown_factors() -> None:
    assert parse_ranks("0-2,5", 8).tolist() == [0, 1, 2, 5]
    factors = slowdown_factors(["2=3", "0-1=2", "2=2"], 4, 2)
    assert factors[:, 0].tolist() == [2, 2, 6, 1] and factors[:, 1].tolist() == [2, 2, 6, 1]
    draws = slowdown_factors(["bernoulli:p=0.25,factor=4,seed=3"], 400, 50)
    assert set(np.unique(draws)) == {1.0, 4.0} and abs((draws == 4).mean() - 0.25) < 0.02
    again = slowdown_factors(["bernoulli:p=0.25,factor=4,seed=3"], 400, 50)
    assert np.array_equal(draws, again)
    logn = slowdown_factors(["lognormal:sigma=0.3,seed=1"], 1000, 20)
    assert abs(np.median(logn) - 1) < 0.03 and abs(np.log(logn).std() - 0.3) < 0.01


@pytest.mark.parametrize("strategy", ["des", "dp"])
def test_a_straggler_delays_a_synchronous_step_by_its_extra_compute(strategy: str) -> None:
    """One rank at 3x compute: synchronous strategies wait for it. On the slow rank the extra time is
    2 x its own compute (its ops are serialized on its compute stream); the step grows by at least the
    extra time of the compute that precedes its first collective, and by at most the whole extra."""
    workload = load_workload("dlrm-small")
    base = simulate_step(workload, _cluster(strategy), strategy, "flow")
    slow = simulate_step(workload, _cluster(strategy), strategy, "flow", stragglers=["3=3"])
    trace = base.trace
    mine = trace[(trace["rank"] == 3) & (trace["stream"] == "compute")]
    compute_s = float((mine["end_s"] - mine["start_s"]).sum())
    slow_trace = slow.trace
    slow_mine = slow_trace[(slow_trace["rank"] == 3) & (slow_trace["stream"] == "compute")]
    assert float((slow_mine["end_s"] - slow_mine["start_s"]).sum()) == pytest.approx(3 * compute_s, rel=1e-9)
    other = slow_trace[(slow_trace["rank"] == 0) & (slow_trace["stream"] == "compute")]
    assert float((other["end_s"] - other["start_s"]).sum()) == pytest.approx(
        float(trace[(trace["rank"] == 0) & (trace["stream"] == "compute")].eval("end_s - start_s").sum()), rel=1e-12)
    extra = slow.summary["step_time_s"] - base.summary["step_time_s"]
    assert 0 < extra <= 2 * compute_s * (1 + 1e-9)
    assert slow.summary["critical_worker"] == 3


def test_async_ps_keeps_fast_workers_at_their_pace_while_sync_waits() -> None:
    workload = load_workload("dlrm-small")
    steps = 6
    runs = {(mode, slow): simulate_step(workload, _cluster("ps"), "ps", "flow", steps, _ps_options(mode),
                                        stragglers=["3=3"] if slow else ())
            for mode in ("sync", "async") for slow in (False, True)}
    sync, sync_slow = runs[("sync", False)].summary, runs[("sync", True)].summary
    asp, asp_slow = runs[("async", False)].summary, runs[("async", True)].summary
    # BSP: every worker waits for the straggler every step.
    assert sync_slow["worker_step_time_s"]["min"] == pytest.approx(sync_slow["worker_step_time_s"]["max"], rel=0.02)
    assert sync_slow["worker_step_time_s"]["min"] > 1.5 * sync["worker_step_time_s"]["min"]
    # ASP: the seven others keep (nearly) their healthy pace; only the straggler is slow.
    assert asp_slow["worker_step_time_s"]["min"] < 1.15 * asp["worker_step_time_s"]["min"]
    assert asp_slow["worker_samples_per_s"] > 1.5 * sync_slow["worker_samples_per_s"]
    # Staleness: BSP none; ASP grows with the straggler (others' updates land between its read and write).
    assert sync["staleness_max"] == sync_slow["staleness_max"] == 0
    assert asp_slow["staleness_max"] > asp["staleness_max"] >= 1
    assert asp_slow["staleness_mean"] > asp["staleness_mean"]


def test_staleness_counts_updates_between_read_and_apply() -> None:
    """Staleness from the trace, recomputed by hand: for each (worker, step), the updates (of any worker
    or step) that end after the worker's lookup ended and before its own update ended."""
    workload = load_workload("dlrm-small")
    report = simulate_step(workload, _cluster("ps", 4), "ps", "flow", 4, _ps_options("async"), stragglers=["1=2"])
    trace = report.trace
    ends = trace.groupby(["op", "stream", "step"], observed=True)["end_s"].max().reset_index()
    reads = ends[ends["op"] == "server.lookup"].set_index(["stream", "step"])["end_s"]
    applies = ends[ends["op"] == "server.update"].set_index(["stream", "step"])["end_s"]
    tau = [int(((applies > reads[key]) & (applies < applies[key])).sum()) for key in applies.index]
    assert report.summary["staleness_max"] == max(tau)
    assert report.summary["staleness_mean"] == pytest.approx(np.mean(tau))


@pytest.mark.parametrize("bound", [0, 1, 2])
def test_ssp_bounds_the_clock_gap_not_the_updates_in_between(bound: int) -> None:
    """SSP with bound s and a 4x straggler on 8 workers (colocated servers), 8 steps. Recounted from the
    trace: a step-k read (its lookup's end) runs at most s steps ahead of the fewest steps any worker has
    applied (its updates' ends), and the straggler makes the fast workers use the whole bound. The updates
    by other workers between a read and its apply exceed s, but stay within (n - 1)(2s + 1). ASP has no
    bound: its gap grows past 2."""
    workload = load_workload("dlrm-small")
    options = StrategyOptions.default()
    options.ps = PSOptions(mode="ssp", staleness=bound)
    report = simulate_step(workload, _cluster("ps"), "ps", "flow", 8, options, stragglers=["3=4"])
    trace = report.trace
    ends = trace.groupby(["op", "stream", "step"], observed=True)["end_s"].max()
    reads, applies = ends["server.lookup"], ends["server.update"]
    applied_by = {w: np.sort(applies[w].to_numpy()) for w in applies.index.get_level_values("stream").unique()}
    gaps = [k - min(int(np.searchsorted(t, end, side="right")) for t in applied_by.values())
            for (_, k), end in reads.items()]
    assert report.summary["clock_gap_max"] == max(gaps) == bound
    assert bound < report.summary["staleness_max"] <= 7 * (2 * bound + 1)
    asynchronous = simulate_step(workload, _cluster("ps"), "ps", "flow", 8, _ps_options("async"),
                                 stragglers=["3=4"]).summary
    assert asynchronous["clock_gap_max"] > 2
    assert simulate_step(workload, _cluster("ps"), "ps", "flow", 4, _ps_options("sync")).summary[
        "clock_gap_max"] == 0


def test_mixed_devices_take_each_devices_compute_times() -> None:
    """Ranks 0-3 on V100, 4-7 on H100: each rank's compute equals that of an all-V100 or all-H100 run."""
    workload = load_workload("dlrm-small")
    mixed = simulate_step(workload, _cluster("des"), "des", "flow", rank_devices=["0-3=v100"])
    pure = {d: simulate_step(workload, _cluster("des", device=d), "des", "flow") for d in ("v100", "h100")}

    def compute_s(report, rank: int) -> float:
        rows = report.trace[(report.trace["rank"] == rank) & (report.trace["stream"] == "compute")]
        return float((rows["end_s"] - rows["start_s"]).sum())

    for rank, device in [(0, "v100"), (3, "v100"), (4, "h100"), (7, "h100")]:
        assert compute_s(mixed, rank) == pytest.approx(compute_s(pure[device], rank), rel=1e-12)
    assert compute_s(pure["v100"], 0) > 1.1 * compute_s(pure["h100"], 0)
    assert mixed.summary["memory"]["worker"]["device"] == "v100"  # the smaller memory is the one that must fit
    assert pure["h100"].summary["step_time_s"] < mixed.summary["step_time_s"] <= pure["v100"].summary["step_time_s"]


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--straggler", "99=2", "straggler"), ("--straggler", "3=0", "factor must be"),
    ("--straggler", "bernoulli:p=2,factor=3", "p must be"), ("--straggler", "weibull:k=1", "straggler"),
    ("--rank-device", "0-3=tpu9", "device"), ("--rank-device", "0-3", "RANKS=DEVICE"),
    ("--fault", "leaf0-spine0=2", "factor"), ("--fault", "nosuch-x=0.5", "matches no link")])
def test_cli_rejects_bad_whatif_options(option: str, value: str, says: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--workload", "dlrm-small", "--fidelity", "analytical", option, value])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and says in err


def test_cli_run_reports_the_whatif_inputs(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--workload", "dlrm-small", "--strategy", "des", "--fault", "leaf0-spine0=0.5",
              "--straggler", "3=2", "--rank-device", "0-3=a100", "--json"])
    assert exit_info.value.code == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["faults"], summary["stragglers"], summary["rank_devices"]) == ("leaf0-spine0=0.5", "3=2",
                                                                                   "0-3=a100")
    assert summary["critical_worker"] == 3 and summary["staleness_max"] == 0


@pytest.mark.parametrize("closed_form", [False, True])
def test_sweeps_vary_faults_and_stragglers(closed_form: bool, tmp_path) -> None:
    from simulator.run.sweep import sweep

    spec = {"base": {"workload": "dlrm-small", "strategy": "des", "fidelity": "analytical"}, "closed_form": closed_form,
            "grid": {"faults": ["", "leaf0-spine*=0.25"], "stragglers": ["", "3=2"]}}
    rows = sweep(spec, tmp_path / "r.parquet", jobs=1).set_index(["faults", "stragglers"])["step_time_s"]
    assert rows[("", "")] < rows[("leaf0-spine*=0.25", "")] and rows[("", "")] < rows[("", "3=2")]
    expected = {}
    for faults, stragglers in rows.index:
        fabric = Fabric(apply_faults(load_topology("leafspine16"), [faults] if faults else []))
        cluster = make_cluster(fabric, "des", load_device("h100"), load_device("cpu-server"))
        expected[(faults, stragglers)] = simulate_step(load_workload("dlrm-small"), cluster, "des", "analytical",
                                                       stragglers=[stragglers] if stragglers else ()
                                                       ).summary["step_time_s"]
    assert rows.to_dict() == pytest.approx(expected, rel=1e-9)


def test_cli_compare_prints_each_workers_pace_and_staleness(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--workload", "dlrm-small", "--fidelity", "analytical", "--ps-mode", "async", "--steps",
              "3", "--straggler", "3=3"])
    out = " ".join(capsys.readouterr().out.split())
    assert exit_info.value.code == 0 and "what if: stragglers 3=3" in out
    assert "ps: each worker's own step" in out and "des: each worker's own step" in out and "staleness mean" in out


def test_a_random_fraction_of_matching_cables_fails_the_same_for_the_same_seed() -> None:
    graph = load_topology("fattree:k=8")
    uplinks = [e for e in graph.edges() if "edge" in e[0] + e[1] and "agg" in e[0] + e[1]]

    def failed(fault: str) -> set:
        return {tuple(sorted(e)) for e in set(graph.edges()) - set(apply_faults(graph, [fault]).edges())}

    one, again, other = (failed(f"*edge*-*agg*=fail,fraction=0.1,seed={s}") for s in (1, 1, 2))
    assert len(one) == round(0.1 * len(uplinks)) == 13 and one == again and one != other
    assert one <= {tuple(sorted(e)) for e in uplinks}
    halved = apply_faults(graph, ["*edge*-*agg*=0.5,fraction=0.5,seed=4"])
    assert sum(d["link_gbps"] == 50 for *_, d in halved.edges(data=True)) == 64
    directed = apply_faults(graph, ["*edge*>*agg*=0.5,fraction=0.25,seed=4"])  # one direction of 32 cables
    assert sum(d["link_gbps"] == 50 for *_, d in directed.edges(data=True)) == 32
    with pytest.raises(SpecError, match="fraction must be"):
        apply_faults(graph, ["*edge*-*agg*=0,fraction=1.5"])


def test_random_uplink_failures_in_a_sweep_give_a_distribution(tmp_path) -> None:
    """Failing 25% of a 2-spine leaf-spine's uplinks at random: seeds that fail both of a leaf's uplinks cut
    it off (an error row), the others slow the PS step or not; the healthy run is never slower."""
    from simulator.run.sweep import sweep

    topology = "leafspine:leaves=4,hosts_per_leaf=4,spines=2,host_gbps=100,uplink_gbps=100,latency_us=1"
    faults = [""] + [f"leaf*-spine*=fail,fraction=0.25,seed={s}" for s in range(16)]
    rows = sweep({"base": {"workload": "dlrm-small", "strategy": "ps", "fidelity": "flow", "topology": topology},
                  "grid": {"faults": faults}}, tmp_path / "r.csv", jobs=1).set_index("faults")
    healthy = rows.loc["", "step_time_s"]
    ran = rows[rows.error.fillna("") == ""]
    assert len(ran) >= 3 and (ran.step_time_s >= healthy * (1 - 1e-9)).all() and (ran.step_time_s > healthy).any()
    cut = rows[rows.error.fillna("") != ""]
    assert len(cut) >= 1 and all("leaves no path" in e for e in cut.error)


def test_ps_server_threads_serve_requests_first_come_first_served() -> None:
    """Async PS with one thread per server: a server never runs two requests at once (its lookups and
    updates for all workers form one queue); with as many threads as workers it equals unlimited."""
    workload = load_workload("dlrm-small")

    def run(threads: int | None):
        options = StrategyOptions.default()
        options.ps = PSOptions(mode="async", server_threads=threads)
        return simulate_step(workload, _cluster("ps", 4), "ps", "flow", 3, options)

    unlimited, single, enough = run(None), run(1), run(4)
    assert enough.summary["step_time_s"] == pytest.approx(unlimited.summary["step_time_s"], rel=1e-12)
    assert single.summary["step_time_s"] > unlimited.summary["step_time_s"]
    for report, overlapping in [(single, False), (unlimited, True)]:
        trace = report.trace
        served = trace[trace["stream"].astype(str).str.startswith("server")]
        overlaps = []
        for _, ops in served.groupby("rank"):
            ops = ops.sort_values("start_s")
            overlaps.append(bool((ops.start_s.to_numpy()[1:] < ops.end_s.cummax().to_numpy()[:-1] - 1e-15).any()))
        assert any(overlaps) == overlapping
    assert single.summary["staleness_max"] >= 1  # the pool's requests still count per worker
