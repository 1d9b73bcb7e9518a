"""The engine and per-rank joins, against closed forms on a star (docs/NETWORK_MODEL.md, "Semantics")."""

import numpy as np
import pytest
from conftest import star_graph

from simulator.collectives.algorithms import build_schedule
from simulator.core.engine import Engine
from simulator.core.stepgraph import StepGraph
from simulator.network import make_network
from simulator.network.fabric import Fabric
from simulator.network.schedule import Pattern, Schedule

GBPS, LATENCY_US = 100.0, 1.0
B = GBPS * 1e9 / 8
L = LATENCY_US * 1e-6


@pytest.fixture(scope="module")
def star4() -> Fabric:
    return Fabric(star_graph(4, GBPS, LATENCY_US))


@pytest.mark.parametrize("fidelity", ["flow", "analytical"])
def test_compute_then_allreduce_then_update_closed_form(star4: Fabric, fidelity: str) -> None:
    """Ranks join the ring when their own compute ends; the ring finishes after the last joins."""
    n, size = 4, 1e6
    graph = StepGraph(n, np.arange(n))
    fwd_s = np.array([1e-5, 2e-5, 3e-5, 4e-5])
    a = graph.compute("fwd", "compute.fwd", np.arange(n), fwd_s)
    c = graph.comm("ar", "dense.allreduce", np.arange(n), build_schedule("allreduce", "ring", size, n), deps=(a,))
    graph.compute("upd", "compute.update", np.arange(n), 1e-5, deps=(c,))
    result = Engine(graph, make_network(star4, fidelity)).run()
    ring_s = 2 * (n - 1) * (2 * L + size / (n * B))
    assert result.makespan_s == pytest.approx(fwd_s.max() + ring_s + 1e-5, rel=1e-9)
    trace = result.trace
    ar = trace[trace.op == "ar"].sort_values("rank")
    assert np.allclose(ar.start_s, fwd_s, rtol=1e-12)
    assert np.allclose(ar.bytes_sent, 2 * (n - 1) / n * size)
    assert len(trace) == 3 * n


def test_flow_rank_joining_late_delays_only_what_depends_on_it(star4: Fabric) -> None:
    """Step 1: 0 -> 1; step 2: 1 -> 0. Rank 1 joins at 50 us: rank 0's first send is not delayed."""
    size = 1e5
    schedule = Schedule(2)
    schedule.add(Pattern.of(2, [0], [1], size))
    schedule.add(Pattern.of(2, [1], [0], size))
    network = make_network(Fabric(star_graph(2, GBPS, LATENCY_US)), "flow")
    done: dict[int, float] = {}
    join_s = 50e-6
    event = network.start(schedule, ready_s=np.array([0.0, np.inf]),
                          on_rank_done=lambda ranks, t: done.update(zip(ranks.tolist(), t.tolist(), strict=True)))
    network.env.run(until=join_s)
    network.release(event, np.array([1]), np.array([join_s]))
    network.env.run(until=event)
    message_s = 2 * L + size / B
    assert message_s < join_s
    # Rank 1 has had its step-1 message since message_s; its step-2 send leaves when it joins.
    assert done[0] == pytest.approx(join_s + message_s, rel=1e-12)
    assert done[1] == pytest.approx(join_s + message_s, rel=1e-12)
    assert event.value.end_s == pytest.approx(join_s + message_s, rel=1e-12)


def test_flow_release_in_the_past_is_refused(star4: Fabric) -> None:
    network = make_network(star4, "flow")
    event = network.start(build_schedule("allreduce", "ring", 1e3, 4), ready_s=np.array([0, 0, 0, np.inf]))
    network.env.run(until=1e-3)
    with pytest.raises(ValueError, match="before now"):
        network.release(event, np.array([3]), np.array([0.0]))


def test_streams_serialize_and_communication_overlaps_compute(star4: Fabric) -> None:
    """Two compute ops on one rank run back to back; an independent transfer overlaps them."""
    size = 1e6
    graph = StepGraph(4, np.arange(4))
    graph.compute("a", "compute.fwd", np.array([0]), 30e-6)
    b = graph.compute("b", "compute.bwd", np.array([0]), 20e-6)
    schedule = Schedule(2)
    schedule.add(Pattern.of(2, [0], [1], size))
    graph.comm("send", "sparse.push", np.array([0, 1]), schedule, kind="p2p")
    graph.compute("c", "compute.update", np.array([1]), 5e-6, deps=(b,))  # rank 1 is not in b: no wait
    trace = Engine(graph, make_network(star4, "flow")).run().trace.set_index(["op", "rank"])
    assert trace.loc[("b", 0), "start_s"] == pytest.approx(30e-6)
    assert trace.loc[("send", 0), "start_s"] == 0.0
    assert trace.loc[("send", 1), "end_s"] == pytest.approx(2 * L + size / B, rel=1e-12)
    assert trace.loc[("c", 1), "start_s"] == 0.0


@pytest.mark.parametrize("workers", [1, 2])
def test_a_fifo_stream_serves_ops_in_the_order_they_become_ready(star4: Fabric, workers: int) -> None:
    """Three requests to rank 3's pool, ready at 3, 1 and 2 ms (added in that order; each waits on its own
    stream), 2 ms each. One worker serves them first come first served: 1-3, 3-5, 5-7 ms (program order would
    give 3-5, 5-7, 7-9). Two workers: 1-3, 2-4, 3-5."""
    graph = StepGraph(4, np.arange(4))
    graph.fifo["server.pool"] = workers
    for name, delay in [("a", 3e-3), ("b", 1e-3), ("c", 2e-3)]:
        wait = graph.compute(f"wait.{name}", "compute.wait", np.array([3]), delay, stream=f"wait.{name}")
        graph.compute(f"serve.{name}", "server", np.array([3]), 2e-3, deps=(wait,), stream="server.pool")
    trace = Engine(graph, make_network(star4, "flow")).run().trace.set_index("op")
    served = {name: (trace.loc[f"serve.{name}", "start_s"], trace.loc[f"serve.{name}", "end_s"]) for name in "abc"}
    expected = ({"b": (1e-3, 3e-3), "c": (3e-3, 5e-3), "a": (5e-3, 7e-3)} if workers == 1 else
                {"b": (1e-3, 3e-3), "c": (2e-3, 4e-3), "a": (3e-3, 5e-3)})
    assert served == {k: pytest.approx(v, rel=1e-12) for k, v in expected.items()}


@pytest.mark.parametrize("fidelity", ["flow", "analytical"])
def test_a_serial_rank_runs_its_streams_one_op_at_a_time(star4: Fabric, fidelity: str) -> None:
    """Rank 0's backward (1e-4 s) overlaps its all-reduce on another stream; made serial (as the executor's
    blocking ranks), rank 0 runs them in program order, so the all-reduce waits for the backward everywhere."""
    n, size = 4, 1e6
    ring_s = 2 * (n - 1) * (2 * L + size / (n * B))
    ends = {}
    for serial in (False, True):
        graph = StepGraph(n, np.arange(n))
        graph.compute("bwd", "compute.backward", np.arange(n), np.array([1e-4, 0.0, 0.0, 0.0]), stream="compute")
        graph.comm("ar", "dense.allreduce", np.arange(n), build_schedule("allreduce", "ring", size, n))
        if serial:
            graph.serial = np.array([0])
        ends[serial] = Engine(graph, make_network(star4, fidelity)).run().makespan_s
    assert ends[False] == pytest.approx(max(1e-4, ring_s), rel=1e-9)
    assert ends[True] == pytest.approx(1e-4 + ring_s, rel=1e-9)
