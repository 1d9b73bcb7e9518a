"""Data parallel (docs/TRAINING_MODEL.md, "Strategies"): every worker holds every table; gradients are all-reduced.

As PyTorch DDP does with dense embedding gradients, the whole table gradient is all-reduced each step
(``sparse.allreduce``, sum of rows x params_per_id values), then dense gradients (``dense.allreduce``), each
value in ``comm_bytes``.
Only feasible for small tables: the memory check says so when the replicas do not fit.
"""

from __future__ import annotations

import numpy as np

from simulator.compute import roofline
from simulator.core.stepgraph import StepGraph
from simulator.options import StrategyOptions
from simulator.strategies import costs
from simulator.strategies.base import Cluster, Lowered, Strategy, collective, demand, host_op, worker_memory
from simulator.strategies.closed import Terms
from workloads import Workload


def lower_dp(workload: Workload, cluster: Cluster, steps: int = 1) -> Lowered:
    """The data-parallel step graph of ``steps`` steps on the cluster's workers."""
    workers, device = cluster.workers, cluster.device
    n, b, wire = len(workers), workload.batch_per_worker, workload.comm_bytes
    graph = StepGraph(cluster.fabric.n_hosts, workers, steps=steps)
    fwd_s, bwd_s = costs.dense_forward_s(workload, device, b), costs.dense_backward_s(workload, device, b)
    update_s = costs.dense_update_s(workload, device, workload.dense_params + workload.sparse_params)
    grad_s = costs.table_gradient_s(workload, device)  # the tables' dense gradient, zeroed in backward
    stats = demand(workload, n) if workload.ids == "expected" else None
    for k in range(steps):
        host_op(graph, workers, device, k)
        dem = stats or demand(workload, n, k)
        pool_s = costs.lookup_s(workload, device, np.broadcast_to(dem.lookups, dem.unique.shape), dem.unique, b)
        pool = graph.compute("lookup", "compute.lookup", workers, pool_s, step=k)
        fwd = graph.compute("forward", "compute.forward", workers, fwd_s, deps=(pool,), step=k)
        bwd = graph.compute("backward", "compute.backward", workers, pool_s + bwd_s + grad_s, deps=(fwd,), step=k)
        sparse = collective(graph, cluster, "sparse.allreduce", "allreduce", workload.sparse_params * wire,
                            workers, (bwd,), k)
        dense = collective(graph, cluster, "dense.allreduce", "allreduce", workload.dense_params * wire,
                           workers, (bwd,), k)
        graph.compute("update", "compute.update", workers, update_s, deps=sparse + dense, step=k)
    return Lowered(graph, dp_memory(workload, b))


def dp_memory(workload: Workload, batch_per_worker: float | np.ndarray) -> dict[str, dict[str, float | np.ndarray]]:
    """A DP worker's memory (bytes) by component: replicated tables with gradients and optimizer state."""
    replicas = workload.sparse_bytes * (2 + workload.optimizer_slots)
    return {"worker": worker_memory(workload, 2 + workload.optimizer_slots, batch_per_worker=batch_per_worker,
                                    tables=replicas)}


def _lower(workload: Workload, cluster: Cluster, steps: int, options: StrategyOptions) -> Lowered:
    return lower_dp(workload, cluster, steps)


def closed_form(t: Terms) -> dict[str, np.ndarray]:
    """dp per batch size: forward and backward with their lookups p (and the tables' dense gradient zeroed,
    z), then the table and dense gradients all-reduced one after the other, then the update u:
    ``step = (p + f) + (p + g + z) + T_s + T_d + u``."""
    w, device = t.workload, t.device
    forward, backward = t.dense_pass_s()
    dense_s, dense_wire = t.dense_allreduce
    pool = costs.lookup_s(w, device, t.lookups, t.unique(t.lookups), t.b)
    sparse_s, sparse_wire = t.collective("allreduce", np.array([w.sparse_params * t.wire]), t.cluster.workers)
    update = roofline.dense_update_s(device, w.dense_params + w.sparse_params, t.s, w.optimizer_slots)
    busy = t.host_s + 2 * pool + forward + backward + costs.table_gradient_s(w, device) + update
    step = busy + sparse_s + dense_s
    return t.result(step, busy, np.broadcast_to(sparse_wire + dense_wire, t.b.shape), dp_memory(w, t.b)["worker"])


STRATEGIES = (Strategy("dp", "data parallel: tables replicated, every table gradient all-reduced", "recommender",
                       _lower, closed_form=closed_form),)
