"""TorchRec-style embedding sharding baselines ``tw``, ``cw``, ``rw`` and ``twrw`` (docs/TRAINING_MODEL.md).

Each lowers to TorchRec's input distribution (IDs to the ranks holding their rows, by all-to-all, after
their lengths: ``sparse.lengths``, b int32 per sample and field each rank holds rows of) and
output distribution (pooled embeddings back to the ranks owning the samples), mirrored in backward:
- ``tw`` table-wise: each table lives on one worker (largest tables first, on the least loaded worker).
  IDs of table t go to its owner; the owner returns b x fields_t x dim_t pooled values to every worker
  by all-to-all; backward sends those gradients back.
- ``cw`` column-wise: each table is cut into ``column_shards`` column blocks placed like tables; every
  block owner receives the table's IDs and returns its columns.
- ``rw`` row-wise: rows hash-partitioned over all workers; IDs by all-to-all to row owners; each worker
  pools partial embeddings of its rows for the whole global batch, and a reduce-scatter of
  B x sum(fields x dim) values gives each worker its samples; backward all-gathers the gradients.
- ``twrw`` table-wise-row-wise: each table on one node (greedy, by size), its rows split over the
  node's ranks; IDs go to the row owners inside that node; pooled partials are reduce-scattered inside
  the node (NVLink), then sent across nodes by a rail-aligned all-to-all; backward in reverse. Without
  nodes (one rank per host) it is ``tw``.
Dense gradients are all-reduced as in every synchronous strategy. Pooled embeddings, their gradients and
dense gradients travel in the workload's ``comm_bytes`` per value (TorchRec's qcomms: fp16/bf16 output
distribution); tables are stored in ``dtype_bytes``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from simulator.core.stepgraph import StepGraph
from simulator.options import ShardingOptions, StrategyOptions
from simulator.strategies import costs
from simulator.strategies.base import (
    LENGTH_BYTES,
    Cluster,
    Demand,
    Lowered,
    Strategy,
    collective,
    demand,
    exchange,
    host_op,
    worker_memory,
)
from simulator.strategies.closed import Terms
from workloads import Workload

SHARDINGS = ("tw", "cw", "rw", "twrw")


def place_shards(workload: Workload, n_workers: int, column_shards: int = 1,
                 ranks_per_node: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy placement of (table, column block) shards: (table index, width, owner) of each shard.

    As TorchRec's greedy planner: shards by estimated cost, the most expensive first, each onto the worker
    with the least cost so far. A shard's cost is its lookup work per sample (``fields x hotness x width``
    values gathered and pooled); its storage (``rows x width``) breaks ties. Among equally loaded workers the
    one on the least-loaded node wins (workers ``ranks_per_node`` at a time form a node), then the one
    storing least: equal tables spread over the nodes instead of filling the first.

    >>> from workloads import dlrm
    >>> place_shards(dlrm(n_tables=4, rows=1000), 4, ranks_per_node=2)[2].tolist()  # nodes {0, 1} and {2, 3}
    [0, 2, 1, 3]
    """
    table, width, cost, size = [], [], [], []
    for t, spec in enumerate(workload.tables):
        blocks = min(column_shards, spec.dim)
        for w in np.diff(np.linspace(0, spec.dim, blocks + 1).round().astype(int)):
            table.append(t)
            width.append(int(w))
            cost.append(spec.lookups_per_sample * w)
            size.append(spec.rows * w)
    per_node = ranks_per_node if ranks_per_node and n_workers % ranks_per_node == 0 else 1
    node = np.arange(n_workers) // per_node
    load, stored = np.zeros(n_workers), np.zeros(n_workers)
    owner = np.zeros(len(table), dtype=np.int64)
    for i in np.lexsort((-np.array(size, dtype=np.float64), -np.array(cost, dtype=np.float64))):
        node_load = np.bincount(node, weights=load)[node] if per_node > 1 else np.zeros(n_workers)
        owner[i] = int(np.lexsort((np.arange(n_workers), stored, node_load, load))[0])
        load[owner[i]] += cost[i]
        stored[owner[i]] += size[i]
    return np.array(table), np.array(width), owner


def lower_sharded(workload: Workload, cluster: Cluster, sharding: str, steps: int = 1,
                  options: ShardingOptions | None = None) -> Lowered:
    """The step graph of TorchRec sharding ``sharding`` (tw | cw | rw | twrw)."""
    if sharding not in SHARDINGS:
        raise ValueError(f"unknown sharding {sharding!r}")
    opts = options or ShardingOptions()
    workers, device = cluster.workers, cluster.device
    n, b, wire = len(workers), workload.batch_per_worker, workload.comm_bytes
    graph = StepGraph(cluster.fabric.n_hosts, workers, steps=steps)
    fwd_s, bwd_s = costs.dense_forward_s(workload, device, b), costs.dense_backward_s(workload, device, b)
    plan = _Plan(workload, cluster, sharding, opts)
    stats = demand(workload, n) if workload.ids == "expected" else None
    a2a = cluster.collective_costs.get("alltoall")
    for k in range(steps):
        host_op(graph, workers, device, k)
        dem = stats or demand(workload, n, k)
        ids_bytes, lookups, rows = plan.input_dist(dem)
        lookup_s = costs.lookup_s(workload, device, lookups, rows)
        lengths = exchange(graph, "input_dist.lengths", "sparse.lengths", plan.src, plan.dst, plan.lengths_bytes,
                           (), k, cost=a2a)
        ids = exchange(graph, "input_dist", "sparse.ids", plan.src, plan.dst, ids_bytes, lengths, k, cost=a2a)
        pool = graph.compute("embedding.forward", "compute.embedding", workers, lookup_s, deps=ids, step=k)
        got = plan.output_dist(graph, (pool,), k, backward=False)
        fwd = graph.compute("forward", "compute.forward", workers, fwd_s, deps=got, step=k)
        bwd = graph.compute("backward", "compute.backward", workers, bwd_s, deps=(fwd,), step=k)
        grads = plan.output_dist(graph, (bwd,), k, backward=True)
        graph.compute("embedding.backward", "compute.update", workers,
                      costs.embedding_backward_s(workload, device, lookups, rows), deps=grads, step=k)
        reduced = collective(graph, cluster, "dense.allreduce", "allreduce", workload.dense_params * wire,
                             workers, (bwd,), k)
        graph.compute("dense.update", "compute.update", workers,
                      costs.dense_update_s(workload, device, workload.dense_params), deps=reduced, step=k)
    return Lowered(graph, {"worker": plan.memory(b)})


class _Plan:
    """Where each sharding puts rows, and the bytes its input and output distributions move."""

    def __init__(self, workload: Workload, cluster: Cluster, sharding: str, opts: ShardingOptions) -> None:
        self.workload, self.cluster, self.sharding = workload, cluster, sharding
        workers = cluster.workers
        n = len(workers)
        self.src, self.dst = np.repeat(workers, n), np.tile(workers, n)
        self.fields = np.array([t.fields for t in workload.tables], dtype=np.float64)
        self.dims = np.array([t.dim for t in workload.tables], dtype=np.float64)
        self.row_counts = np.array([t.rows for t in workload.tables], dtype=np.float64)
        if sharding == "twrw":
            per_node = cluster.fabric.ranks_per_node or 1
            self.group = per_node if n % per_node == 0 else 1  # ranks of a node share each of its tables' rows
            self.nodes = workers.reshape(n // self.group, self.group)
            self.table_node = place_shards(workload, len(self.nodes))[2]
            self.node_width = np.zeros(len(self.nodes))  # pooled values per sample of each node's tables
            np.add.at(self.node_width, self.table_node, self.fields * self.dims)
        elif sharding in ("tw", "cw"):
            self.shards = place_shards(workload, n, opts.column_shards if sharding == "cw" else 1,
                                       cluster.fabric.ranks_per_node)
        self.lengths_bytes = self.lengths() * workload.batch_per_worker * LENGTH_BYTES

    def lengths(self) -> np.ndarray:
        """Lengths per sample each worker sends each owner (w-major): the fields of the tables (or blocks)
        it holds rows of (a KeyedJaggedTensor's lengths for them)."""
        n = len(self.cluster.workers)
        if self.sharding == "rw":
            return np.full(n * n, self.fields.sum())
        per_owner = np.zeros(n)
        if self.sharding == "twrw":
            for t, node in enumerate(self.table_node):
                per_owner[np.searchsorted(self.cluster.workers, self.nodes[node])] += self.fields[t]
        else:
            np.add.at(per_owner, self.shards[2], self.fields[self.shards[0]])
        return np.tile(per_owner, n)

    def input_dist(self, dem: Demand) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(IDs bytes w -> o flattened w-major, lookups per (worker, table), rows touched per (worker, table))."""
        n, n_tables = len(self.cluster.workers), len(self.workload.tables)
        key = self.workload.id_bytes
        if self.sharding == "rw":
            ids_to_owner, owned_lookups = dem.split_totals(n, unique=False)
            return ids_to_owner.ravel() * key, owned_lookups, dem.owned_global(n)
        ids, own_lookups, own_rows = np.zeros((n, n)), np.zeros((n, n_tables)), np.zeros((n, n_tables))
        if self.sharding == "twrw":
            by_row = dem.split(self.group, unique=False)  # (worker, local rank, table): row buckets of a node
            rows = dem.owned_global(self.group)
            for t, node in enumerate(self.table_node):
                ranks = np.searchsorted(self.cluster.workers, self.nodes[node])
                ids[:, ranks] += by_row[:, :, t]
                own_lookups[ranks, t] = by_row[:, :, t].sum(axis=0)
                own_rows[ranks, t] = rows[:, t]
            return ids.ravel() * key, own_lookups, own_rows
        for t, width, o in zip(*self.shards, strict=True):
            frac = width / self.dims[t]  # a column block moves that fraction of each row's bytes
            ids[:, o] += dem.lookups[t]
            own_lookups[o, t] += n * dem.lookups[t] * frac
            own_rows[o, t] += dem.unique_global[t] * frac
        return ids.ravel() * key, own_lookups, own_rows

    def output_dist(self, graph: StepGraph, deps: tuple[int, ...], step: int, backward: bool) -> tuple[int, ...]:
        """Pooled rows to the workers owning the samples (or their gradients back, ``backward``)."""
        workload, cluster = self.workload, self.cluster
        workers, b, s = cluster.workers, workload.batch_per_worker, workload.comm_bytes
        n = len(workers)
        category = "sparse.pooled_grad" if backward else "sparse.pooled"
        name = "output_dist.grad" if backward else "output_dist"
        if self.sharding == "rw":
            size = n * b * float((self.fields * self.dims).sum()) * s
            return collective(graph, cluster, category, "allgather" if backward else "reducescatter", size, workers,
                              deps, step, name=name)
        if self.sharding == "twrw":
            return self._twrw_output(graph, deps, step, backward, category, name)
        src, dst, values = self.cross()
        if backward:
            src, dst = dst, src
        return exchange(graph, name, category, src, dst, values * b * s, deps, step,
                        cost=cluster.collective_costs.get("alltoall"))

    def cross(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The forward output distribution's messages across owners (tw, cw; twrw: across nodes): (sender,
        receiver, pooled values per sample); backward sends the same back.

        tw, cw: owner o returns every worker w the values of the tables (blocks) it holds. twrw: local rank i
        of node o sends local rank i of every node its node's width (TorchRec's TwRw dist)."""
        if self.sharding == "twrw":
            n_nodes, group = self.nodes.shape
            dst = np.concatenate([np.tile(self.nodes[:, i], n_nodes) for i in range(group)])
            src = np.concatenate([np.repeat(self.nodes[:, i], n_nodes) for i in range(group)])
            return src, dst, np.concatenate([np.repeat(self.node_width, n_nodes) for _ in range(group)])
        n = len(self.cluster.workers)
        pooled = np.zeros((n, n))  # values owner o returns to worker w per sample
        for t, width, o in zip(*self.shards, strict=True):
            pooled[:, o] += self.fields[t] * width
        return self.dst, self.src, pooled.ravel()

    def _twrw_output(self, graph: StepGraph, deps: tuple[int, ...], step: int, backward: bool, category: str,
                     name: str) -> tuple[int, ...]:
        """Reduce-scatter of B x width inside each node, then rail-aligned all-to-all across nodes: local
        rank i of a node holds the samples of every worker with local index i (TorchRec's TwRw dist);
        backward runs it in reverse (all-to-all, then all-gather inside the node)."""
        workload, cluster = self.workload, self.cluster
        b, s = workload.batch_per_worker, workload.comm_bytes
        n_nodes, group = self.nodes.shape
        src, dst, values = self.cross()  # rank (o, i) <-> every worker (o', i): b x width[o] values each
        sizes = values * b * s

        def inside(deps_in: tuple[int, ...]) -> tuple[int, ...]:
            out: tuple[int, ...] = ()
            for node, ranks in enumerate(self.nodes):
                out += collective(graph, cluster, category, "allgather" if backward else "reducescatter",
                                  n_nodes * group * b * self.node_width[node] * s, ranks, deps_in, step,
                                  name=f"{name}.intra")
            return out or deps_in

        a2a = cluster.collective_costs.get("alltoall")
        if backward:
            return inside(exchange(graph, f"{name}.cross", category, dst, src, sizes, deps, step, cost=a2a))
        return exchange(graph, f"{name}.cross", category, src, dst, sizes, inside(deps), step, cost=a2a)

    def memory(self, batch_per_worker: float | np.ndarray) -> dict[str, float | np.ndarray]:
        """A worker's memory (bytes) by component at ``batch_per_worker`` samples (one or an array): dense
        copies, activations, and its largest shard of the tables with optimizer state."""
        slots = self.workload.optimizer_slots
        return worker_memory(self.workload, 2 + slots, batch_per_worker=batch_per_worker,
                             sparse_shard=self.max_shard_bytes() * (1 + slots))

    def max_shard_bytes(self) -> float:
        """The most table bytes any worker holds."""
        workload = self.workload
        n, s = len(self.cluster.workers), workload.dtype_bytes
        if self.sharding == "rw":
            return workload.sparse_bytes / n
        if self.sharding == "twrw":
            per_node = np.zeros(len(self.nodes))
            np.add.at(per_node, self.table_node, self.row_counts * self.dims * s)
            return float(per_node.max()) / self.group
        table, width, owner = self.shards
        held = np.zeros(n)
        np.add.at(held, owner, self.row_counts[table] * width * s)
        return float(held.max())


def _lower(sharding: str) -> Callable[..., Lowered]:
    def lower(workload: Workload, cluster: Cluster, steps: int, options: StrategyOptions) -> Lowered:
        return lower_sharded(workload, cluster, sharding, steps, options.sharding)

    return lower


def _closed_form(sharding: str) -> Callable[[Terms], dict[str, np.ndarray]]:
    def closed_form(t: Terms) -> dict[str, np.ndarray]:
        """tw / cw / rw / twrw per batch size b, per worker w (configs x workers): the IDs' lengths and the IDs
        to the row owners (T_len + T_ids, alongside the host time h), each owner's lookups (p_w), the output
        distribution (inside a node, a reduce-scatter R_j of node j's tables' B x width values, j = node(w);
        across nodes or owners, an all-to-all X), dense forward and backward (f + g), the gradients back (X',
        then an all-gather A_j inside node j); then each owner's embedding backward (e_w) while the dense
        gradients are all-reduced (T_d, after every node's all-gather), and the dense update (u):
        ``end_w = max(T_len + T_ids, h) + max_v (p_v + R_node(v)) + X + f + g + X' + max(A_j + e_w,
        max_j A_j + T_d) + u``; the step is the latest worker's end, and its compute ``h + p_w + f + g + e_w +
        u``. tw and cw: nodes of one worker, nothing inside them (R = A = 0); rw: one node of every worker
        (X = X' = 0); twrw: the fabric's nodes. Every exchange's sizes grow with b: IDs, lookups and lengths
        from the plan at one sample, rows touched from the global batch's expected distinct IDs."""
        w, cluster, b, n, wire = t.workload, t.cluster, t.b, t.n, t.wire
        plan = _Plan(w, cluster, sharding, t.options.sharding)
        per_sample = np.array([table.lookups_per_sample for table in w.tables], dtype=np.float64)
        ids, lookups, rows = plan.input_dist(Demand(per_sample, np.ones((n, len(per_sample))),
                                                    np.ones(len(per_sample))))
        # owners holding the same shares cost the same: price each distinct one (few: tw's table-less ranks)
        shares, owner = np.unique(np.concatenate([lookups, rows], axis=1), axis=0, return_inverse=True)
        lookups = b[:, None, None] * shares[:, :len(per_sample)]
        rows = t.unique(n * t.lookups)[:, None, :] * shares[:, len(per_sample):]  # the global batch's distinct IDs
        pool = costs.lookup_s(w, t.device, lookups, rows)[:, owner.ravel()]
        pool_back = costs.embedding_backward_s(w, t.device, lookups, rows)[:, owner.ravel()]
        lengths_s, lengths_wire = t.exchange_scaled(plan.src, plan.dst, plan.lengths() * LENGTH_BYTES, b)
        ids_s, ids_wire = t.exchange_scaled(plan.src, plan.dst, ids, b)
        if sharding == "twrw":
            nodes, widths = plan.nodes, plan.node_width
        elif sharding == "rw":
            nodes, widths = cluster.workers[None, :], np.array([float((plan.fields * plan.dims).sum())])
        else:
            nodes, widths = cluster.workers[:, None], np.zeros(n)

        def inside(op: str) -> tuple[np.ndarray, np.ndarray]:
            """(time s of each worker's node's ``op``, configs x workers; bytes of them all)."""
            priced = [t.collective(op, n * width * b * wire, ranks) for ranks, width in zip(nodes, widths, strict=True)]
            return (np.repeat(np.stack([time_s for time_s, _ in priced], axis=1), nodes.shape[1], axis=1),
                    sum(sent for _, sent in priced))

        (scatter, scatter_wire), (gather, gather_wire) = inside("reducescatter"), inside("allgather")
        if sharding == "rw":
            out_s = out_wire = back_s = back_wire = np.zeros_like(b)
        else:
            src, dst, values = plan.cross()
            (out_s, out_wire), (back_s, back_wire) = (t.exchange_scaled(src, dst, values * wire, b),
                                                      t.exchange_scaled(dst, src, values * wire, b))
        forward, backward = t.dense_pass_s()
        (dense_s, dense_wire), host, update = t.dense_allreduce, t.host_s, t.dense_update_s
        trained = (np.maximum(lengths_s + ids_s, host) + (pool + scatter).max(axis=1) + out_s + forward + backward
                   + back_s)
        reduced = gather.max(axis=1) + dense_s if w.dense_params else np.zeros_like(b)  # the all-reduce's end
        tail = np.maximum(gather + pool_back, reduced[:, None])
        critical = (np.arange(len(b)), np.argmax(tail, axis=1))  # the first of the workers ending last
        busy = host + pool[critical] + forward + backward + pool_back[critical] + update
        wire_bytes = lengths_wire + ids_wire + scatter_wire + gather_wire + out_wire + back_wire + dense_wire
        return t.result(trained + tail.max(axis=1) + update, busy, wire_bytes, plan.memory(b))

    return closed_form


STRATEGIES = tuple(Strategy(name, description, "recommender", _lower(name), options="sharding",
                            closed_form=_closed_form(name))
                   for name, description in (
    ("tw", "TorchRec table-wise sharding (all-to-all of IDs and pooled embeddings)"),
    ("cw", "TorchRec column-wise sharding"),
    ("rw", "TorchRec row-wise sharding (all-to-all of IDs, reduce-scatter of pooled embeddings)"),
    ("twrw", "TorchRec table-wise-row-wise sharding (tables on nodes, rows over a node's GPUs)")))
