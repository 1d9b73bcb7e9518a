"""Invariants of every strategy on every kind of topology, healthy or with faults and stragglers, at flow
level: bytes sent = bytes received, no link above its capacity at any instant, simulated time never going
backwards, no op before its dependencies or out of its stream's order, and the same results for the same
seed."""

import numpy as np
import pandas as pd
import pytest

from simulator.compute.roofline import load_device
from simulator.core.engine import Engine
from simulator.core.stragglers import slow_down, slowdown_factors
from simulator.network.fabric import Fabric
from simulator.network.flow import FlowNetwork
from simulator.run.training import make_cluster
from simulator.strategies import FC_STRATEGIES, RECOMMENDER_STRATEGIES, lower
from topologies import load_topology
from topologies.faults import apply_faults
from workloads import load_workload

TOPOLOGIES = {
    "star": "star:hosts=8,link_gbps=100,latency_us=1",
    "leafspine-oversubscribed": "leafspine:leaves=2,hosts_per_leaf=4,spines=1,host_gbps=100,uplink_gbps=100,"
                                "latency_us=1",
    "fattree": "fattree:k=4,link_gbps=100,latency_us=1",
    "dgx-rails": "dgx:nodes=2,gpus_per_node=4,nvlink_gbps=3600,nic_gbps=400,rails=true",
    "torus": "torus:dims=2x2x2,link_gbps=100,latency_us=1",
}
RECOMMENDER = "dlrm:n_tables=4,rows=5000,dim=16,batch=64,ids=sampled,seed=3,bottom_mlp=[32,16],top_mlp=[32,1]"
CLASSIFIER = "classification:classes=4000,feature_dim=32,batch=8"


class ForwardOnlyNetwork(FlowNetwork):
    """A flow network that asserts no link is over capacity after every rate change, and that simulated time
    never goes backwards: windows start in order, and nothing finishes before the window it finishes in."""

    def __init__(self, fabric: Fabric) -> None:
        super().__init__(fabric, check_capacity=True)
        run_window, last = self.core.run_window, [0.0]

        def checked(t0: float, horizon: float):
            assert t0 >= last[0] and t0 >= self.env.now - 1e-15, (t0, last[0], self.env.now)
            done = run_window(t0, horizon)
            assert (done.t_done >= t0 - 1e-15).all()
            last[0] = t0
            return done

        self.core.run_window = checked


def run(strategy: str, topology: str, workload: str = RECOMMENDER, steps: int = 2, faults: tuple[str, ...] = (),
        stragglers: tuple[str, ...] = ()):
    """Lower (with link ``faults`` and ``stragglers`` if given) and run on a ``ForwardOnlyNetwork``."""
    fabric = Fabric(apply_faults(load_topology(topology), faults))
    servers = 2 if strategy in ("ps", "ps-fc") else None
    cluster = make_cluster(fabric, strategy, load_device("h100"), load_device("cpu-server"), servers=servers,
                           workers=6 if servers else None, placement="dedicated" if servers else "colocated")
    lowered = lower(strategy, load_workload(workload), cluster, steps)
    slow_down(lowered.graph, slowdown_factors(stragglers, fabric.n_hosts, steps))
    result = Engine(lowered.graph, ForwardOnlyNetwork(fabric)).run()
    return lowered.graph, result.trace


def check(graph, trace: pd.DataFrame) -> None:
    comm = trace[trace.kind != "compute"]
    per_op = comm.groupby(["op", "step"], observed=True)[["bytes_sent", "bytes_received"]].sum()
    assert np.allclose(per_op.bytes_sent, per_op.bytes_received)  # every byte sent is received
    assert (trace.end_s >= trace.start_s).all() and (trace.start_s >= 0).all()
    # an op starts on a rank after its dependencies running there have ended (trace rows: op by op)
    index = np.repeat(np.arange(len(graph.ops)), [len(op.ranks) for op in graph.ops])
    frame = trace.assign(index=index)
    start = frame.set_index(["index", "rank"]).start_s
    end = frame.set_index(["index", "rank"]).end_s
    for op in graph.ops:
        for dep in op.deps:
            shared = np.intersect1d(op.ranks, graph.ops[dep].ranks)
            for rank in shared:
                assert start[(op.index, rank)] >= end[(dep, rank)] - 1e-15
    # a rank runs one op at a time on each stream, in program order
    for _, lane in frame.sort_values("index", kind="stable").groupby(["rank", "stream"], observed=True):
        assert (lane.start_s.to_numpy()[1:] >= lane.end_s.to_numpy()[:-1] - 1e-15).all()


@pytest.mark.parametrize("topology", list(TOPOLOGIES))
@pytest.mark.parametrize("strategy", RECOMMENDER_STRATEGIES)
def test_invariants_of_every_recommender_strategy(strategy: str, topology: str) -> None:
    graph, trace = run(strategy, TOPOLOGIES[topology])
    check(graph, trace)


@pytest.mark.parametrize("strategy", RECOMMENDER_STRATEGIES)
def test_invariants_with_a_degraded_link_a_failed_one_and_stragglers(strategy: str) -> None:
    graph, trace = run(strategy, "leafspine:leaves=2,hosts_per_leaf=4,spines=2,host_gbps=100,uplink_gbps=100",
                       faults=("leaf0-spine0=0.3", "leaf1-spine1=fail"),
                       stragglers=("1=2.5", "bernoulli:p=0.3,factor=2,seed=5"))
    check(graph, trace)


@pytest.mark.parametrize("strategy", FC_STRATEGIES)
def test_invariants_of_every_classification_strategy(strategy: str) -> None:
    graph, trace = run(strategy, TOPOLOGIES["dgx-rails"], CLASSIFIER)
    check(graph, trace)


@pytest.mark.parametrize("strategy", ["ps", "des-a2a", "rw"])
def test_the_same_seed_gives_the_same_step_and_another_seed_another(strategy: str) -> None:
    first = run(strategy, TOPOLOGIES["fattree"])[1]
    again = run(strategy, TOPOLOGIES["fattree"])[1]
    pd.testing.assert_frame_equal(first, again)
    other = run(strategy, TOPOLOGIES["fattree"], RECOMMENDER.replace("seed=3", "seed=4"))[1]
    assert not other.bytes_sent.equals(first.bytes_sent)  # other sampled IDs, other messages
