"""Collective schedules: bytes per rank and step counts against the algorithms' closed forms."""

import numpy as np
import pytest
from conftest import run_flow, star_graph

from simulator.collectives.algorithms import SUPPORTED, build_schedule, busbw_factor, check_request
from simulator.errors import SpecError
from simulator.network.fabric import Fabric
from simulator.network.schedule import Schedule


def sent_per_rank(schedule: Schedule) -> np.ndarray:
    sent = np.zeros(schedule.n_ranks)
    for step in schedule.steps:
        p = step.pattern
        sent += step.repeat * np.bincount(p.src, weights=p.size_bytes, minlength=schedule.n_ranks)
    return sent


S = 3 * 2**20


@pytest.mark.parametrize("n", [2, 4, 8, 16])
def test_bandwidth_optimal_allreduces_send_2_n_minus_1_over_n(n: int) -> None:
    for algo in ("ring", "halving-doubling", "direct"):
        sent = sent_per_rank(build_schedule("allreduce", algo, S, n))
        assert np.allclose(sent, 2 * (n - 1) / n * S), algo


@pytest.mark.parametrize("n", [2, 5, 8])
def test_step_counts(n: int) -> None:
    assert build_schedule("allreduce", "ring", S, n).n_steps == 2 * (n - 1)
    assert build_schedule("reducescatter", "ring", S, n).n_steps == n - 1
    assert build_schedule("alltoall", "ring", S, n).n_steps == n - 1
    assert build_schedule("alltoall", "direct", S, n).n_steps == 1
    p = 1 << (n.bit_length() - 1)
    folds = 2 if p != n else 0
    assert build_schedule("allreduce", "halving-doubling", S, n).n_steps == 2 * (p.bit_length() - 1) + folds


@pytest.mark.parametrize("n", [3, 6, 7])
def test_halving_doubling_non_power_of_two_folds_extra_ranks(n: int) -> None:
    schedule = build_schedule("allreduce", "halving-doubling", S, n)
    p = 1 << (n.bit_length() - 1)
    first, last = schedule.steps[0].pattern, schedule.steps[-1].pattern
    assert sorted(first.src.tolist()) == list(range(p, n)) and np.allclose(first.size_bytes, S)
    assert sorted(last.dst.tolist()) == list(range(p, n))


@pytest.mark.parametrize("n", [2, 3, 7, 16])
def test_double_binary_tree_moves_each_half_over_every_edge_twice(n: int) -> None:
    schedule = build_schedule("allreduce", "tree", S, n)
    # two trees of n-1 edges; each carries S/2 up and S/2 down
    assert schedule.total_bytes() == pytest.approx(2 * (n - 1) * S)
    # internal in one tree (S/2 up, S/2 to each of two children) and a leaf in the other (S/2 up)
    assert sent_per_rank(schedule).max() <= 2 * S * (1 + 1e-12)


def test_alltoall_and_collectives_sizes_follow_nccl_tests() -> None:
    n = 8
    assert np.allclose(sent_per_rank(build_schedule("alltoall", "direct", S, n)), (n - 1) * S / n)
    assert np.allclose(sent_per_rank(build_schedule("allgather", "ring", S, n)), (n - 1) * S / n)
    assert sent_per_rank(build_schedule("broadcast", "direct", S, n))[0] == pytest.approx((n - 1) * S)
    incast = sent_per_rank(build_schedule("incast", "direct", S, n))
    assert incast[0] == 0 and np.allclose(incast[1:], S)
    push = build_schedule("pushpull", "direct", S, n, servers=2)
    assert np.allclose(sent_per_rank(push)[:6], S)
    assert np.allclose(sent_per_rank(push)[6:], 6 * S / 2)


def test_hierarchical_allreduce_bytes() -> None:
    n, g = 16, 4
    sent = sent_per_rank(build_schedule("allreduce", "hierarchical", S, n, ranks_per_node=g))
    nodes = n // g
    inside = 2 * (g - 1) * S / g
    across = 2 * (nodes - 1) * S / g / nodes
    assert np.allclose(sent, inside + across)


def test_busbw_factors() -> None:
    assert busbw_factor("allreduce", 8) == pytest.approx(14 / 8)
    assert busbw_factor("alltoall", 8) == pytest.approx(7 / 8)
    assert busbw_factor("broadcast", 8) == 1.0
    assert busbw_factor("pushpull", 10, servers=2) == 4.0


@pytest.mark.parametrize("op", list(SUPPORTED))
def test_every_supported_pair_runs_and_moves_its_bytes(op: str) -> None:
    n = 8
    fabric = Fabric(star_graph(n))
    for algo in SUPPORTED[op]:
        kwargs = {"servers": 2} if op == "pushpull" else {}
        per_node = 4 if algo == "hierarchical" else None
        schedule = build_schedule(op, algo, S, n, ranks_per_node=per_node, **kwargs)
        result, _network = run_flow(fabric, schedule)
        assert result.time_s > 0
        assert result.received_bytes.sum() == pytest.approx(schedule.total_bytes())


@pytest.mark.parametrize(("args", "field"), [
    (("gather", "ring", 8), "op"),
    (("allreduce", "bogus", 8), "algo"),
    (("alltoall", "tree", 8), "algo"),
    (("allreduce", "ring", 1), "ranks"),
    (("pushpull", "direct", 8, 8), "servers"),
    (("pushpull", "direct", 8, 0), "servers"),
    (("allreduce", "ring", 8, 2), "servers"),
    (("allreduce", "hierarchical", 8, 0, None), "algo"),
    (("allreduce", "hierarchical", 8, 0, 3), "algo"),
])
def test_bad_requests_name_the_field(args: tuple, field: str) -> None:
    with pytest.raises(SpecError) as error:
        check_request(*args)
    assert error.value.field == field
