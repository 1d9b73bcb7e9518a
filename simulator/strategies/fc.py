"""Extreme classification (docs/CLASSIFICATION.md): a data-parallel backbone feeding a C-class FC softmax.

Notation: N workers, b samples per worker, B = N b, D feature dim, C classes, M backbone parameters, s the
workload's bytes per stored value (``dtype_bytes``), s_c bytes per value on the wire (``wire_bytes``: the
workload's ``comm_bytes``, 2 with ``fp16_comm``). GEMMs run at the peak of the workload's ``compute_dtype``;
features and backbone activations are ``activation_value_bytes`` each, logits stay s (softmax in fp32, as
autocast runs it). Per step:

- ``dp-fc``: the FC layer replicated; ``fc.allreduce`` of its gradient (D C s_c).
- ``ps-fc``: FC rows on P servers (contiguous class ranges); ``fc.pull`` of all C rows to every worker
  before its forward, ``fc.push`` of their gradients after its backward (BSP: the next pull waits for the
  servers' update).
- ``mp-fc``: the FC layer sharded by class (C / N rows per worker); ``fc.labels`` (all-gather, B x 8
  bytes), ``fc.features`` (all-gather, B D s_c), ``fc.softmax`` (two all-reduces of B fp32 values: the
  row max, then the row sum of exponentials), ``fc.feature_grad`` (reduce-scatter, B D s_c).
- ``mp-fc-knn``: as ``mp-fc`` with KNN softmax, plus ``knn.rebuild``.

Every strategy also all-reduces the backbone's gradient (``backbone.allreduce``, M s_c), or, with
``topk_ratio`` < 1, all-gathers each worker's top ceil(ratio x M) values with int32 indices
(``backbone.topk``). With ``overlap`` the backbone's backward runs in buckets of ``bucket_bytes`` (as DDP)
and each bucket's reduction starts when its part of the backward is done.

KNN softmax (``mp-fc-knn``): a step scores only the active classes, each label and its K nearest classes
(by the FC rows' inner product): A = the expected distinct classes among B (K + 1) uniform draws over C
(at most min(C, B (K + 1))), A / N per worker. The class-neighbour graph is rebuilt every T steps: each
worker receives the other workers' FC rows ((N - 1)/N x C D s_c, the bytes of an all-gather; passed around
a ring shard by shard, so one shard is held at a time), finds its C / N classes' K neighbours among
``knn_candidates`` classes each (2 C/N x candidates x D FLOPs; default all C: brute force) and
all-gathers the lists (C K int64), so every worker holds the whole graph. The rebuild is charged 1/T per
step (its bytes and time averaged over T steps, what a long run sees).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from simulator.compute import roofline
from simulator.core.stepgraph import StepGraph
from simulator.errors import SpecError
from simulator.options import FCOptions, StrategyOptions
from simulator.strategies.base import Cluster, Lowered, Strategy, collective, exchange, host_op
from workloads.classification import ClassificationWorkload
from workloads.ids import expected_unique

FC_STRATEGIES = ("dp-fc", "ps-fc", "mp-fc", "mp-fc-knn")
LABEL_BYTES = 8  # int64 class index, as torch's cross-entropy takes it
NEIGHBOUR_BYTES = 8  # int64 class index in the neighbour graph
SOFTMAX_BYTES = 4  # the row max and row sum stay fp32
INDEX_BYTES = 4  # int32 index of a top-k gradient value
SOFTMAX_PASSES = 3  # max, exp-and-sum, normalize: memory passes over the logits
ACTIVATION_TRAFFIC = 2  # backbone activation bytes moved per byte kept for backward (written, then read)


def wire_bytes(workload: ClassificationWorkload, options: FCOptions) -> int:
    """Bytes per value on the wire: 2 with ``fp16_comm``, else the workload's ``comm_bytes``."""
    return 2 if options.fp16_comm else workload.comm_bytes


def active_classes(workload: ClassificationWorkload, workers: int, knn_k: int) -> float:
    """Expected classes a KNN-softmax step scores over all workers: distinct among B (K + 1) uniform draws."""
    return expected_unique(workload.classes, workers * workload.batch_per_worker * (knn_k + 1))


def scored_by_worker(workload: ClassificationWorkload, strategy: str, workers: int,
                     options: FCOptions) -> tuple[float, float]:
    """(samples, classes) one worker scores per step: its batch against all C (``dp-fc``, ``ps-fc``), the
    global batch against its C / N classes (``mp-fc``) or its share A / N of the active ones (``mp-fc-knn``)."""
    if strategy in ("dp-fc", "ps-fc"):
        return workload.batch_per_worker, float(workload.classes)
    big_b = workers * workload.batch_per_worker
    if strategy == "mp-fc-knn":
        return big_b, active_classes(workload, workers, options.knn_k) / workers
    return big_b, workload.classes / workers


def check_options(workload: ClassificationWorkload, options: FCOptions) -> None:
    if options.knn_k >= workload.classes:
        raise SpecError("fc.knn_k", options.knn_k,
                        f"allowed: 1 to {workload.classes - 1} (fewer neighbours than the {workload.classes} classes)")


def lower_fc(workload: ClassificationWorkload, cluster: Cluster, strategy: str, steps: int = 1,
             options: FCOptions | None = None) -> Lowered:
    """The step graph of ``steps`` steps of ``strategy`` (one of FC_STRATEGIES) and the memory per device."""
    opts = options or FCOptions()
    check_options(workload, opts)
    workers, device = cluster.workers, cluster.device
    n, b, s = len(workers), workload.batch_per_worker, workload.dtype_bytes
    d, c, a = workload.feature_dim, workload.classes, workload.activation_value_bytes
    big_b, wire = n * b, wire_bytes(workload, opts)
    dtype = workload.compute_dtype
    servers = cluster.servers if strategy == "ps-fc" else np.zeros(0, dtype=np.int64)
    if strategy == "ps-fc" and not len(servers):
        raise ValueError("the ps-fc strategy needs at least one server")
    graph = StepGraph(cluster.fabric.n_hosts, workers, servers, steps)

    samples, scored = scored_by_worker(workload, strategy, n, opts)  # the rows scored are the rows updated
    logits = samples * scored
    fc_flops = 2.0 * samples * d * scored
    fc_act = samples * d * a + logits * s  # features read, logits written
    fc_fwd_s = roofline.dense_forward_s(device, fc_flops, scored * d * s, fc_act, dtype)
    fc_bwd_s = roofline.dense_backward_s(device, fc_flops, scored * d * s, fc_act, dtype)
    softmax_s = roofline.op_time_s(device, 0.0, SOFTMAX_PASSES * logits * s)
    # activation traffic: each kept activation is written by its layer and read by the next
    bb_flops = b * workload.backbone_flops_per_sample
    bb_act = ACTIVATION_TRAFFIC * b * workload.activation_bytes_per_sample
    bb_fwd_s = roofline.dense_forward_s(device, bb_flops, workload.backbone_bytes, bb_act, dtype)
    bb_bwd_s = roofline.dense_backward_s(device, bb_flops, workload.backbone_bytes, bb_act, dtype)
    update_s = roofline.dense_update_s(device, workload.backbone_params + scored * d, s, workload.optimizer_slots)
    rebuild_s = 0.0
    if strategy == "mp-fc-knn":  # search this worker's classes' neighbours among the candidates, 1/T per step
        candidates = min(c, opts.knn_candidates or c)
        search_s = roofline.op_time_s(device, 2.0 * (c / n) * candidates * d, c * d * s, dtype)
        rebuild_s = search_s / opts.knn_rebuild_steps

    p = len(servers)
    row_share = np.diff(c * np.arange(p + 1) // p).astype(np.float64) if p else np.zeros(0)  # class ranges
    previous_update: tuple[int, ...] = ()
    p2p = cluster.collective_costs.get("p2p")
    for k in range(steps):
        host_op(graph, workers, device, k)
        deps: tuple[int, ...] = ()
        if strategy == "ps-fc":  # BSP: pull the rows the servers updated last step
            src, dst = np.repeat(servers, n), np.tile(workers, p)
            deps = exchange(graph, "fc.pull", "fc.pull", src, dst, np.repeat(row_share * d * wire, n),
                            previous_update, k, cost=p2p)
        if strategy == "mp-fc-knn":
            rebuild = collective(graph, cluster, "knn.rebuild", "allgather",
                                 c * d * wire / opts.knn_rebuild_steps, workers, (), k, name="knn.weights")
            search = graph.compute("knn.search", "compute.knn", workers, rebuild_s, deps=rebuild, step=k)
            deps = collective(graph, cluster, "knn.rebuild", "allgather",
                              c * opts.knn_k * NEIGHBOUR_BYTES / opts.knn_rebuild_steps, workers, (search,), k,
                              name="knn.graph")
        features = (graph.compute("backbone.forward", "compute.forward", workers, bb_fwd_s, deps=deps, step=k),)
        if strategy in ("mp-fc", "mp-fc-knn"):
            labels = collective(graph, cluster, "fc.labels", "allgather", big_b * LABEL_BYTES, workers, (), k)
            features = collective(graph, cluster, "fc.features", "allgather", big_b * d * wire, workers,
                                  features, k) + labels
        fc = graph.compute("fc.forward", "compute.forward", workers, fc_fwd_s, deps=features, step=k)
        if strategy in ("mp-fc", "mp-fc-knn"):
            row_max = collective(graph, cluster, "fc.softmax", "allreduce", big_b * SOFTMAX_BYTES, workers,
                                 (fc,), k, name="fc.softmax.max")
            row_sum = collective(graph, cluster, "fc.softmax", "allreduce", big_b * SOFTMAX_BYTES, workers,
                                 (graph.compute("softmax.exp", "compute.forward", workers, softmax_s, deps=row_max,
                                                step=k),), k, name="fc.softmax.sum")
            fc_bwd = graph.compute("fc.backward", "compute.backward", workers, fc_bwd_s, deps=row_sum, step=k)
            grads = collective(graph, cluster, "fc.feature_grad", "reducescatter", big_b * d * wire, workers,
                               (fc_bwd,), k)
        else:
            grads = (graph.compute("fc.backward", "compute.backward", workers, softmax_s + fc_bwd_s, deps=(fc,),
                                   step=k),)
        fc_reduced = grads
        if strategy == "dp-fc":
            fc_reduced = collective(graph, cluster, "fc.allreduce", "allreduce", c * d * wire, workers, grads, k)
        elif strategy == "ps-fc":
            src, dst = np.tile(workers, p), np.repeat(servers, n)
            fc_reduced = exchange(graph, "fc.push", "fc.push", src, dst, np.repeat(row_share * d * wire, n), grads, k,
                                  cost=p2p)
        reduced = _backbone_reduction(graph, cluster, workload, opts, bb_bwd_s, wire, grads, k)
        graph.compute("update", "compute.update", workers, update_s,
                      deps=reduced + (fc_reduced if strategy != "ps-fc" else ()), step=k)
        if strategy == "ps-fc":  # servers apply the N workers' gradients of their rows
            server_s = roofline.ps_server_update_s(cluster.server_device or device, row_share * n, d * s,
                                                  workload.optimizer_slots)
            previous_update = (graph.compute("server.update", "server.update", servers, server_s,
                                             deps=fc_reduced, step=k, stream="server", role="server"),)
    return Lowered(graph, fc_memory(workload, strategy, n, p, opts))


def _backbone_reduction(graph: StepGraph, cluster: Cluster, workload: ClassificationWorkload, opts: FCOptions,
                        backward_s: float, wire: int, deps: tuple[int, ...], step: int) -> tuple[int, ...]:
    """The backbone's backward and the reduction of its gradient, in buckets when overlapping; returns the
    ops the update waits for."""
    workers = cluster.workers
    total_bytes = workload.backbone_params * wire
    buckets = max(1, math.ceil(total_bytes / opts.bucket_bytes)) if opts.overlap else 1
    n, done = len(workers), []
    for _ in range(buckets):
        part = graph.compute("backbone.backward", "compute.backward", workers, backward_s / buckets, deps=deps,
                             step=step)
        deps = (part,)
        values = workload.backbone_params / buckets
        if opts.topk_ratio < 1:
            select = graph.compute("topk.select", "compute.topk", workers,
                                   roofline.op_time_s(cluster.device, 0.0, 2 * values * workload.dtype_bytes),
                                   deps=(part,), step=step)
            sent = math.ceil(opts.topk_ratio * values) * (wire + INDEX_BYTES)
            done += collective(graph, cluster, "backbone.topk", "allgather", n * sent, workers, (select,), step)
        else:
            done += collective(graph, cluster, "backbone.allreduce", "allreduce", values * wire, workers, (part,),
                               step)
    return tuple(done) or deps


def fc_memory(workload: ClassificationWorkload, strategy: str, workers: int, servers: int,
              options: FCOptions) -> dict[str, dict[str, float]]:
    """Bytes per device by component: a worker's (and a PS server's host DRAM for ``ps-fc``).

    ``backbone``: weights, gradients, optimizer state; ``activations``: the backbone's, for backward; ``fc``:
    the FC rows held (with gradients and optimizer state where they are updated); ``logits``: the scores
    held at once (samples x classes scored; their gradient is computed in place); ``features``: gathered
    features and their gradient; ``knn_graph``: the neighbour lists of every class (int64); ``knn_buffer``:
    one FC shard received during a rebuild. Weights, gradients, optimizer state and logits are ``dtype_bytes``
    per value (fp32 masters under mixed precision); activations and features ``activation_value_bytes``.
    """
    s, slots, d, c = workload.dtype_bytes, workload.optimizer_slots, workload.feature_dim, workload.classes
    samples, scored = scored_by_worker(workload, strategy, workers, options)
    worker = {"backbone": workload.backbone_bytes * (2 + slots),
              "activations": workload.batch_per_worker * workload.activation_bytes_per_sample,
              "logits": samples * scored * s}
    if strategy == "dp-fc":
        worker["fc"] = c * d * s * (2 + slots)
    elif strategy == "ps-fc":
        worker["fc"] = c * d * s * 2  # pulled rows and their gradients
    else:
        worker |= {"fc": c / workers * d * s * (2 + slots),
                   "features": 2 * samples * d * workload.activation_value_bytes}
        if strategy == "mp-fc-knn":  # the whole graph, and one received FC shard during a rebuild
            worker |= {"knn_graph": c * options.knn_k * NEIGHBOUR_BYTES, "knn_buffer": c / workers * d * s}
    memory = {"worker": worker}
    if strategy == "ps-fc":
        memory["server"] = {"fc_shard": c * d * s * (1 + slots) / servers}
    return memory


def _lower(strategy: str) -> Callable[..., Lowered]:
    def lower(workload: ClassificationWorkload, cluster: Cluster, steps: int, options: StrategyOptions) -> Lowered:
        return lower_fc(workload, cluster, strategy, steps, options.fc)

    return lower


STRATEGIES = tuple(Strategy(name, description, "classification", _lower(name), needs_servers=name == "ps-fc",
                            options="fc") for name, description in (
    ("dp-fc", "extreme classification: FC replicated, its gradient all-reduced"),
    ("ps-fc", "extreme classification: FC rows on parameter servers, pulled and pushed every step"),
    ("mp-fc", "extreme classification: FC sharded by class, features all-gathered, distributed softmax"),
    ("mp-fc-knn", "mp-fc with KNN softmax: only each label's nearest classes are scored")))
