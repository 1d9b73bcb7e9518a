"""TorchRec-style embedding sharding baselines (TRAINING.md): ``tw``, ``cw`` and ``rw``.

Each lowers to TorchRec's input distribution (IDs to the ranks holding their rows, by all-to-all) and
output distribution (pooled embeddings back to the ranks owning the samples), mirrored in backward:
- ``tw`` table-wise: each table lives on one worker (largest tables first, on the least loaded worker).
  IDs of table t go to its owner; the owner returns b x fields_t x dim_t pooled values to every worker
  by all-to-all; backward sends those gradients back.
- ``cw`` column-wise: each table is cut into ``column_shards`` column blocks placed like tables; every
  block owner receives the table's IDs and returns its columns.
- ``rw`` row-wise: rows hash-partitioned over all workers; IDs by all-to-all to row owners; each worker
  pools partial embeddings of its rows for the whole global batch, and a reduce-scatter of
  B x sum(fields x dim) values gives each worker its samples; backward all-gathers the gradients.
Dense gradients are all-reduced as in every synchronous strategy.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from simulator.stepgraph import StepGraph
from simulator.strategies import costs
from simulator.strategies.base import Cluster, Lowered, collective, demand, exchange, worker_memory
from workloads import Workload

SHARDINGS = ("tw", "cw", "rw")


class ShardingOptions(BaseModel):
    """``column_shards``: column blocks per table for ``cw``."""

    model_config = ConfigDict(extra="forbid")
    column_shards: int = Field(4, ge=1)


def place_shards(workload: Workload, n_workers: int, column_shards: int = 1) -> tuple[np.ndarray, np.ndarray,
                                                                                        np.ndarray]:
    """Greedy placement of (table, column block) shards: (table index, width, owner) of each shard.

    Largest shard first, onto the worker holding the fewest bytes so far (TorchRec's greedy proposer).
    """
    table, width, size = [], [], []
    for t, spec in enumerate(workload.tables):
        blocks = min(column_shards, spec.dim)
        for w in np.diff(np.linspace(0, spec.dim, blocks + 1).round().astype(int)):
            table.append(t)
            width.append(int(w))
            size.append(spec.rows * w)
    order = np.argsort(-np.array(size, dtype=np.float64), kind="stable")
    load = np.zeros(n_workers)
    owner = np.zeros(len(order), dtype=np.int64)
    for i in order:
        owner[i] = int(np.argmin(load))
        load[owner[i]] += size[i]
    return np.array(table), np.array(width), owner


def lower_sharded(workload: Workload, cluster: Cluster, sharding: str, steps: int = 1,
                  options: ShardingOptions | None = None) -> Lowered:
    """The step graph of TorchRec sharding ``sharding`` (tw | cw | rw)."""
    if sharding not in SHARDINGS:
        raise ValueError(f"unknown sharding {sharding!r}")
    opts = options or ShardingOptions()
    workers, device = cluster.workers, cluster.device
    n, b, s, key = len(workers), workload.batch_per_worker, workload.dtype_bytes, workload.id_bytes
    graph = StepGraph(cluster.fabric.n_hosts, workers, steps=steps)
    fwd_s, bwd_s = costs.dense_forward_s(workload, device, b), costs.dense_backward_s(workload, device, b)
    src, dst = np.repeat(workers, n), np.tile(workers, n)
    fields = np.array([t.fields for t in workload.tables], dtype=np.float64)
    dims = np.array([t.dim for t in workload.tables], dtype=np.float64)
    shard_table, shard_width, shard_owner = place_shards(workload, n, opts.column_shards if sharding == "cw" else 1)
    stats = demand(workload, n) if workload.ids == "expected" else None
    shard_bytes = np.zeros(n)
    for k in range(steps):
        dem = stats or demand(workload, n, k)
        if sharding == "rw":
            lookups = dem.split(n, unique=False)
            ids_bytes = lookups.sum(axis=2).ravel() * key
            owned_lookups, owned_rows = lookups.sum(axis=0), dem.owned_global(n)
            lookup_s = costs.lookup_s(workload, device, owned_lookups, owned_rows)
            update_s = costs.sparse_update_s(workload, device, owned_rows)
        else:
            # ids[w, o]: IDs worker w sends to owner o; pooled[w, o]: values o returns to w per sample.
            ids_count, pooled = np.zeros((n, n)), np.zeros((n, n))
            owner_lookups, owner_rows = np.zeros((n, len(workload.tables))), np.zeros((n, len(workload.tables)))
            for t, width, o in zip(shard_table, shard_width, shard_owner, strict=True):
                ids_count[:, o] += dem.lookups[t]
                pooled[:, o] += fields[t] * width
                frac = width / dims[t]  # a column block moves that fraction of each row's bytes
                owner_lookups[o, t] += n * dem.lookups[t] * frac
                owner_rows[o, t] += dem.unique_global[t] * frac
            ids_bytes = ids_count.ravel() * key
            lookup_s = costs.lookup_s(workload, device, owner_lookups, owner_rows)
            update_s = costs.sparse_update_s(workload, device, owner_rows)
        ids = exchange(graph, "input_dist", "sparse.ids", src, dst, ids_bytes, (), k)
        pool = graph.compute("embedding.forward", "compute.embedding", workers, lookup_s, deps=ids, step=k)
        if sharding == "rw":
            out_bytes = n * b * float((fields * dims).sum()) * s
            got = collective(graph, cluster, "sparse.pooled", "reducescatter", out_bytes, workers, (pool,), k,
                             name="output_dist")
        else:
            got = exchange(graph, "output_dist", "sparse.pooled", dst, src, pooled.ravel() * b * s, (pool,), k)
        fwd = graph.compute("forward", "compute.forward", workers, fwd_s, deps=got, step=k)
        bwd = graph.compute("backward", "compute.backward", workers, bwd_s, deps=(fwd,), step=k)
        if sharding == "rw":
            grads = collective(graph, cluster, "sparse.pooled_grad", "allgather", out_bytes, workers, (bwd,), k,
                               name="output_dist.grad")
        else:
            grads = exchange(graph, "output_dist.grad", "sparse.pooled_grad", src, dst, pooled.ravel() * b * s,
                             (bwd,), k)
        graph.compute("embedding.backward", "compute.update", workers, lookup_s + update_s, deps=grads, step=k)
        reduced = collective(graph, cluster, "dense.allreduce", "allreduce", workload.dense_params * s,
                             workers, (bwd,), k)
        graph.compute("dense.update", "compute.update", workers,
                      costs.dense_update_s(workload, device, workload.dense_params), deps=reduced, step=k)
    slots = workload.optimizer_slots
    if sharding == "rw":
        shard_bytes[:] = workload.sparse_bytes / n
    else:
        rows = np.array([workload.tables[t].rows for t in shard_table], dtype=np.float64)
        np.add.at(shard_bytes, shard_owner, rows * shard_width * s)
    memory = worker_memory(workload, 2 + slots, sparse_shard=float(shard_bytes.max()) * (1 + slots))
    return Lowered(graph, {"worker": memory})
