"""Several jobs on one fabric (simulator.run.jobs): engines sharing a network, placement, interference against
closed forms at flow and analytical fidelity, auto's choice, one-line spec errors, and ``dessim jobs``."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from simulator.cli import main
from simulator.compute.roofline import load_device
from simulator.core.engine import Engine
from simulator.core.stepgraph import StepGraph
from simulator.errors import SpecError
from simulator.network import make_network
from simulator.network.fabric import Fabric
from simulator.network.schedule import Pattern, Schedule
from simulator.run.fidelity import FidelityChoice
from simulator.run.jobs import hosts_text, link_shares, load_jobs, parse_hosts, place, simulate_jobs
from simulator.run.training import make_cluster, simulate_step
from simulator.strategies.base import Cluster
from topologies import load_topology
from workloads import load_workload

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "jobs.yaml"
GBPS, L = 100.0, 1e-6
B = GBPS * 1e9 / 8  # bytes/s of every link below
# Two leaves joined by one spine: a dumbbell whose leaf<->spine links are the only way across.
DUMBBELL = "leafspine:leaves=2,hosts_per_leaf={h},spines=1,host_gbps=100,uplink_gbps=100,latency_us=1"
TABLE_COLUMNS = ["name", "workload", "strategy", "workers", "servers", "hosts", "start_s", "steps", "fidelity",
                 "step_time_alone_s", "step_time_shared_s", "slowdown", "interference_s", "end_shared_s",
                 "exposed_comm_alone_s", "exposed_comm_shared_s", "samples_per_s_alone", "samples_per_s_shared",
                 "bytes_on_wire", "bytes_per_worker_max", "fits_memory"]


def allreduce_bytes(workload: str) -> float:
    """What ``dp`` all-reduces per step: every table gradient and the dense gradients."""
    w = load_workload(workload)
    return float(w.sparse_bytes + w.dense_params * w.dtype_bytes)


def job(name: str, **fields: object) -> dict:
    return {"name": name, "workload": "dlrm-small", "strategy": "dp", **fields}


# ----- the engine: start / all_done / finish ----------------------------------------------------------------
def send(n_hosts: int, src: int, dst: int, size: float) -> StepGraph:
    graph = StepGraph(n_hosts, np.array([src, dst]))
    schedule = Schedule(2)
    schedule.add(Pattern.of(2, [0], [1], size))
    graph.comm("send", "sparse.push", np.array([src, dst]), schedule, kind="p2p")
    return graph


def test_engines_run_concurrently_on_one_network_each_timed_from_its_start() -> None:
    """0 -> 2 and 1 -> 2 share the switch's link to h2 (half of it each); 0 -> 3, started at 1 s, runs alone."""
    size = 1e6
    network = make_network(Fabric(load_topology("star:hosts=4,link_gbps=100,latency_us=1")), "flow")
    env = network.env
    a, b, c = (Engine(send(4, s, d, size), network) for s, d in ((0, 2), (1, 2), (0, 3)))
    a.start()
    b.start()

    def later():
        yield env.timeout(1.0)
        c.start()

    env.process(later())
    env.run(until=env.all_of([a.all_done, b.all_done, c.all_done]))
    shared, alone = 2 * L + 2 * size / B, 2 * L + size / B
    assert a.finish().makespan_s == pytest.approx(shared, rel=1e-12)
    assert b.finish().makespan_s == pytest.approx(shared, rel=1e-12)
    late = c.finish()
    assert late.makespan_s == pytest.approx(alone, rel=1e-12)
    assert late.rows["start_s"].min() == 1.0  # engine rows keep the network's clock
    single = Engine(send(4, 0, 2, size), make_network(network.fabric, "flow")).run()
    assert single.makespan_s == pytest.approx(alone, rel=1e-12)


# ----- placement and host ranges ---------------------------------------------------------------------------
def test_hosts_ranges_and_placement() -> None:
    assert parse_hosts("0-7:2") == [0, 2, 4, 6]
    assert parse_hosts("8-9,0-1") == [0, 1, 8, 9]
    assert parse_hosts([5, 3]) == [3, 5] and parse_hosts(4) == [4]
    for hosts in ([0, 1, 2, 3], [1, 3, 5], [0, 1, 4, 5, 9], [7]):
        assert parse_hosts(hosts_text(np.array(hosts))) == hosts
    star16 = "star:hosts=16"
    spec = load_jobs({"topology": star16, "jobs": [job("a", hosts="4-7"), job("b", workers=4), job("c")]})
    assert [h.tolist() for h in place(spec, 16)] == [[4, 5, 6, 7], [0, 1, 2, 3], list(range(8, 16))]
    # the lowest block of consecutive free hosts; the lowest free hosts when no block is long enough
    spec = load_jobs({"topology": star16, "jobs": [job("a", hosts=[1, 2]), job("b", workers=2)]})
    assert place(spec, 16)[1].tolist() == [3, 4]
    spec = load_jobs({"topology": star16, "jobs": [job("a", hosts="0-15:2"), job("b", workers=3)]})
    assert place(spec, 16)[1].tolist() == [1, 3, 5]


# ----- interference against closed forms -------------------------------------------------------------------
def test_jobs_under_separate_leaves_share_no_link_and_do_not_interfere() -> None:
    """Hosts 0-3 on leaf0 and 4-7 on leaf1: a job's routes stay under its leaf, so no link carries both."""
    spec = {"topology": "leafspine:leaves=2,hosts_per_leaf=4,spines=1,host_gbps=100,uplink_gbps=25,latency_us=1",
            "jobs": [{"name": "rec", "workload": "dlrm-small", "strategy": "des", "hosts": "0-3"},
                     {"name": "ctr", "workload": "dlrm-small", "strategy": "tw", "hosts": "4-7"}]}
    result = simulate_jobs(spec)
    used = {name: set(np.nonzero(r.result.link_bytes)[0]) for name, r in result.alone.items()}
    assert used["rec"] and used["ctr"] and not used["rec"] & used["ctr"]
    both = result.shared["rec"].result.link_bytes  # the shared network carried both jobs' bytes
    np.testing.assert_allclose(both, result.alone["rec"].result.link_bytes + result.alone["ctr"].result.link_bytes)
    table = result.table.set_index("name")
    np.testing.assert_allclose(table.slowdown, 1.0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(table.step_time_shared_s, table.step_time_alone_s, rtol=1e-9)
    for name in ("rec", "ctr"):
        assert result.shared[name].summary["bytes_on_wire"] == result.alone[name].summary["bytes_on_wire"] > 0


def test_two_jobs_across_one_bottleneck_each_get_half_of_it() -> None:
    """Job a on h0 | h2 and job b on h1 | h3 of a dumbbell: every flow crosses leaf <-> spine, which the two
    jobs split equally, so each all-reduce's bandwidth term S / B doubles. A 2-rank all-reduce (any
    algorithm) sends S bytes per rank, in 2 steps of a 4-cable route (4 us each): dp's two all-reduces cost
    S / B + 16 us alone, 2 S / B + 16 us shared. Tolerance 1e-9 (relative)."""
    s = allreduce_bytes("dlrm-small")
    result = simulate_jobs({"topology": DUMBBELL.format(h=2), "jobs": [job("a", hosts=[0, 2]), job("b", hosts=[1, 3])]})
    table = result.table.set_index("name")
    for name in ("a", "b"):
        assert table.exposed_comm_alone_s[name] == pytest.approx(s / B + 16 * L, rel=1e-9)
        assert table.exposed_comm_shared_s[name] == pytest.approx(2 * s / B + 16 * L, rel=1e-9)
        assert table.interference_s[name] == pytest.approx(s / B, rel=1e-9)
        assert table.step_time_shared_s[name] == pytest.approx(table.step_time_alone_s[name] + s / B, rel=1e-9)


# ----- analytical fidelity: each link's capacity shared among the jobs crossing it ---------------------------
def test_link_shares_are_max_min_between_jobs_and_exact_for_one_flow_each() -> None:
    """1 MB and 0.1 MB across one link: equal shares until the small one is done (0.2 MB drained), then the big
    one alone, so they drain in 1.1 MB / B and 0.2 MB / B: shares 1 / 1.1 and 1 / 2. Flow level gives exactly
    that to two messages started together (h0 -> h2 and h1 -> h2 on a star share the link into h2)."""
    np.testing.assert_allclose(link_shares(np.array([[1e6, 0.0, 5.0], [1e5, 3.0, 5.0]])),
                               [[1 / 1.1, 1.0, 0.5], [0.5, 1.0, 0.5]], rtol=1e-15)
    star = Fabric(load_topology("star:hosts=4,link_gbps=100,latency_us=1"))
    sends = [(0, 1e6), (1, 1e5)]
    network = make_network(star, "flow")
    engines = [Engine(send(4, src, 2, size), network) for src, size in sends]
    for engine in engines:
        engine.start()
    network.env.run(until=network.env.all_of([engine.all_done for engine in engines]))
    flow_s = [engine.finish().makespan_s for engine in engines]
    assert flow_s == pytest.approx([2 * L + 1.1e6 / B, 2 * L + 2e5 / B], rel=1e-12)
    alone = [Engine(send(4, src, 2, size), make_network(star, "analytical")).run().link_bytes for src, size in sends]
    for (src, size), share, expected_s in zip(sends, link_shares(np.array(alone)), flow_s, strict=True):
        shared = make_network(star.with_capacity(star.capacity_Bps * share), "analytical")
        assert Engine(send(4, src, 2, size), shared).run().makespan_s == pytest.approx(expected_s, rel=1e-12)


def test_analytical_jobs_sharing_no_link_keep_their_step_alone_exactly() -> None:
    """The leaf-separated pair above at analytical fidelity: every share is 1, and shared == alone exactly,
    each the job's own analytical step (simulate_step)."""
    topology = "leafspine:leaves=2,hosts_per_leaf=4,spines=1,host_gbps=100,uplink_gbps=25,latency_us=1"
    result = simulate_jobs({"topology": topology, "fidelity": "analytical",
                            "jobs": [{"name": "rec", "workload": "dlrm-small", "strategy": "des", "hosts": "0-3"},
                                     {"name": "ctr", "workload": "dlrm-small", "strategy": "tw", "hosts": "4-7"}]})
    assert result.fidelity == "analytical" and result.fidelity_reason == "requested"
    per_step = np.array([result.alone[name].result.link_bytes for name in ("rec", "ctr")])
    assert (per_step > 0).any(axis=1).all() and (link_shares(per_step) == 1).all()
    table = result.table.set_index("name")
    assert (table.step_time_shared_s == table.step_time_alone_s).all() and (table.slowdown == 1).all()
    fabric = Fabric(load_topology(topology))
    for name, strategy, hosts in (("rec", "des", np.arange(4)), ("ctr", "tw", np.arange(4, 8))):
        cluster = Cluster(fabric, hosts, load_device("h100"), np.zeros(0, dtype=np.int64), load_device("cpu-server"))
        expected = simulate_step(load_workload("dlrm-small"), cluster, strategy, "analytical").summary
        assert table.step_time_alone_s[name] == pytest.approx(expected["step_time_s"], rel=1e-12)


def test_two_jobs_across_one_bottleneck_at_analytical_fidelity_get_half_of_it_as_at_flow_level() -> None:
    """The dumbbell pair of dp jobs: each job alone has every link to itself; shared, the leaf <-> spine links
    carry both jobs' equal bytes (share 1/2), host links one job's (share 1). The all-reduce's bandwidth term
    is the core's drain time, S / B alone and 2 S / B shared, so the analytical step's exposed communication is
    S / B + 16 us alone and 2 S / B + 16 us shared, as at flow level, which agrees to 1e-9 (relative)."""
    s = allreduce_bytes("dlrm-small")
    spec = {"topology": DUMBBELL.format(h=2), "jobs": [job("a", hosts=[0, 2]), job("b", hosts=[1, 3])]}
    analytical = simulate_jobs({**spec, "fidelity": "analytical"})
    flow = simulate_jobs({**spec, "fidelity": "flow"}).table.set_index("name")
    fabric = analytical.shared["a"].network.fabric  # the fabric as job a's share of it
    core = np.array(["spine" in fabric.node_names[n] for n in fabric.link_src]) | np.array(
        ["spine" in fabric.node_names[n] for n in fabric.link_dst])
    np.testing.assert_allclose(fabric.capacity_Bps, np.where(core, B / 2, B), rtol=1e-15)
    table = analytical.table.set_index("name")
    assert (table.fidelity == "analytical").all() and (flow.fidelity == "flow").all()
    for name in ("a", "b"):
        assert table.exposed_comm_alone_s[name] == pytest.approx(s / B + 16 * L, rel=1e-9)
        assert table.exposed_comm_shared_s[name] == pytest.approx(2 * s / B + 16 * L, rel=1e-9)
        assert table.interference_s[name] == pytest.approx(s / B, rel=1e-9)
        for column in ("step_time_alone_s", "step_time_shared_s"):
            assert table[column][name] == pytest.approx(flow[column][name], rel=1e-9)


def test_auto_runs_flow_level_within_its_budget_and_analytical_past_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto's estimate is twice the jobs' flow-level estimates summed (every job alone, then all together):
    within the default 60 s budget it runs flow level; with a 1 us budget analytical, saying why; and a flow
    run that passes its budget stops and runs analytical instead."""
    from simulator.run import jobs as jobs_module

    spec = {"topology": DUMBBELL.format(h=2), "jobs": [job("a", hosts=[0, 2]), job("b", hosts=[1, 3])]}
    within = simulate_jobs(spec)
    estimate = float(within.fidelity_reason.split(" estimated at ")[1].split(" s,")[0])
    assert within.fidelity == "flow" and within.fidelity_reason.endswith("within the 60 s budget")
    over = simulate_jobs({**spec, "budget_s": 1e-6})
    assert over.fidelity == "analytical"
    assert over.fidelity_reason == f"auto: flow level estimated at {estimate:.3g} s, over 0.8 x the 1e-06 s budget"
    assert over.table.step_time_shared_s.tolist() == simulate_jobs({**spec, "fidelity": "analytical"}
                                                                   ).table.step_time_shared_s.tolist()
    for report in (*over.alone.values(), *over.shared.values()):
        assert report.summary.fidelity == "analytical" and report.summary.fidelity_reason == over.fidelity_reason
    # an estimate that fits a budget the run cannot keep
    monkeypatch.setattr(jobs_module, "choose", lambda *args, **kwargs: FidelityChoice("flow", 1e-9, 1e-6))
    stopped = simulate_jobs({**spec, "budget_s": 1e-6})
    assert stopped.fidelity == "analytical" and stopped.fidelity_reason.startswith("auto: flow level passed the")
    assert (stopped.table.fidelity == "analytical").all()


def test_two_rings_with_half_their_hosts_on_each_side_double_their_bandwidth_time() -> None:
    """4 ranks per job, 2 on each leaf (a: 0,1 | 4,5; b: 2,3 | 6,7): each ring step has one flow of each job
    on each direction of the bottleneck, so the ring's bandwidth time 2 (n - 1) / n x S / B doubles.
    Tolerance 1e-3: the ring's per-step latencies interleave differently at half rate (measured 4.5e-4)."""
    s, n = allreduce_bytes("dlrm-small"), 4
    result = simulate_jobs({"topology": DUMBBELL.format(h=4),
                            "jobs": [job("a", hosts="0-1,4-5"), job("b", hosts="2-3,6-7")]})
    expected = 2 * (n - 1) / n * s / B
    np.testing.assert_allclose(result.table.interference_s, expected, rtol=1e-3)
    assert result.table.interference_s.min() > expected  # latency only adds


def test_a_job_started_after_the_other_ends_is_not_slowed() -> None:
    """The same pair as above, b starting at 1 s (a's step is ~17 ms): no overlap, so no interference; b's
    shared trace and figures are timed from its own start."""
    result = simulate_jobs({"topology": DUMBBELL.format(h=2),
                            "jobs": [job("a", hosts=[0, 2]), job("b", hosts=[1, 3], start_s=1.0)]})
    table = result.table.set_index("name")
    np.testing.assert_allclose(table.slowdown, 1.0, rtol=0, atol=1e-9)
    assert table.end_shared_s["b"] == pytest.approx(1.0 + table.step_time_alone_s["b"], rel=1e-12)
    assert table.exposed_comm_shared_s["b"] == pytest.approx(table.exposed_comm_alone_s["b"], rel=1e-9)
    assert result.shared["b"].trace.start_s.min() == 0.0


@pytest.mark.parametrize(("workload", "strategy"), [("dlrm-small", "ps"), ("dlrm-small", "des"),
                                                    ("xc-1e6", "mp-fc")])
def test_a_job_alone_equals_simulate_step(workload: str, strategy: str) -> None:
    topology = "leafspine:leaves=2,hosts_per_leaf=4,spines=1,host_gbps=100,uplink_gbps=50,latency_us=1"
    result = simulate_jobs({"topology": topology, "jobs": [{"name": "j", "workload": workload,
                                                            "strategy": strategy, "workers": 6}]})
    cluster = make_cluster(Fabric(load_topology(topology)), strategy, load_device("h100"), load_device("cpu-server"),
                           workers=6)
    expected = simulate_step(load_workload(workload), cluster, strategy).summary
    for report in (result.alone["j"], result.shared["j"]):
        assert report.summary["step_time_s"] == pytest.approx(expected["step_time_s"], rel=1e-9)
        assert report.summary["bytes_on_wire"] == expected["bytes_on_wire"]
        assert report.summary["servers"] == expected["servers"]


@pytest.mark.parametrize("topology", ["star:hosts=16", "dgx:nodes=4,gpus_per_node=4,spines=1"])
@pytest.mark.parametrize("strategy", ["ps", "des-a2a", "twrw", "dp"])
def test_a_job_on_hosts_8_to_15_equals_one_on_0_to_7(topology: str, strategy: str) -> None:
    """Strategies take any host indices: the same job on an isomorphic block gives the same step."""
    times = [simulate_jobs({"topology": topology, "rate_tolerance": 0,
                            "jobs": [{"name": "j", "workload": "dlrm-small", "strategy": strategy,
                                      "hosts": hosts}]}).table.step_time_alone_s[0] for hosts in ("0-7", "8-15")]
    assert times[1] == pytest.approx(times[0], rel=1e-9)


# ----- spec errors ---------------------------------------------------------------------------------------------
STAR8 = "star:hosts=8"


@pytest.mark.parametrize(("spec", "needle"), [
    ({"topology": STAR8, "jobs": [job("a", hosts="0-3"), job("b", hosts="3-5")]},
     "jobs[1].hosts: got '3-5'; overlaps job 'a' on hosts 3"),
    ({"topology": STAR8, "jobs": [job("a", gpus=4)]},  # a job's keys, not the file's (topology, fidelity, ...)
     "jobs[0].gpus: got 4; unknown field; allowed: workload, set, strategy, device, server_device, workers, servers,"
     " steps,"),
    ({"topology": STAR8, "jobs": [job("a")], "priority": 1}, "priority"),
    ({"foo": 1}, "foo: got 1; unknown field; allowed: topology, "),  # the unknown key, not the missing ones
    ({"topology": STAR8, "jobs": [job("a", hosts="5-2")]}, "jobs[0].hosts"),
    ({"topology": STAR8, "jobs": [job("a", hosts="0-x")]}, "jobs[0].hosts"),
    ({"topology": STAR8, "jobs": [job("a", hosts=[0, 0])]}, "jobs[0].hosts"),
    ({"topology": STAR8, "jobs": [job("a", hosts="4-11")]}, "jobs[0].hosts: got '4-11'; allowed: hosts 0 to 7"),
    ({"topology": STAR8, "fidelity": "exact", "jobs": [job("a")]}, "fidelity: got 'exact'"),
    ({"topology": STAR8, "budget_s": 0, "jobs": [job("a")]}, "budget_s: got 0"),
    ({"topology": STAR8, "jobs": [job("a", budget_s=5)]}, "jobs[0].budget_s: got 5.0; not a job's key"),
    ({"topology": STAR8, "jobs": [job("a"), job("a")]}, "jobs[1].name: got 'a'; used by jobs[0]"),
    ({"topology": STAR8, "jobs": []}, "jobs: "),
    ({"topology": STAR8, "jobs": [job("a", workers=6), job("b", workers=3)]}, "jobs[1].workers: got 3"),
    ({"topology": STAR8, "jobs": [job("a"), job("b")]}, "jobs[1].hosts"),
    ({"topology": STAR8, "jobs": [job("a", hosts="0-1", workers=2)]}, "jobs[0].workers"),
    ({"topology": STAR8, "jobs": [job("a", servers=2)]}, "jobs[0].servers"),
    ({"topology": STAR8, "jobs": [job("a", strategy="ps", workers=2, servers=3)]}, "jobs[0].servers: got 3"),
    ({"topology": STAR8, "jobs": [job("a", strategy="mp-fc")]}, "jobs[0].strategy"),
    ({"topology": STAR8, "jobs": [job("a", workload="nope")]}, "jobs[0].workload"),
    ({"topology": STAR8, "jobs": [job("a", set=["batch_per_worker=0"])]}, "jobs[0].set.batch_per_worker: got 0"),
    ({"topology": STAR8, "jobs": [job("a", device="tpu")]}, "jobs[0].device"),
    ({"topology": STAR8, "jobs": [job("a", server_device="tpu")]}, "jobs[0].server_device"),
    ({"topology": STAR8, "jobs": [job("a", start_s=-1)]}, "jobs[0].start_s"),
    ({"topology": STAR8, "jobs": [job("a", steps=0)]}, "jobs[0].steps: got 0; allowed: 1 to 1,000"),
    ({"topology": STAR8, "jobs": [job("a", ps_mode="x")]}, "jobs[0].ps.mode: got 'x'; allowed: sync, async, ssp"),
    ({"topology": "star:hosts=x", "jobs": [job("a")]}, "topology"),
])
def test_spec_errors_name_the_field(spec: dict, needle: str) -> None:
    with pytest.raises(SpecError) as error:
        simulate_jobs(spec)
    assert needle in str(error.value)
    assert len(str(error.value).splitlines()) == 1


# ----- the command line --------------------------------------------------------------------------------------
def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_cli_prints_the_table_and_writes_it(capsys, tmp_path) -> None:
    code, printed, _ = cli(capsys, "jobs", str(EXAMPLE))
    assert code == 0
    assert "rec" in printed and "ctr" in printed and "slowdown" in printed and "interference" in printed
    csv = tmp_path / "jobs.csv"
    code, out, _ = cli(capsys, "jobs", str(EXAMPLE), "--json", "--out", str(csv))
    assert code == 0
    doc = json.loads(out)
    table = pd.read_csv(csv)
    for slowdown in table.slowdown:  # the printed table shows the written numbers
        assert f"x{slowdown:.2f}" in printed
    assert list(table.columns) == TABLE_COLUMNS and list(doc["jobs"][0]) == TABLE_COLUMNS
    assert table.name.tolist() == ["rec", "ctr"] and table.hosts.tolist() == ["0-14:2", "1-15:2"]
    np.testing.assert_allclose(table.slowdown, table.step_time_shared_s / table.step_time_alone_s, rtol=1e-9)
    assert (table.slowdown > 1.1).all()  # the example shows interference
    assert doc["jobs"][0]["step_time_shared_s"] == pytest.approx(table.step_time_shared_s[0], rel=1e-12)
    parquet = tmp_path / "jobs.parquet"
    assert cli(capsys, "jobs", str(EXAMPLE), "--out", str(parquet))[0] == 0
    assert list(pd.read_parquet(parquet).columns) == TABLE_COLUMNS


@pytest.mark.parametrize(("doc", "needle"), [
    ({"topology": STAR8, "jobs": [job("a", hosts="0-3"), job("b", hosts="2-5")]}, "jobs[1].hosts"),
    ({"topology": STAR8, "fidelity": "exact", "jobs": [job("a")]}, "fidelity"),
    ({"topology": STAR8, "jobs": [job("a", colour="red")]}, "jobs[0].colour"),
    ("- just\n- a list\n", "must be a mapping"),
    ("topology: [unclosed\n", "invalid YAML"),
])
def test_cli_bad_spec_is_one_line_and_exit_2(capsys, tmp_path, doc: object, needle: str) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    code, _, err = cli(capsys, "jobs", str(path))
    assert code == 2 and needle in err
    assert err.startswith("dessim: error: ") and len(err.strip().splitlines()) == 1


def test_cli_states_the_fidelity_and_takes_fidelity_and_budget_options(capsys, tmp_path) -> None:
    """--fidelity and --budget-s replace the file's keys; the JSON, the table written and the printed header
    say which fidelity ran and why."""
    csv = tmp_path / "jobs.csv"
    code, out, _ = cli(capsys, "jobs", str(EXAMPLE), "--fidelity", "analytical", "--json", "--out", str(csv))
    doc = json.loads(out)
    assert code == 0 and doc["fidelity"] == "analytical" and doc["fidelity_reason"] == "requested"
    assert [row["fidelity"] for row in doc["jobs"]] == ["analytical"] * 2
    assert pd.read_csv(csv).fidelity.tolist() == ["analytical"] * 2
    code, printed, _ = cli(capsys, "jobs", str(EXAMPLE), "--budget-s", "1e-6")
    assert code == 0
    assert "at analytical fidelity (auto: flow level estimated at" in " ".join(printed.split())
    assert "over 0.8 x the 1e-06 s budget)" in " ".join(printed.split())
    code, _, err = cli(capsys, "jobs", str(EXAMPLE), "--fidelity", "fast")
    assert code == 2 and err.startswith("dessim: error: fidelity: got 'fast'") and len(err.strip().splitlines()) == 1


def test_cli_refuses_a_bad_out_suffix_before_running(capsys) -> None:
    code, _, err = cli(capsys, "jobs", str(EXAMPLE), "--out", "jobs.txt")
    assert code == 2 and "out: got 'jobs.txt'" in err


def test_a_straggler_in_one_job_slows_only_that_job_when_no_link_is_shared() -> None:
    """Per-job stragglers and options: on a star (no link shared), job a's straggler changes a's step exactly
    as simulate_step's stragglers do, and b not at all."""
    from simulator.strategies import StrategyOptions
    from simulator.strategies.ps import PSOptions

    spec = {"topology": "star:hosts=8", "jobs": [
        {"name": "a", "workload": "dlrm-small", "strategy": "ps", "ps": {"mode": "async"}, "steps": 3,
         "hosts": "0-3", "stragglers": ["1=3"]},
        {"name": "b", "workload": "dlrm-small", "strategy": "des", "hosts": "4-7"}]}
    result = simulate_jobs(spec)
    fabric = Fabric(load_topology("star:hosts=8"))
    options = StrategyOptions.default()
    options.ps = PSOptions(mode="async")
    alone = simulate_step(load_workload("dlrm-small"), Cluster(fabric, np.arange(4), load_device("h100"),
                                                               np.arange(4), load_device("cpu-server")),
                          "ps", "flow", 3, options, stragglers=["1=3"]).summary
    a = result.shared["a"].summary
    assert a["step_time_s"] == pytest.approx(alone["step_time_s"], rel=1e-9)
    assert a["staleness_mean"] == pytest.approx(alone["staleness_mean"]) and a["staleness_max"] > 0
    assert result.table.set_index("name").loc["b", "slowdown"] == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(SpecError, match=r"jobs\[0\].stragglers.*host 6 is not one of the job's hosts"):
        simulate_jobs({**spec, "jobs": [{**spec["jobs"][0], "stragglers": ["6=2"]}]})


def test_async_ps_pace_is_per_worker_host_when_the_job_is_not_on_hosts_from_0() -> None:
    """Async PS streams are named by worker index; on hosts 8-15 each worker's pace must still be its own."""
    job = {"name": "a", "workload": "dlrm-small", "strategy": "ps", "ps": {"mode": "async"}, "steps": 3,
           "stragglers": ["9=3"]}
    low = simulate_jobs({"topology": "star:hosts=16", "jobs": [{**job, "hosts": "0-7", "stragglers": ["1=3"]}]})
    high = simulate_jobs({"topology": "star:hosts=16", "jobs": [{**job, "hosts": "8-15"}]})
    pace_high, pace_low = (r.alone["a"].summary["worker_step_time_s"] for r in (high, low))
    assert pace_high == pytest.approx(pace_low, rel=1e-9)
    assert pace_high["min"] < 0.9 * pace_high["max"]
