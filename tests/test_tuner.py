"""Collective algorithm choice (simulator/collectives/tuner.py): memoized analytical profiles are exact at every
size, every candidate is priced as the analytical backend prices it, and the fastest one is chosen."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import fattree_graph, star_graph

from simulator.collectives.algorithms import build_schedule
from simulator.collectives.tuner import DIRECT_MAX_RANKS, candidate_algorithms, choose_algorithm, profiled
from simulator.network.analytical import AnalyticalNetwork
from simulator.network.fabric import Fabric


@pytest.mark.parametrize(("op", "algo"), [("allreduce", "ring"), ("allreduce", "tree"), ("alltoall", "direct"),
                                          ("allreduce", "halving-doubling"), ("broadcast", "ring"),
                                          ("pushpull", "direct")])
def test_memoized_analytical_profiles_scale_exactly_with_size(op: str, algo: str) -> None:
    fabric = Fabric(fattree_graph(4))
    servers = 4 if op == "pushpull" else 0
    profiled(fabric, op, algo, 3e6, servers)  # profile built at another size first
    for size in (2e6, 5e6, 64 * 2**20):
        entry = profiled(fabric, op, algo, size, servers)
        memo_s, memo_bytes = entry.time_s(size), entry.link_bytes(size, fabric.n_links)
        direct_s, direct_bytes = AnalyticalNetwork(fabric).schedule_time_s(
            build_schedule(op, algo, size, fabric.n_hosts, servers))
        assert memo_s == pytest.approx(direct_s, rel=1e-12)
        assert np.allclose(memo_bytes, direct_bytes, rtol=1e-12)





@pytest.mark.parametrize(("op", "size"), [("allreduce", 4e3), ("allreduce", 256e6), ("allgather", 1e6),
                                          ("alltoall", 64e6), ("broadcast", 1e3)])
def test_the_choice_is_the_fastest_candidate_as_the_backend_prices_it(op: str, size: float) -> None:
    fabric = Fabric(fattree_graph(4))
    chosen, times = choose_algorithm(op, size, fabric)
    assert list(times) == candidate_algorithms(op, fabric.n_hosts, fabric.ranks_per_node)
    for algo, time_s in times.items():
        direct = AnalyticalNetwork(fabric).schedule_time_s(build_schedule(op, algo, size, fabric.n_hosts))[0]
        assert time_s == pytest.approx(direct, rel=1e-12)
    assert times[chosen] == min(times.values())


def test_latency_bound_and_bandwidth_bound_sizes_choose_differently() -> None:
    """On a 16-host star (1 us per hop): a 1 KiB all-reduce is latency-bound, so a log-depth algorithm beats the
    ring's 2(n-1) steps; at 1 GiB the ring's bandwidth-optimal 2(n-1)/n S per host wins (or ties)."""
    fabric = Fabric(star_graph(16, link_gbps=100.0, latency_us=1.0))
    small, small_times = choose_algorithm("allreduce", 1024, fabric)
    _, large_times = choose_algorithm("allreduce", 2**30, fabric)
    assert small != "ring" and small_times[small] < small_times["ring"] / 2
    assert large_times["ring"] == pytest.approx(min(large_times.values()), rel=1e-3)
    # ring at 1 GiB: 2(n-1) steps, each a hop pair of 2 us and S/n bytes at 100 Gb/s
    assert large_times["ring"] == pytest.approx(2 * 15 * (2e-6 + 2**30 / 16 / 12.5e9), rel=1e-9)


def test_candidates_follow_the_rules_nccl_applies() -> None:
    assert "direct" in candidate_algorithms("allreduce", DIRECT_MAX_RANKS, None)
    assert "direct" not in candidate_algorithms("allreduce", DIRECT_MAX_RANKS + 1, None)
    assert "direct" in candidate_algorithms("alltoall", 4096, None)  # an all-to-all is all pairs anyway
    assert "hierarchical" in candidate_algorithms("allreduce", 16, 8)
    assert "hierarchical" not in candidate_algorithms("allreduce", 16, None)
    assert "hierarchical" not in candidate_algorithms("allreduce", 12, 8)  # nodes must divide the ranks
    assert "hierarchical" not in candidate_algorithms("allreduce", 8, 8)  # one node: nothing to split


def test_a_subset_of_hosts_is_priced_on_its_own_routes() -> None:
    fabric = Fabric(fattree_graph(4))
    hosts = np.array([0, 1, 2, 3])  # one pod
    _, times = choose_algorithm("allreduce", 1e6, fabric, hosts=hosts)
    ring = AnalyticalNetwork(fabric).schedule_time_s(build_schedule("allreduce", "ring", 1e6, 4), hosts)[0]
    assert times["ring"] == pytest.approx(ring, rel=1e-12)
