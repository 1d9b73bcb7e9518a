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

Every strategy's analytical step is a fixed chain; its closed form over an array of batch sizes
(``_closed_form``, for ``simulator.run.closed_form``) sits beside the lowering and shares its op times
(``fc_seconds``), buckets (``backbone_buckets``) and class ranges (``class_ranges``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from simulator.compute import roofline
from simulator.compute.roofline import Device
from simulator.core.stepgraph import StepGraph
from simulator.errors import SpecError
from simulator.options import FCOptions, StrategyOptions
from simulator.strategies.base import Cluster, Lowered, Strategy, collective, exchange, host_op
from simulator.strategies.closed import Terms, memory_fits
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


def active_classes(workload: ClassificationWorkload, samples: float | np.ndarray, knn_k: int) -> float | np.ndarray:
    """Expected classes a KNN-softmax step scores over all workers: distinct among ``samples`` (B, the global
    batch; an array: one per batch size) x (K + 1) uniform draws."""
    draws = np.asarray(samples, dtype=np.float64) * (knn_k + 1)
    return np.array([expected_unique(workload.classes, x) for x in draws.ravel()]).reshape(draws.shape)[()]


def scored_by_worker(workload: ClassificationWorkload, strategy: str, workers: int, options: FCOptions,
                     batch_per_worker: float | np.ndarray | None = None) -> tuple[float | np.ndarray, ...]:
    """(samples, classes) one worker scores per step: its batch against all C (``dp-fc``, ``ps-fc``), the
    global batch against its C / N classes (``mp-fc``) or its share A / N of the active ones (``mp-fc-knn``);
    ``batch_per_worker`` b defaults to the workload's (an array: one per batch size)."""
    b = workload.batch_per_worker if batch_per_worker is None else batch_per_worker
    if strategy in ("dp-fc", "ps-fc"):
        return b, float(workload.classes)
    big_b = workers * b
    if strategy == "mp-fc-knn":
        return big_b, active_classes(workload, big_b, options.knn_k) / workers
    return big_b, workload.classes / workers


@dataclass(frozen=True)
class FCSeconds:
    """One worker's compute ops in a step (s; scalars, or arrays over batch sizes): the backbone's forward
    and backward, the FC layer's, the softmax's passes over the logits, the update (backbone and the FC rows
    scored) and ``mp-fc-knn``'s neighbour search (a rebuild's, 1/T per step; 0 otherwise)."""

    backbone_forward: float | np.ndarray
    backbone_backward: float | np.ndarray
    fc_forward: float | np.ndarray
    fc_backward: float | np.ndarray
    softmax: float | np.ndarray
    update: float | np.ndarray
    search: float


def fc_seconds(workload: ClassificationWorkload, device: Device, strategy: str, workers: int, options: FCOptions,
               batch_per_worker: float | np.ndarray) -> FCSeconds:
    """The compute ops of one worker's step by the roofline model, at batch size(s) ``batch_per_worker``."""
    b, s, d, c = batch_per_worker, workload.dtype_bytes, workload.feature_dim, workload.classes
    a, dtype = workload.activation_value_bytes, workload.compute_dtype
    samples, scored = scored_by_worker(workload, strategy, workers, options, b)  # the rows scored are updated
    logits = samples * scored
    fc_flops = 2.0 * samples * d * scored
    fc_act = samples * d * a + logits * s  # features read, logits written
    # activation traffic: each kept activation is written by its layer and read by the next
    bb_flops = b * workload.backbone_flops_per_sample
    bb_act = ACTIVATION_TRAFFIC * b * workload.activation_bytes_per_sample
    search_s = 0.0
    if strategy == "mp-fc-knn":  # search this worker's classes' neighbours among the candidates, 1/T per step
        candidates = min(c, options.knn_candidates or c)
        search_s = roofline.op_time_s(device, 2.0 * (c / workers) * candidates * d, c * d * s, dtype)
        search_s = search_s / options.knn_rebuild_steps
    return FCSeconds(
        backbone_forward=roofline.dense_forward_s(device, bb_flops, workload.backbone_bytes, bb_act, dtype),
        backbone_backward=roofline.dense_backward_s(device, bb_flops, workload.backbone_bytes, bb_act, dtype),
        fc_forward=roofline.dense_forward_s(device, fc_flops, scored * d * s, fc_act, dtype),
        fc_backward=roofline.dense_backward_s(device, fc_flops, scored * d * s, fc_act, dtype),
        softmax=roofline.op_time_s(device, 0.0, SOFTMAX_PASSES * logits * s),
        update=roofline.dense_update_s(device, workload.backbone_params + scored * d, s, workload.optimizer_slots),
        search=search_s)


class Buckets(NamedTuple):
    """How the backbone's gradient is reduced: ``count`` buckets (1 without overlap), each a collective ``op``
    of ``size_bytes`` in ``category``, after a top-k selection of ``select_s`` seconds (0: none, all-reduced)."""

    count: int
    category: str
    op: str
    size_bytes: float
    select_s: float


def backbone_buckets(workload: ClassificationWorkload, device: Device, workers: int, options: FCOptions,
                     wire: int) -> Buckets:
    """The backbone gradient's buckets: ``bucket_bytes`` each on the wire with ``overlap``, else one; all-reduced
    (``wire`` bytes per value), or with ``topk_ratio`` < 1 each worker's top ceil(ratio x values) all-gathered
    with int32 indices after a selection pass (read and write the bucket's values)."""
    total_bytes = workload.backbone_params * wire
    count = max(1, math.ceil(total_bytes / options.bucket_bytes)) if options.overlap else 1
    values = workload.backbone_params / count
    if options.topk_ratio < 1:
        sent = math.ceil(options.topk_ratio * values) * (wire + INDEX_BYTES)
        return Buckets(count, "backbone.topk", "allgather", workers * sent,
                       roofline.op_time_s(device, 0.0, 2 * values * workload.dtype_bytes))
    return Buckets(count, "backbone.allreduce", "allreduce", values * wire, 0.0)


def class_ranges(classes: int, servers: int) -> np.ndarray:
    """Classes (FC rows) each of ``servers`` PS servers holds: contiguous ranges of whole classes."""
    if servers < 1:
        raise ValueError("the ps-fc strategy needs at least one server")
    return np.diff(classes * np.arange(servers + 1) // servers).astype(np.float64)


def server_update_s(workload: ClassificationWorkload, cluster: Cluster, row_share: np.ndarray) -> np.ndarray:
    """Each ``ps-fc`` server's update (s): the N workers' gradients of its ``row_share`` rows applied on its CPU."""
    return roofline.ps_server_update_s(cluster.server_device or cluster.device, row_share * cluster.n_workers,
                                       workload.feature_dim * workload.dtype_bytes, workload.optimizer_slots)


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
    n, b = len(workers), workload.batch_per_worker
    d, c = workload.feature_dim, workload.classes
    big_b, wire = n * b, wire_bytes(workload, opts)
    servers = cluster.servers if strategy == "ps-fc" else np.zeros(0, dtype=np.int64)
    row_share = class_ranges(c, len(servers)) if strategy == "ps-fc" else np.zeros(0)
    graph = StepGraph(cluster.fabric.n_hosts, workers, servers, steps)
    sec = fc_seconds(workload, device, strategy, n, opts, b)
    p = len(servers)
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
            search = graph.compute("knn.search", "compute.knn", workers, sec.search, deps=rebuild, step=k)
            deps = collective(graph, cluster, "knn.rebuild", "allgather",
                              c * opts.knn_k * NEIGHBOUR_BYTES / opts.knn_rebuild_steps, workers, (search,), k,
                              name="knn.graph")
        features = (graph.compute("backbone.forward", "compute.forward", workers, sec.backbone_forward, deps=deps,
                                  step=k),)
        if strategy in ("mp-fc", "mp-fc-knn"):
            labels = collective(graph, cluster, "fc.labels", "allgather", big_b * LABEL_BYTES, workers, (), k)
            features = collective(graph, cluster, "fc.features", "allgather", big_b * d * wire, workers,
                                  features, k) + labels
        fc = graph.compute("fc.forward", "compute.forward", workers, sec.fc_forward, deps=features, step=k)
        if strategy in ("mp-fc", "mp-fc-knn"):
            row_max = collective(graph, cluster, "fc.softmax", "allreduce", big_b * SOFTMAX_BYTES, workers,
                                 (fc,), k, name="fc.softmax.max")
            row_sum = collective(graph, cluster, "fc.softmax", "allreduce", big_b * SOFTMAX_BYTES, workers,
                                 (graph.compute("softmax.exp", "compute.forward", workers, sec.softmax, deps=row_max,
                                                step=k),), k, name="fc.softmax.sum")
            fc_bwd = graph.compute("fc.backward", "compute.backward", workers, sec.fc_backward, deps=row_sum, step=k)
            grads = collective(graph, cluster, "fc.feature_grad", "reducescatter", big_b * d * wire, workers,
                               (fc_bwd,), k)
        else:
            grads = (graph.compute("fc.backward", "compute.backward", workers, sec.softmax + sec.fc_backward,
                                   deps=(fc,), step=k),)
        fc_reduced = grads
        if strategy == "dp-fc":
            fc_reduced = collective(graph, cluster, "fc.allreduce", "allreduce", c * d * wire, workers, grads, k)
        elif strategy == "ps-fc":
            src, dst = np.tile(workers, p), np.repeat(servers, n)
            fc_reduced = exchange(graph, "fc.push", "fc.push", src, dst, np.repeat(row_share * d * wire, n), grads, k,
                                  cost=p2p)
        reduced = _backbone_reduction(graph, cluster, workload, opts, sec.backbone_backward, wire, grads, k)
        graph.compute("update", "compute.update", workers, sec.update,
                      deps=reduced + (fc_reduced if strategy != "ps-fc" else ()), step=k)
        if strategy == "ps-fc":  # servers apply the N workers' gradients of their rows
            previous_update = (graph.compute("server.update", "server.update", servers,
                                             server_update_s(workload, cluster, row_share),
                                             deps=fc_reduced, step=k, stream="server", role="server"),)
    return Lowered(graph, fc_memory(workload, strategy, n, p, opts))


def _backbone_reduction(graph: StepGraph, cluster: Cluster, workload: ClassificationWorkload, opts: FCOptions,
                        backward_s: float, wire: int, deps: tuple[int, ...], step: int) -> tuple[int, ...]:
    """The backbone's backward and the reduction of its gradient, in buckets when overlapping; returns the
    ops the update waits for."""
    workers = cluster.workers
    buckets = backbone_buckets(workload, cluster.device, len(workers), opts, wire)
    done = []
    for _ in range(buckets.count):
        part = graph.compute("backbone.backward", "compute.backward", workers, backward_s / buckets.count, deps=deps,
                             step=step)
        deps = ready = (part,)
        if buckets.select_s:
            ready = (graph.compute("topk.select", "compute.topk", workers, buckets.select_s, deps=(part,),
                                   step=step),)
        done += collective(graph, cluster, buckets.category, buckets.op, buckets.size_bytes, workers, ready, step)
    return tuple(done) or deps


def fc_memory(workload: ClassificationWorkload, strategy: str, workers: int, servers: int, options: FCOptions,
              batch_per_worker: float | np.ndarray | None = None) -> dict[str, dict[str, float | np.ndarray]]:
    """Bytes per device by component: a worker's (and a PS server's host DRAM for ``ps-fc``), at the
    workload's batch size or ``batch_per_worker`` (an array: one per batch size).

    ``backbone``: weights, gradients, optimizer state; ``activations``: the backbone's, for backward; ``fc``:
    the FC rows held (with gradients and optimizer state where they are updated); ``logits``: the scores
    held at once (samples x classes scored; their gradient is computed in place); ``features``: gathered
    features and their gradient; ``knn_graph``: the neighbour lists of every class (int64); ``knn_buffer``:
    one FC shard received during a rebuild. Weights, gradients, optimizer state and logits are ``dtype_bytes``
    per value (fp32 masters under mixed precision); activations and features ``activation_value_bytes``.
    """
    s, slots, d, c = workload.dtype_bytes, workload.optimizer_slots, workload.feature_dim, workload.classes
    b = workload.batch_per_worker if batch_per_worker is None else batch_per_worker
    samples, scored = scored_by_worker(workload, strategy, workers, options, b)
    worker = {"backbone": workload.backbone_bytes * (2 + slots),
              "activations": b * workload.activation_bytes_per_sample,
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


def _overlap_s(start: np.ndarray, end: np.ndarray, other_start: np.ndarray, other_end: np.ndarray) -> np.ndarray:
    """Length (s) of the intersection of intervals [start, end] and [other_start, other_end], elementwise."""
    return np.maximum(0.0, np.minimum(end, other_end) - np.maximum(start, other_start))


def _closed_form(strategy: str) -> Callable[[Terms], dict[str, np.ndarray]]:
    def closed_form(t: Terms) -> dict[str, np.ndarray]:
        """One step per batch size b. Per worker: host time H, backbone forward F and backward G, FC forward
        f and backward g, the softmax's passes m, the update u (``fc_seconds``); T_x a collective or
        exchange x. The FC part's backward ends at e, and the comm stream is free again at c:

        - ``dp-fc``: ``e = H + F + f + m + g``, then the FC gradient's all-reduce: ``c = e + T_fc``;
        - ``ps-fc``: ``e = max(H, T_pull) + F + f + m + g``, then the push: ``c = e + T_push``;
        - ``mp-fc``: ``e = max(T_labels, H + F) + T_features + f + T_max + m + T_sum + g + T_grad``, ``c = e``;
        - ``mp-fc-knn``: the rebuild first, ``r = max(H, T_weights) + search + T_graph`` (labels wait for it on
          the comm stream, the forward on the compute stream), then ``e = r + max(T_labels, F) + T_features +
          ...`` as ``mp-fc``, ``c = e``.

        The backbone's k buckets (``backbone_buckets``; 1 without overlap) each take p = G / k (plus a top-k
        selection q) on the compute stream, then their reduction R in order on the comm stream:
        ``reduced = max(c + k R, e + p + k R, e + k p + R)`` (the chain ``c_i = max(c_{i-1}, e + i p) + R`` is
        linear in i), and ``step = reduced + u``. ``ps-fc``'s servers apply their rows' gradients (S_j) after the
        push, on their own stream: ``step = max(reduced + u, e + T_push + max_j S_j)``; a co-located server's
        update counts in its host's compute time where the worker's compute does not cover it."""
        w, cluster, opts, b = t.workload, t.cluster, t.options.fc, t.b
        check_options(w, opts)
        workers, n, d, c = cluster.workers, t.n, w.feature_dim, w.classes
        wire, big_b = wire_bytes(w, opts), t.n * b
        sec = fc_seconds(w, t.device, strategy, n, opts, b)
        sent = []  # bytes on the wire of the workers' collectives

        def collective_s(op: str, size_bytes: float | np.ndarray, calls: int = 1) -> np.ndarray:
            time_s, on_wire = t.collective(op, np.atleast_1d(size_bytes), workers)
            sent.append(calls * on_wire)
            return time_s

        fc_s = sec.fc_forward + sec.softmax + sec.fc_backward
        exchanged = traffic = 0.0  # ps-fc: bytes pulled and pushed; their bytes sent plus received by workers
        if strategy == "dp-fc":
            fc_end = t.host_s + sec.backbone_forward + fc_s
            comm_free = fc_end + collective_s("allreduce", c * d * wire)
        elif strategy == "ps-fc":  # message i: server i // N <-> worker i % N, its class range's rows
            servers = cluster.servers
            row_share = class_ranges(c, len(servers))
            src, dst = np.repeat(servers, n), np.tile(workers, len(servers))
            sizes = np.repeat(row_share * d * wire, n)
            keep = (sizes > 0) & (src != dst)
            src, dst, sizes = src[keep], dst[keep], sizes[keep]
            pull_s = t.exchange_time_s(src, dst, sizes) if keep.any() else 0.0
            push_s = t.exchange_time_s(dst, src, sizes) if keep.any() else 0.0
            exchanged = 2 * sizes.sum()
            traffic = 2 * (sizes * (np.isin(src, workers).astype(float) + np.isin(dst, workers))).sum()
            fc_end = np.maximum(t.host_s, pull_s) + sec.backbone_forward + fc_s
            comm_free = fc_end + push_s
        else:
            comm_start, forward_start = 0.0, t.host_s  # when the labels' all-gather and the forward may start
            if strategy == "mp-fc-knn":  # both wait for the rebuild
                weights_s = collective_s("allgather", c * d * wire / opts.knn_rebuild_steps)
                comm_start = forward_start = (np.maximum(t.host_s, weights_s) + sec.search + collective_s(
                    "allgather", c * opts.knn_k * NEIGHBOUR_BYTES / opts.knn_rebuild_steps))
            features_at = np.maximum(comm_start + collective_s("allgather", big_b * LABEL_BYTES),
                                     forward_start + sec.backbone_forward)
            fc_end = (features_at + collective_s("allgather", big_b * d * wire) + fc_s
                      + collective_s("allreduce", big_b * SOFTMAX_BYTES, calls=2) * 2
                      + collective_s("reducescatter", big_b * d * wire))
            comm_free = fc_end
        buckets = backbone_buckets(w, t.device, n, opts, wire)
        bucket_s = collective_s(buckets.op, buckets.size_bytes, buckets.count)
        per_bucket = sec.backbone_backward / buckets.count + buckets.select_s
        reduced = np.maximum.reduce([comm_free + buckets.count * bucket_s,
                                     fc_end + per_bucket + buckets.count * bucket_s,
                                     fc_end + buckets.count * per_bucket + bucket_s])
        worker_end = reduced + sec.update
        busy = (t.host_s + sec.search + sec.backbone_forward + fc_s + sec.backbone_backward
                + buckets.count * buckets.select_s + sec.update)
        reduced_wire = sum(sent)
        memory = fc_memory(w, strategy, n, len(cluster.servers) if strategy == "ps-fc" else 0, opts, b)
        figures = t.result(np.broadcast_to(worker_end, b.shape), np.broadcast_to(busy, b.shape),
                           np.broadcast_to(reduced_wire + exchanged, b.shape), memory["worker"],
                           np.broadcast_to((2 * reduced_wire + traffic) / n, b.shape))
        if strategy == "ps-fc":
            figures.update(_ps_servers(t, memory["server"], fc_end + push_s, fc_end, fc_end + buckets.count
                                       * per_bucket, reduced, worker_end, busy, figures["fits_memory"]))
        return figures

    return closed_form


def _ps_servers(t: Terms, memory: dict[str, float], pushed: np.ndarray, backward_start: np.ndarray,
                backward_end: np.ndarray, update_start: np.ndarray, worker_end: np.ndarray, busy: np.ndarray,
                fits_memory: np.ndarray) -> dict[str, np.ndarray]:
    """``ps-fc``'s figures that its servers change, per batch size: the step (a server's update may end
    last), and the critical worker's compute and exposed communication. The critical worker is the first
    host ending last; on a host holding server j, its update [pushed, pushed + S_j] adds the part the worker's
    compute ([backward_start, backward_end] and the update [update_start, worker_end]) does not cover."""
    cluster = t.cluster
    workers, servers = cluster.workers, cluster.servers
    update_s = server_update_s(t.workload, cluster, class_ranges(t.workload.classes, len(servers)))
    hosted = np.zeros(len(workers))  # per worker: the update of the server on its host
    on_worker = np.isin(servers, workers)
    order = np.argsort(workers)
    hosted[order[np.searchsorted(workers, servers[on_worker], sorter=order)]] = update_s[on_worker]
    ends = np.maximum(worker_end[:, None], pushed[:, None] + hosted[None, :])
    critical = np.argmax(ends, axis=1)
    own = hosted[critical]
    compute_s = busy + own - _overlap_s(pushed, pushed + own, backward_start, backward_end) - _overlap_s(
        pushed, pushed + own, update_start, worker_end)
    server_total, server_fits = memory_fits(cluster.server_device or cluster.device, memory, t.b)
    step = np.maximum(worker_end, pushed + update_s.max())
    return {"step_time_s": step, "samples_per_s": t.n * t.b / step, "compute_s": compute_s,
            "exposed_comm_s": ends[np.arange(len(t.b)), critical] - compute_s,
            "memory_server_bytes": server_total, "fits_memory": fits_memory & server_fits}


STRATEGIES = tuple(Strategy(name, description, "classification", _lower(name), needs_servers=name == "ps-fc",
                            options="fc", closed_form=_closed_form(name)) for name, description in (
    ("dp-fc", "extreme classification: FC replicated, its gradient all-reduced"),
    ("ps-fc", "extreme classification: FC rows on parameter servers, pulled and pushed every step"),
    ("mp-fc", "extreme classification: FC sharded by class, features all-gathered, distributed softmax"),
    ("mp-fc-knn", "mp-fc with KNN softmax: only each label's nearest classes are scored")))
