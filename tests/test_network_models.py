"""SimGrid's network models (maxmin, cm02, lv08): each term against its closed form, the weighted solver
against the max-min optimality conditions, and flow against analytical where they must agree."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.cli import main
from simulator.collectives.algorithms import build_schedule
from simulator.errors import SpecError
from simulator.network import make_network
from simulator.network.fabric import Fabric
from simulator.network.maxmin import max_min_rates, weighted_max_min_rates
from simulator.network.models import MODELS, TCP_GAMMA_BYTES, ModelRoutes
from simulator.network.schedule import Pattern, Schedule, Step
from simulator.run.jobs import simulate_jobs
from simulator.run.sweep import sweep
from topologies import star
from workloads import load_workload

GBPS = 1e9 / 8  # bytes/s per Gb/s
LV08, CM02 = MODELS["lv08"], MODELS["cm02"]


def dumbbell(access_us: tuple[float, float] = (1.0, 1.0), core_gbps: float = 100.0, core_us: float = 1.0) -> Fabric:
    """h0, h1 -- s0 == s1 -- h2, h3: access cables 400 Gb/s (h0/h2 and h1/h3 with the given latencies, µs),
    one core cable s0-s1 at ``core_gbps``."""
    g = nx.Graph(hosts=["h0", "h1", "h2", "h3"])
    g.add_nodes_from(["h0", "h1", "h2", "h3"], kind="host")
    g.add_nodes_from(["s0", "s1"], kind="switch")
    for (a, b), us in zip((("h0", "s0"), ("h1", "s0")), access_us, strict=True):
        g.add_edge(a, b, link_gbps=400.0, latency_us=us)
    for (a, b), us in zip((("h2", "s1"), ("h3", "s1")), access_us, strict=True):
        g.add_edge(a, b, link_gbps=400.0, latency_us=us)
    g.add_edge("s0", "s1", link_gbps=core_gbps, latency_us=core_us)
    return Fabric(g)


def run(fabric: Fabric, src: list[int], dst: list[int], size_bytes: float, model: str,
        fidelity: str = "flow") -> np.ndarray:
    """Each rank's end (s) when messages src[i] -> dst[i] of ``size_bytes`` start together."""
    n = fabric.n_hosts
    pattern = Pattern(n, np.array(src), np.array(dst), np.full(len(src), float(size_bytes)))
    network = make_network(fabric, fidelity, model=model, rate_tolerance=0.0)
    done = network.start(Schedule(n, [Step(pattern)]))
    network.env.run(until=done)
    return done.value.rank_end_s


def one_flow_s(latency_s: float, size: float, bottleneck_Bps: float, model=LV08) -> float:
    """Closed form of a lone message: latency x factor + size / (rate factor x min(bottleneck, window cap))."""
    cap = min(bottleneck_Bps, model.tcp_gamma_bytes / (2 * latency_s)) if model.tcp_gamma_bytes else bottleneck_Bps
    return model.latency_factor * latency_s + size / (model.rate_factor * cap)


@pytest.mark.parametrize("size", [1.0, 64e6])
@pytest.mark.parametrize("name", ["maxmin", "cm02", "lv08"])
def test_a_lone_flow_pays_the_latency_factor_the_rate_factor_and_the_window_cap(name: str, size: float) -> None:
    for core_us in (1.0, 1000.0):  # 1 ms: the TCP window caps the flow below the 100 Gb/s cable
        fabric = dumbbell(core_us=core_us)
        latency_s = (1.0 + core_us + 1.0) * 1e-6
        end = run(fabric, [0], [2], size, name)[0]
        assert end == pytest.approx(one_flow_s(latency_s, size, 100 * GBPS, MODELS[name]), rel=1e-12)
    assert MODELS[name].tcp_gamma_bytes in (0, TCP_GAMMA_BYTES)


def test_window_cap_binds_at_long_rtt() -> None:
    """gamma / (2 x 1.002 ms) = 2.09 GB/s < 12.5 GB/s: the closed form above is the cap's, not the cable's."""
    latency_s = 1.002e-3
    assert TCP_GAMMA_BYTES / (2 * latency_s) < 100 * GBPS
    end = run(dumbbell(core_us=1000.0), [0], [2], 64e6, "cm02")[0]
    assert end == pytest.approx(latency_s + 64e6 * 2 * latency_s / TCP_GAMMA_BYTES, rel=1e-12)


def two_flows_s(start: tuple[float, float], rate_alone: float, shared: tuple[float, float], size: float) -> float:
    """Finish of the later of two equal flows: each starts at its own time, alone at ``rate_alone``, then
    both at ``shared`` rates; when one ends the other is alone again. Piecewise closed form."""
    t_b, left_a = start[1], size - rate_alone * (start[1] - start[0])
    assert left_a > 0
    first = min(left_a / shared[0], size / shared[1])
    t1 = t_b + first
    left = (size - shared[1] * first) if left_a / shared[0] < size / shared[1] else (left_a - shared[0] * first)
    return t1 + left / rate_alone


@pytest.mark.parametrize("name", ["cm02", "lv08"])
def test_shares_are_weighted_by_one_over_the_sharing_penalty(name: str) -> None:
    """h0 -> h2 (RTT 3 µs) and h1 -> h3 (RTT 21 µs) share the 100 Gb/s core: shares go as 1 / penalty, penalty =
    route latency (+ 20537 B / bandwidth per route link under lv08)."""
    model = MODELS[name]
    fabric = dumbbell(access_us=(1.0, 10.0))
    lat = np.array([3e-6, 21e-6])
    penalty = lat + model.weight_S_bytes * (2 / (400 * GBPS) + 1 / (100 * GBPS))
    routes = ModelRoutes(fabric, model)
    ids = routes.route_ids(np.array([0, 1]), np.array([2, 3]))
    np.testing.assert_allclose(routes.route_weight[ids], 1 / penalty, rtol=1e-12)
    c = 100 * GBPS
    shared = c * (1 / penalty) / (1 / penalty).sum()
    size = 200e6
    start = tuple(model.latency_factor * lat)
    work = size / model.rate_factor  # capacity a flow consumes: its bytes / rate factor
    expect = two_flows_s(start, c, tuple(shared), work)
    end = run(fabric, [0, 1], [2, 3], size, name)
    assert end.max() == pytest.approx(expect, rel=1e-9)
    maxmin = run(fabric, [0, 1], [2, 3], size, "maxmin")
    assert maxmin.max() == pytest.approx(two_flows_s((3e-6, 21e-6), c, (c / 2, c / 2), size), rel=1e-9)


def test_acks_load_five_percent_on_the_reverse_route() -> None:
    """h0 -> h2 and h2 -> h0 at once: each core direction carries one flow and the other's ACKs, x (1 + 0.05) = C."""
    fabric = dumbbell()
    size, c = 100e6, 100 * GBPS
    end = run(fabric, [0, 2], [2, 0], size, "cm02")
    assert end.max() == pytest.approx(3e-6 + size / (c / 1.05), rel=1e-12)
    assert run(fabric, [0, 2], [2, 0], size, "maxmin").max() == pytest.approx(3e-6 + size / c, rel=1e-12)


def test_link_bytes_count_payload_only() -> None:
    fabric = Fabric(star(hosts=8, link_gbps=100, latency_us=2))
    totals = {}
    for name in MODELS:
        network = make_network(fabric, "flow", model=name)
        done = network.start(build_schedule("alltoall", "direct", 8e6, 8))
        network.env.run(until=done)
        totals[name] = network.link_bytes()
    np.testing.assert_array_equal(totals["cm02"], totals["maxmin"])
    np.testing.assert_array_equal(totals["lv08"], totals["maxmin"])


@pytest.mark.parametrize("name", ["maxmin", "cm02", "lv08"])
def test_flow_equals_analytical_where_flows_do_not_contend(name: str) -> None:
    """A ring on a star: every link carries one flow and one ACK stream in each step, equal RTTs."""
    fabric = Fabric(star(hosts=8, link_gbps=100, latency_us=5))
    times = []
    for fidelity in ("flow", "analytical"):
        network = make_network(fabric, fidelity, model=name)
        done = network.start(build_schedule("allreduce", "ring", 8 * 2**20, 8))
        network.env.run(until=done)
        times.append(done.value.time_s)
    assert times[0] == pytest.approx(times[1], rel=1e-12)
    steps, chunk = 14, 2**20  # 2 (N - 1) steps of S / N
    c = 100 * GBPS / (1.05 if MODELS[name].ack_fraction else 1.0) * MODELS[name].rate_factor
    assert times[0] == pytest.approx(steps * (MODELS[name].latency_factor * 10e-6 + chunk / c), rel=1e-12)


def test_unknown_model_names_the_field() -> None:
    with pytest.raises(SpecError, match="network_model: got 'reno'; allowed: maxmin, cm02, lv08"):
        make_network(Fabric(star(hosts=2)), "flow", model="reno")


def test_weighted_solver_reduces_to_max_min() -> None:
    rng = np.random.default_rng(1)
    links = rng.integers(-1, 12, size=(60, 4))
    cap = rng.uniform(1, 10, 12)
    ones = np.ones(links.shape)
    np.testing.assert_allclose(weighted_max_min_rates(links, cap, ones, np.ones(60), np.full(60, np.inf)),
                               max_min_rates(links, cap), rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 8))
def test_weighted_solver_meets_the_bottleneck_conditions(seed: int, n_flows: int, n_links: int) -> None:
    """Weighted max-min, checked by its definition: no link over capacity, and every flow is at its bound or
    crosses a full link on which no flow has a higher level (rate / weight)."""
    rng = np.random.default_rng(seed)
    links = rng.integers(-1, n_links, size=(n_flows, 3))
    links[:, 0] = rng.integers(0, n_links, size=n_flows)
    coef = np.where(rng.random(links.shape) < 0.3, 0.05, 1.0)
    weight = rng.uniform(0.1, 10, n_flows)
    bound = np.where(rng.random(n_flows) < 0.3, rng.uniform(0.1, 5, n_flows), np.inf)
    cap = rng.uniform(1, 10, n_links)
    rate = weighted_max_min_rates(links, cap, coef, weight, bound)
    valid = links >= 0
    load = np.bincount(links[valid], weights=(coef * rate[:, None])[valid], minlength=n_links)
    assert np.all(load <= cap * (1 + 1e-9))
    assert np.all(rate <= bound * (1 + 1e-9))
    level = rate / weight
    full = load >= cap * (1 - 1e-9)
    for f in range(n_flows):
        if rate[f] >= bound[f] * (1 - 1e-9):
            continue
        on = [link for link in links[f][valid[f]] if full[link]]
        assert any(level[f] >= level[(links == link).any(axis=1)].max() * (1 - 1e-9) for link in on), f


# ----- every command, sweep and jobs file takes it ------------------------------------------------------------
def test_collective_command_takes_the_model_and_states_it(capsys: pytest.CaptureFixture) -> None:
    """lv08 ring all-reduce of 8 MiB on an 8-host star: 14 steps of 13.01 x 10 µs + 1 MiB / (0.97 x B / 1.05)."""
    args = ["collective", "--size", "8MiB", "--topology", "star:hosts=8,link_gbps=100,latency_us=5",
            "--network-model", "lv08"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--json"])
    assert exit_info.value.code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["network_model"] == "lv08"
    assert report["time_s"] == pytest.approx(14 * (13.01 * 10e-6 + 2**20 * 1.05 / (0.97 * 100 * GBPS)), rel=1e-12)
    with pytest.raises(SystemExit):
        main(args)
    assert "lv08 sharing" in capsys.readouterr().out.replace("\n", " ")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--network-model", "tcp"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "dessim: error: --network-model: got 'tcp'; allowed: maxmin, cm02, lv08"


def test_jobs_share_a_bottleneck_under_tcp_acks() -> None:
    """Two dp jobs across one 100 Gb/s dumbbell core (tests/test_jobs.py's case). Both ranks of a 2-rank
    all-reduce send at once, so each core direction also carries the other's ACKs: alone x = B / 1.05, shared
    B / 2.1. Under lv08 a byte takes 1 / 0.97 of capacity and each of the 4 messages 13.01 x 4 µs."""
    dumbbell_spec = "leafspine:leaves=2,hosts_per_leaf=2,spines=1,host_gbps=100,uplink_gbps=100,latency_us=1"
    w = load_workload("dlrm-small")
    s = float(w.sparse_bytes + w.dense_params * w.dtype_bytes)
    jobs = [{"name": n, "workload": "dlrm-small", "strategy": "dp", "hosts": h} for n, h in (("a", [0, 2]),
                                                                                          ("b", [1, 3]))]
    b = 100 * GBPS
    for name, per_byte_s, latency_s in (("cm02", 1 / b, 16e-6), ("lv08", 1 / (0.97 * b), 13.01 * 16e-6)):
        table = simulate_jobs({"topology": dumbbell_spec, "network_model": name, "jobs": jobs}).table.set_index("name")
        assert table.exposed_comm_alone_s["a"] == pytest.approx(1.05 * s * per_byte_s + latency_s, rel=1e-9)
        assert table.exposed_comm_shared_s["b"] == pytest.approx(2.1 * s * per_byte_s + latency_s, rel=1e-9)


def test_sweeps_vary_the_model_and_leave_the_closed_form_to_maxmin(tmp_path) -> None:
    spec = {"base": {"workload": "dlrm-small", "topology": "star:hosts=4,link_gbps=100,latency_us=5",
                     "strategy": "dp", "workers": 4, "fidelity": "analytical"},
            "grid": {"network_model": ["maxmin", "lv08"]}, "closed_form": True}
    rows = sweep(spec, tmp_path / "models.parquet", jobs=1).set_index("network_model")
    assert rows.loc["maxmin", "evaluation"] == "closed form"
    assert rows.loc["lv08", "evaluation"] == "engine"
    assert rows.loc["lv08", "error"] == ""
    assert rows.loc["lv08", "step_time_s"] > rows.loc["maxmin", "step_time_s"]


@pytest.mark.parametrize("seed", range(4))
def test_large_weighted_solves_by_heap_filling_equal_local_minima(seed: int,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``LARGE_SOLVE_ENTRIES`` the weighted solver fills levels from a heap (compiled), each flow's bound an
    item of its own; on random instances (ACK coefficients, RTT weights, some window bounds, links shared by many) it
    gives the local-minima solver's rates."""
    import simulator.network.maxmin as maxmin

    rng = np.random.default_rng(seed)
    n_links, n_flows, width = 50, 400, 6
    capacity = rng.uniform(1.0, 100.0, n_links)
    links = np.full((n_flows, width), -1)
    coef = np.zeros((n_flows, width))
    for f in range(n_flows):
        hops = int(rng.integers(1, width + 1))
        links[f, :hops] = rng.choice(n_links, hops, replace=False)
        coef[f, :hops] = np.where(rng.random(hops) < 0.3, 0.05, 1.0)
    weight = rng.uniform(0.2, 5.0, n_flows)
    bound = np.where(rng.random(n_flows) < 0.3, rng.uniform(0.01, 1.0, n_flows), np.inf)
    monkeypatch.setattr(maxmin, "LARGE_SOLVE_ENTRIES", 10**9)
    local = weighted_max_min_rates(links, capacity, coef, weight, bound)
    monkeypatch.setattr(maxmin, "LARGE_SOLVE_ENTRIES", 0)
    heap = weighted_max_min_rates(links, capacity, coef, weight, bound)
    np.testing.assert_allclose(heap, local, rtol=1e-9)
    assert np.isfinite(heap).all() and (heap <= bound * (1 + 1e-12)).all()
