"""Distributed Equivalent Substitution: sub-operators on the workers owning the rows (docs/TRAINING_MODEL.md).

Rows are hash-partitioned over the N workers (``shard_of``); dense weights are replicated. Per step, with
B = N b samples, m IDs per sample and r partial values per sample (``Workload.partial_width``):
- ``des`` (all-reduce): ``des.ids`` all-gathers the global batch's IDs (B m ``id_bytes``; none with
  ``input=replicated``); each worker computes the partials of its rows for all B samples; ``des.partials``
  all-reduces B r values; after the dense forward/backward on its b samples, ``des.partials_grad``
  all-gathers the B r partial gradients; each worker updates its own rows; ``dense.allreduce`` sums P_d.
- ``des-rs``: the forward sum is a reduce-scatter (each worker keeps only its b rows): half the bytes.
- ``des-a2a``: IDs go to their owners by all-to-all (each worker's b m IDs, by owner), after their lengths
  (``des.lengths``: b F int32 counts to every owner, a KeyedJaggedTensor's), owners send each
  worker the b r partial rows of its samples by all-to-all, and backward sends the b r partial gradients
  back to every owner (owners kept the IDs). This is TorchRec's row-wise sharding with pooled outputs.
Sparse rows and their gradients never cross the network; only IDs and partial results do. Values on the
wire are ``comm_bytes`` each; partial buffers in memory ``activation_value_bytes``.

``partial`` (docs/TRAINING_MODEL.md, "DES partials"): ``fields`` sums r = ``partial_width`` values per sample (the
fields' pooled vectors); ``first-layer`` substitutes the first dense layer, linear in them: each owner
multiplies its partial by that layer's embedding columns W (replicated) for all B samples, so r =
``first_layer_partial_width`` (h1, plus DeepFM's FM and W&D's wide values), the worker's dense forward
skips those columns, and the owners' backward adds the gradients of W (summed by ``dense.allreduce``) and
of their partials; ``auto`` takes the smaller r (fields on a tie) where first-layer is exact.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from simulator.compute import roofline
from simulator.core.stepgraph import StepGraph
from simulator.options import DESOptions, StrategyOptions
from simulator.strategies import costs
from simulator.strategies.base import (
    LENGTH_BYTES,
    Cluster,
    Lowered,
    Strategy,
    collective,
    demand,
    exchange,
    host_op,
    ids_op,
    worker_memory,
)
from simulator.strategies.closed import Terms
from workloads import Workload

VARIANTS = ("des", "des-rs", "des-a2a")


def lower_des(workload: Workload, cluster: Cluster, steps: int = 1, options: DESOptions | None = None,
              variant: str = "des") -> Lowered:
    """The DES step graph (``variant``: des | des-rs | des-a2a) of ``steps`` steps on the cluster's workers."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown DES variant {variant!r}")
    opts = options or DESOptions()
    workers = cluster.workers
    n = len(workers)
    s, key = workload.comm_bytes, workload.id_bytes  # s: bytes per value on the wire
    mode = workload.des_partial(opts.partial)
    first_layer = mode == "first-layer"
    b, r, m = workload.batch_per_worker, workload.des_partial_width(mode), workload.ids_per_sample
    big_b = n * b
    partial_bytes = big_b * r * s  # B x r values
    lengths_bytes = b * workload.n_fields * LENGTH_BYTES  # des-a2a: per (sample, field), to every owner
    dense_bytes = workload.dense_params * s
    graph = StepGraph(cluster.fabric.n_hosts, workers, steps=steps)
    device = cluster.device
    fwd_s = costs.dense_forward_s(workload, device, b, first_layer)
    bwd_s = costs.dense_backward_s(workload, device, b, first_layer)
    # the owners' first-layer partial for all B samples, and its backward (W's gradient and the partial's)
    layer_fwd_s = costs.first_layer_forward_s(workload, device, big_b) if first_layer else 0.0
    layer_bwd_s = costs.first_layer_backward_s(workload, device, big_b) if first_layer else 0.0
    src, dst = np.repeat(workers, n), np.tile(workers, n)
    stats = demand(workload, n) if workload.ids == "expected" else None
    a2a = cluster.collective_costs.get("alltoall")  # des-a2a's exchanges are all-to-alls
    for k in range(steps):
        host_op(graph, workers, device, k)
        dem = stats or demand(workload, n, k)
        # IDs each requester sends each owner; IDs of the global batch each owner serves, per table.
        ids_to_owner, owned_lookups = dem.split_totals(n, unique=False)
        owned_rows = dem.owned_global(n)

        if variant == "des-a2a" and opts.input == "gathered":  # route its b m IDs: lengths, then the IDs
            route = ids_op(graph, "des.route", workers, costs.ids_s(device, b * m), (), k)
            lengths = exchange(graph, "des.lengths", "des.lengths", src, dst, np.full(n * n, lengths_bytes), route,
                               k, cost=a2a)
            held = exchange(graph, "des.ids", "des.ids", src, dst, ids_to_owner.ravel() * key, lengths, k, cost=a2a)
        else:  # every worker sees the global batch's B m IDs (all-gathered, or read) and finds those it holds
            ids = () if opts.input == "replicated" else collective(graph, cluster, "des.ids", "allgather",
                                                                   big_b * m * key, workers, (), k)
            held = ids_op(graph, "des.held", workers, costs.ids_s(device, big_b * m), ids, k)
        partial = graph.compute("des.partial_forward", "compute.partial", workers,
                                costs.lookup_s(workload, device, owned_lookups, owned_rows, big_b) + layer_fwd_s,
                                deps=held, step=k)
        if variant == "des":
            summed = collective(graph, cluster, "des.partials", "allreduce", partial_bytes, workers,
                                (partial,), k)
        elif variant == "des-rs":
            summed = collective(graph, cluster, "des.partials", "reducescatter", partial_bytes, workers,
                                (partial,), k)
        else:  # owner -> requester: the b x r partial rows of the requester's samples
            summed = exchange(graph, "des.partials", "des.partials", dst, src, np.full(n * n, b * r * s),
                              (partial,), k, cost=a2a)
        fwd = graph.compute("forward", "compute.forward", workers, fwd_s, deps=summed, step=k)
        bwd = graph.compute("backward", "compute.backward", workers, bwd_s, deps=(fwd,), step=k)
        if variant == "des-a2a":
            grads = exchange(graph, "des.partials_grad", "des.partials_grad", src, dst, np.full(n * n, b * r * s),
                             (bwd,), k, cost=a2a)
        else:
            grads = collective(graph, cluster, "des.partials_grad", "allgather", partial_bytes,
                               workers, (bwd,), k)
        graph.compute("des.partial_backward", "compute.update", workers,
                      costs.embedding_backward_s(workload, device, owned_lookups, owned_rows, big_b) + layer_bwd_s,
                      deps=grads, step=k)
        reduced = collective(graph, cluster, "dense.allreduce", "allreduce", dense_bytes, workers,
                             (bwd,), k)
        graph.compute("dense.update", "compute.update", workers,
                      costs.dense_update_s(workload, device, workload.dense_params), deps=reduced, step=k)

    return Lowered(graph, des_memory(workload, n, variant, opts, b), {"des_partial": mode, "partial_width": r})


def des_memory(workload: Workload, workers: int, variant: str, options: DESOptions,
               batch_per_worker: float | np.ndarray) -> dict[str, dict[str, float | np.ndarray]]:
    """A DES worker's memory (bytes) by component, for one batch size or an array of them (partials: B x r
    values, sent and summed, with r as ``options.partial`` makes it)."""
    b, s, key = batch_per_worker, workload.activation_value_bytes, workload.id_bytes
    r, m = workload.des_partial_width(workload.des_partial(options.partial)), workload.ids_per_sample
    buffers = {"sparse_shard": workload.sparse_bytes * (1 + workload.optimizer_slots) / workers,
               "partials": 2.0 * workers * b * r * s,
               "ids": workers * b * m * key if variant != "des-a2a" or options.input == "replicated" else b * m * key}
    return {"worker": worker_memory(workload, 2 + workload.optimizer_slots, batch_per_worker=b, **buffers)}


def _lower(variant: str) -> Callable[..., Lowered]:
    def lower(workload: Workload, cluster: Cluster, steps: int, options: StrategyOptions) -> Lowered:
        return lower_des(workload, cluster, steps, options.des, variant=variant)

    return lower


def _closed_form(variant: str) -> Callable[[Terms], dict[str, np.ndarray]]:
    def closed_form(t: Terms) -> dict[str, np.ndarray]:
        """des / des-rs / des-a2a per batch size: IDs all-gathered (T_ids, alongside the host time h) and the
        global batch's held (c_h) -> partials of the owned rows (c_pf) -> partials all-reduced, reduce-scattered
        or sent to their samples' workers by all-to-all (T_p) -> dense forward and backward (f + g) -> partial
        gradients all-gathered or sent back to every owner (T_g); then the owned rows' backward and update
        (c_pb) on the compute stream while the dense gradients are all-reduced (T_d); then the dense update
        (c_du): ``step = max(h, T_ids) + c_h + c_pf + T_p + f + g + T_g + max(c_pb, T_d) + c_du``. des-a2a
        with gathered input routes its own b m IDs (c_r) after h, then sends their lengths and the IDs to
        their owners (T_ids: two exchanges), so ``max(h, T_ids) + c_h`` becomes ``h + c_r + T_ids`` (``max(h,
        T_ids)`` when routing costs nothing: the exchanges do not wait for it). With first-layer partials c_pf
        and c_pb add the owners' GEMM over the B samples and its backward, f and g lose its FLOPs, and T_p,
        T_g carry r = ``first_layer_partial_width`` values per sample."""
        w, device, n, b, opts = t.workload, t.device, t.n, t.b, t.options.des
        mode = w.des_partial(opts.partial)
        forward, backward = t.dense_pass_s(mode == "first-layer")
        dense_s, dense_wire = t.dense_allreduce
        owned_rows = t.unique(n * t.lookups) / n
        big_b = n * b
        partial_lookups = costs.lookup_s(w, device, t.lookups, owned_rows, big_b)
        partial_back = costs.embedding_backward_s(w, device, t.lookups, owned_rows, big_b)
        if mode == "first-layer":
            partial_back = partial_back + costs.first_layer_backward_s(w, device, big_b)
            partial_lookups = partial_lookups + costs.first_layer_forward_s(w, device, big_b)
        workers, host = t.cluster.workers, t.host_s
        src, dst = np.repeat(workers, n), np.tile(workers, n)
        if variant == "des-a2a" and opts.input == "gathered":
            held = roofline.id_handling_s(device, b * w.ids_per_sample)  # c_r: routing its own IDs
            lengths_s, lengths_wire = t.exchange(src, dst, b * w.n_fields * LENGTH_BYTES)
            ids_s, ids_wire = t.exchange(src, dst, t.lookups.sum(axis=1) / n * w.id_bytes)
            start = np.where(held > 0, host + held, 0.0)  # the exchanges wait for the routing op, if there is one
            ready = np.maximum(host + held, start + lengths_s + ids_s)
            ids_wire = lengths_wire + ids_wire
        else:
            ids_s, ids_wire = (np.zeros_like(b), np.zeros_like(b)) if opts.input == "replicated" else t.collective(
                "allgather", big_b * w.ids_per_sample * w.id_bytes, workers)
            held = roofline.id_handling_s(device, big_b * w.ids_per_sample)
            ready = np.maximum(host, ids_s) + held
        r = w.des_partial_width(mode)
        partial_bytes = big_b * r * t.wire
        if variant == "des-a2a":  # owner -> requester: the b x r partial rows of its samples, and back
            (sum_s, sum_wire), (grad_s, grad_wire) = (t.exchange(dst, src, b * r * t.wire),
                                                      t.exchange(src, dst, b * r * t.wire))
        else:
            sum_s, sum_wire = t.collective("allreduce" if variant == "des" else "reducescatter",
                                          partial_bytes, workers)
            grad_s, grad_wire = t.collective("allgather", partial_bytes, workers)
        dense_update = t.dense_update_s
        busy = host + held + partial_lookups + forward + backward + partial_back + dense_update
        step = (ready + partial_lookups + sum_s + forward + backward + grad_s + np.maximum(partial_back, dense_s)
                + dense_update)
        return t.result(step, busy, ids_wire + sum_wire + grad_wire + dense_wire,
                        des_memory(w, n, variant, opts, b)["worker"], des_partial=np.full(b.shape, mode),
                        partial_width=np.full(b.shape, r))

    return closed_form


STRATEGIES = tuple(Strategy(variant, description, "recommender", _lower(variant), options="des",
                            closed_form=_closed_form(variant))
                   for variant, description in (
    ("des", "Distributed Equivalent Substitution: all-gather IDs, all-reduce partial results"),
    ("des-rs", "DES with a reduce-scatter of partial results (half the forward bytes of des)"),
    ("des-a2a", "DES with IDs and partial results routed to and from owners by all-to-all")))
