"""StepGraph: what a step graph accepts, and the typed roles strategies give its ops."""

import numpy as np
import pytest
from conftest import star_graph

from simulator.collectives.algorithms import build_schedule
from simulator.compute.roofline import load_device
from simulator.core.stepgraph import StepGraph
from simulator.network.fabric import Fabric
from simulator.options import PSOptions, StrategyOptions
from simulator.run.training import make_cluster
from simulator.strategies import lower
from workloads import load_workload


def test_graph_rejects_bad_ops() -> None:
    graph = StepGraph(2, np.arange(2))
    with pytest.raises(ValueError, match="ranks"):
        graph.compute("x", "c", np.array([0, 0]), 1.0)
    with pytest.raises(ValueError, match="earlier"):
        graph.compute("x", "c", np.array([0]), 1.0, deps=(3,))
    with pytest.raises(ValueError, match="schedule has"):
        graph.comm("x", "c", np.array([0]), build_schedule("allreduce", "ring", 1e3, 2))


def test_only_compute_ops_may_use_a_fifo_stream() -> None:
    graph = StepGraph(2, np.arange(2))
    graph.fifo["pool"] = 1
    with pytest.raises(ValueError, match="only compute ops"):
        graph.comm("x", "c", np.arange(2), build_schedule("allreduce", "ring", 1e3, 2), stream="pool")


def test_asynchronous_ps_ops_carry_their_role_and_their_worker() -> None:
    """Async PS on 4 workers and 2 co-located servers: every server op is a server's, every op of a worker's
    request stream names that worker, the workers' compute has role compute and no worker; sync PS has no
    per-worker ops."""
    workload = load_workload("dlrm-small", ["batch=64"])
    cluster = make_cluster(Fabric(star_graph(4)), "ps", load_device("h100"), load_device("cpu-server"), servers=2)
    options = StrategyOptions.default()
    options.ps = PSOptions(mode="async")
    ops = lower("ps", workload, cluster, steps=2, options=options).graph.ops
    servers = [o for o in ops if o.name.startswith("server.")]
    assert servers and all(o.role == "server" and o.worker is not None for o in servers)
    requests = [o for o in ops if o.kind == "p2p"]
    assert {o.worker for o in requests} == {0, 1, 2, 3} and all(o.role == "comm" for o in requests)
    assert all(o.role == "compute" and o.worker is None for o in ops if o.category.startswith("compute."))
    sync = lower("ps", workload, cluster, steps=2).graph.ops
    assert all(o.worker is None for o in sync)
