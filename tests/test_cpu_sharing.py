"""Processor sharing of one machine's cores (``simulator.compute.cpu_sharing``) and the engine under it, against
closed forms."""

import numpy as np
import pytest
import simpy
from conftest import star_graph
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.collectives.algorithms import build_schedule
from simulator.compute.cpu_sharing import SharedCores
from simulator.core.engine import Engine
from simulator.core.stepgraph import StepGraph
from simulator.network import make_network
from simulator.network.fabric import Fabric


def _ends(cores: int, jobs: list[tuple[float, float]]) -> list[float]:
    """End times of jobs (arrival s, work s) on ``cores`` cores, in job order."""
    env = simpy.Environment()
    cpu, ends = SharedCores(env, cores), [0.0] * len(jobs)
    for i, (arrival, work) in enumerate(jobs):
        env.timeout(arrival).callbacks.append(
            lambda _e, i=i, work=work: cpu.join(work, lambda end, i=i: ends.__setitem__(i, end)))
    env.run()
    return ends


@pytest.mark.parametrize(("n", "cores"), [(1, 1), (3, 2), (4, 2), (2, 4), (7, 3)])
def test_n_equal_ops_end_together_at_work_times_n_over_cores(n: int, cores: int) -> None:
    assert _ends(cores, [(0.0, 2e-3)] * n) == pytest.approx([2e-3 * max(1.0, n / cores)] * n, rel=1e-12)


def test_staggered_arrivals_closed_form() -> None:
    """One core. A (2 s of work) from 0; B (1 s) from 1: A alone until 1 (1 s left), then both at half speed;
    both are done at 3. C (0.5 s) joins at 3.5 alone: done at 4."""
    assert _ends(1, [(0.0, 2.0), (1.0, 1.0), (3.5, 0.5)]) == pytest.approx([3.0, 3.0, 4.0], rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.lists(st.tuples(st.floats(0, 5), st.floats(1e-3, 5)), min_size=1, max_size=8))
def test_work_is_conserved_and_no_op_beats_its_own_work(cores: int, jobs: list[tuple[float, float]]) -> None:
    """Whatever the arrivals, an op takes at least its work. All arriving at once on one core, the machine
    is never idle: the last ends at the total work; on more cores, no sooner than total / cores or the
    longest op."""
    ends = _ends(cores, jobs)
    assert all(end >= arrival + work * (1 - 1e-9) for end, (arrival, work) in zip(ends, jobs, strict=True))
    works = [work for _, work in jobs]
    assert max(_ends(1, [(0.0, work) for work in works])) == pytest.approx(sum(works), rel=1e-9)
    assert max(_ends(cores, [(0.0, work) for work in works])) >= max(sum(works) / cores, max(works)) * (1 - 1e-9)


def test_fewer_than_one_core_is_refused() -> None:
    with pytest.raises(ValueError, match="cores: got 0"):
        SharedCores(simpy.Environment(), 0)


@pytest.fixture(scope="module")
def star3() -> Fabric:
    return Fabric(star_graph(3, 100.0, 1.0))


def _step(cores: int | None, fidelity: str, star3: Fabric) -> float:
    """Three serial ranks compute 1 ms, all-reduce 1 MB, then rank 2 (a server, say) computes 2 ms alone."""
    graph = StepGraph(3, np.arange(3))
    graph.serial, graph.cores = np.arange(3), cores
    a = graph.compute("fwd", "compute.forward", np.arange(3), 1e-3)
    c = graph.comm("ar", "dense.allreduce", np.arange(3), build_schedule("allreduce", "ring", 1e6, 3), deps=(a,))
    graph.compute("serve", "server.update", np.array([2]), 2e-3, deps=(c,))
    return Engine(graph, make_network(star3, fidelity)).run().makespan_s


@pytest.mark.parametrize("fidelity", ["flow", "analytical"])
def test_engine_shares_cores_only_while_ranks_compute_at_once(star3: Fabric, fidelity: str) -> None:
    """On 2 cores the three forwards take 1.5 ms; the all-reduce holds no core; the lone update keeps its
    2 ms. With 3 or more cores (or none shared) the step is unchanged."""
    alone = _step(None, fidelity, star3)
    ring_s = alone - 3e-3
    assert _step(3, fidelity, star3) == pytest.approx(alone, rel=1e-12)
    assert _step(2, fidelity, star3) == pytest.approx(1.5e-3 + ring_s + 2e-3, rel=1e-9)
    assert _step(1, fidelity, star3) == pytest.approx(3e-3 + ring_s + 2e-3, rel=1e-9)


def test_a_fifo_pool_on_shared_cores() -> None:
    """A server's pool of 2 threads serves two 2 ms requests at once; on 1 core they end together at 4 ms."""
    graph = StepGraph(2, np.arange(1), servers=np.array([1]))
    graph.fifo["server.pool"], graph.cores = 2, 1
    for name in "ab":
        graph.compute(f"serve.{name}", "server.lookup", np.array([1]), 2e-3, stream="server.pool")
    trace = Engine(graph, make_network(Fabric(star_graph(2, 100.0, 1.0)), "analytical")).run().trace
    assert trace.end_s.tolist() == pytest.approx([4e-3, 4e-3], rel=1e-12)
