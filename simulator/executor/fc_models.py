"""Extreme classification for real: a data-parallel backbone and a model-parallel FC softmax (``mp-fc``,
``mp-fc-knn``), single-process and on ranks.

The backbone is a small MLP (I -> H, ReLU, -> D), replicated on every rank; its gradients are all-reduced
as one flat fp32 buffer (``backbone.allreduce``). The FC layer (C x D, no bias) is split by class: rank r
owns the contiguous classes r C/N .. (r+1) C/N. A step all-gathers the global batch's labels (``fc.labels``)
and features (``fc.features``), computes the logits of its classes for all B = N b samples, normalises them
with two all-reduces of B values (``fc.softmax``: the row max, then the row sum of exponentials), and
reduce-scatters the (B, D) partial feature gradients back to the samples' ranks (``fc.feature_grad``).

``mp-fc-knn`` restricts the softmax to the active classes: the batch's labels and each label's K nearest
other classes (inner product of FC rows). Every T steps (steps 0, T, 2T, ...) the ranks all-gather the FC
weights (``knn.rebuild``) and each computes the whole class graph (brute force, ties as ``torch.topk``).

Data: worker w's batch at step k is x ~ N(0, 1), (b, I) fp32, then labels uniform over [0, C), both from
``np.random.default_rng([seed, w, k, 3])``; the global batch is the workers' batches in rank order. Loss:
mean cross-entropy over the global batch; optimizer: plain SGD (``LEARNING_RATE``), fp32; the FC update
touches only rows with a gradient (the active rows). The single-process reference trains the same model
with autograd on the global batches, so ranks match it up to fp32 rounding.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from simulator.executor import tensors
from simulator.executor.comm import Communicator, payload_bytes
from simulator.executor.tensors import from_numpy
from simulator.executor.train import run_steps, timings
from workloads.classification import ClassificationWorkload

LEARNING_RATE = 0.1
INPUT_WIDTH, HIDDEN_WIDTH, FEATURE_DIM = 32, 64, 16  # the small backbone: I, H, D
STRATEGIES = ("mp-fc", "mp-fc-knn")


def small_classification_workload(batch_per_worker: int = 64, classes: int = 960,
                                  seed: int = 0) -> ClassificationWorkload:
    """The executor's workload: the MLP backbone (I = 32, H = 64, D = 16), SGD, fp32. FLOPs are 2 per
    multiply-add; activation bytes per sample count the hidden and output values (a rough figure)."""
    i, h, d = INPUT_WIDTH, HIDDEN_WIDTH, FEATURE_DIM
    return ClassificationWorkload(
        name="small-classification", backbone="mlp", backbone_flops_per_sample=2.0 * (i * h + h * d),
        backbone_params=i * h + h + h * d + d, backbone_activation_bytes_per_sample=4.0 * (h + d),
        feature_dim=d, classes=classes, batch_per_worker=batch_per_worker, dtype_bytes=4, optimizer="sgd",
        seed=seed)


class Backbone(nn.Module):
    """The MLP I -> H, ReLU, -> D; initial weights from ``workload.seed`` (the same on every rank)."""

    def __init__(self, workload: ClassificationWorkload) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # built on the CPU under the seed, the caller's RNG untouched
            torch.manual_seed(workload.seed)
            self.layers = nn.Sequential(nn.Linear(INPUT_WIDTH, HIDDEN_WIDTH, device="cpu"), nn.ReLU(),
                                        nn.Linear(HIDDEN_WIDTH, workload.feature_dim, device="cpu"))
        count = sum(p.numel() for p in self.parameters())
        if count != workload.backbone_params:
            raise ValueError(f"the MLP backbone has {count} parameters, the workload says "
                             f"{workload.backbone_params} (see small_classification_workload)")
        self.to(tensors.device())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def worker_batch(workload: ClassificationWorkload, worker: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Worker ``worker``'s inputs (b, I) fp32 and labels (b,) int64 at ``step``."""
    rng = np.random.default_rng([workload.seed, worker, step, 3])
    x = rng.normal(0.0, 1.0, (workload.batch_per_worker, INPUT_WIDTH)).astype(np.float32)
    return x, rng.integers(0, workload.classes, workload.batch_per_worker, dtype=np.int64)


def global_batch(workload: ClassificationWorkload, world: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """The global batch at ``step``: the ``world`` workers' batches concatenated in worker order."""
    parts = [worker_batch(workload, w, step) for w in range(world)]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def initial_fc(workload: ClassificationWorkload) -> np.ndarray:
    """The FC weights before training, (C, D) fp32, from the workload's seed."""
    rng = np.random.default_rng([workload.seed, 11])
    return rng.normal(0.0, 0.1, (workload.classes, workload.feature_dim)).astype(np.float32)


def class_range(workload: ClassificationWorkload, rank: int, world: int) -> tuple[int, int]:
    """The classes rank ``rank`` owns: [start, end), C/N contiguous classes (C must be a multiple of N)."""
    if workload.classes % world:
        raise ValueError(f"mp-fc splits the classes evenly: {workload.classes} classes are not divisible by "
                         f"{world} ranks")
    per_rank = workload.classes // world
    return rank * per_rank, (rank + 1) * per_rank


def _check_knn(workload: ClassificationWorkload, knn_k: int | None, knn_rebuild_steps: int) -> None:
    if knn_k is not None and not 1 <= knn_k < workload.classes:
        raise ValueError(f"knn_k must be in [1, {workload.classes - 1}] (classes - 1), not {knn_k}")
    if knn_rebuild_steps < 1:
        raise ValueError(f"knn_rebuild_steps must be >= 1, not {knn_rebuild_steps}")


def class_neighbours(weights: torch.Tensor, k: int, start: int = 0, end: int | None = None) -> torch.Tensor:
    """(end - start, k) int64: the k nearest other classes of classes start..end (default all C) by inner
    product of the FC rows ``weights`` (C, D) (brute force; ties broken by ``torch.topk``)."""
    scores = weights[start:end] @ weights.T
    scores.diagonal(start).fill_(-torch.inf)
    return scores.topk(k, dim=1).indices


def active_classes(labels: torch.Tensor, neighbours: torch.Tensor | None, classes: int) -> torch.Tensor:
    """The classes a step's softmax covers, sorted: all ``classes`` (``neighbours`` None: full softmax), else
    the union of the labels and their neighbours."""
    if neighbours is None:
        return tensors.arange(classes)
    return torch.unique(torch.cat([labels, neighbours[labels].reshape(-1)]))


def train_reference(workload: ClassificationWorkload, world: int, steps: int, strategy: str = "mp-fc",
                    knn_k: int | None = None,
                    knn_rebuild_steps: int = 1) -> tuple[list[np.ndarray], np.ndarray, list[float]]:
    """Single-process training on the global batches of ``world`` workers: (the backbone's parameters in
    ``parameters()`` order, the FC weights (C, D), the loss per step). ``mp-fc-knn`` needs ``knn_k`` (K) and
    rebuilds the class graph every ``knn_rebuild_steps`` (T) steps; ``mp-fc`` takes no K."""
    if strategy not in STRATEGIES or (strategy == "mp-fc-knn") != (knn_k is not None):
        raise ValueError(f"strategy must be one of {STRATEGIES}, with knn_k for mp-fc-knn only "
                         f"(got {strategy!r}, knn_k={knn_k})")
    _check_knn(workload, knn_k, knn_rebuild_steps)
    backbone = Backbone(workload)
    weights = from_numpy(initial_fc(workload)).requires_grad_(True)
    neighbours, losses = None, []
    for step in range(steps):
        x, labels = (from_numpy(a) for a in global_batch(workload, world, step))
        if knn_k is not None and step % knn_rebuild_steps == 0:
            neighbours = class_neighbours(weights.detach(), knn_k)
        active = active_classes(labels, neighbours, workload.classes)
        logits = backbone(x) @ weights[active].T
        loss = nn.functional.cross_entropy(logits, torch.searchsorted(active, labels))
        loss.backward()
        with torch.no_grad():
            for param in (*backbone.parameters(), weights):
                param -= LEARNING_RATE * param.grad
                param.grad = None
        losses.append(float(loss.detach()))
    return [p.detach().cpu().numpy() for p in backbone.parameters()], weights.detach().cpu().numpy(), losses


def all_reduce_max(comm: Communicator, tensor: torch.Tensor, category: str) -> torch.Tensor:
    """Element-wise max of ``tensor`` over ranks, in place; counted as ``Communicator.all_reduce`` counts
    (2(N-1)/N x the payload, ring)."""
    moved = 2 * (comm.world - 1) / comm.world * payload_bytes(tensor)
    with comm._timed(category, moved, moved):
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=comm.group)
    return tensor


def _shard_softmax(weights: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, mine: torch.Tensor,
                   comm: Communicator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """This rank's share of the softmax cross-entropy of the global batch over its active classes.

    ``weights``: the active rows (A, D); ``features``: the global batch's (B, D); ``labels``: (B,) relative
    to this rank's first class; ``mine``: the active classes (A,), sorted, relative to the same. Returns this
    rank's part of the mean loss (the sum over ranks is the loss), the gradients of the active rows (A, D)
    and this rank's partial gradient of the features (B, D) (the sum over ranks is the gradient).
    """
    big_b = len(features)
    timed = comm.timer.op
    with timed("compute.forward"):
        logits = features @ weights.T  # (B, A)
        row_max = logits.amax(dim=1) if logits.shape[1] else tensors.full((big_b,), -torch.inf)
    row_max = all_reduce_max(comm, row_max, "fc.softmax")
    with timed("compute.forward"):
        exp = torch.exp(logits - row_max[:, None])
        row_sum = exp.sum(dim=1)
    row_sum = comm.all_reduce(row_sum, "fc.softmax")
    with timed("compute.backward"):
        rows = torch.isin(labels, mine).nonzero().squeeze(1)  # samples whose label is here (active wherever owned)
        columns = torch.searchsorted(mine, labels[rows])
        loss = (row_max[rows] + row_sum[rows].log() - logits[rows, columns]).sum() / big_b
        grad_logits = exp / row_sum[:, None]
        grad_logits[rows, columns] -= 1.0
        grad_logits /= big_b
        return loss, grad_logits.T @ features, grad_logits @ weights


def _update_backbone(params: list[torch.Tensor], comm: Communicator) -> None:
    """All-reduce the backbone's gradients as one flat fp32 buffer (``backbone.allreduce``; they are already
    scaled by 1/B, so the sum is the gradient) and take an SGD step."""
    with torch.no_grad():
        flat = comm.all_reduce(torch.cat([p.grad.reshape(-1) for p in params]), "backbone.allreduce")
        with comm.timer.op("compute.update"):
            for param, grad in zip(params, flat.split([p.numel() for p in params]), strict=True):
                param -= LEARNING_RATE * grad.view_as(param)
                param.grad = None


def train_mp_fc(rank: int, world: int, workload: ClassificationWorkload, steps: int, knn_k: int | None = None,
                knn_rebuild_steps: int = 1) -> dict:
    """One rank of ``mp-fc`` (``knn_k`` None) or ``mp-fc-knn`` (K = ``knn_k``, graph rebuilt every
    ``knn_rebuild_steps`` steps). Returns its byte ``counters``, ``step_s`` (wall seconds per step, from a
    barrier to the end of the update; input generation and the loss metric excluded), the global ``losses``,
    its ``backbone`` parameters, its ``fc_shard`` (C/N, D) and the number of ``active`` classes per step (C
    under ``mp-fc``)."""
    start, end = class_range(workload, rank, world)
    _check_knn(workload, knn_k, knn_rebuild_steps)
    comm = Communicator()
    timed = comm.timer.op
    backbone = Backbone(workload)
    params = list(backbone.parameters())
    shard = from_numpy(initial_fc(workload)[start:end])
    neighbours, active_counts = None, []

    def step(k: int, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        nonlocal neighbours
        x, labels = batch
        if knn_k is not None and k % knn_rebuild_steps == 0:  # this rank's classes' neighbours, then all's
            gathered_fc = comm.all_gather(shard, "knn.rebuild")
            with timed("compute.knn"):
                mine_neighbours = class_neighbours(gathered_fc, knn_k, start, end)
            neighbours = comm.all_gather(mine_neighbours, "knn.rebuild")
        with timed("compute.forward"):
            features = backbone(x)
        all_labels = comm.all_gather(labels, "fc.labels")
        gathered = comm.all_gather(features.detach(), "fc.features")
        with timed("compute.forward"):
            active = active_classes(all_labels, neighbours, workload.classes)
            mine = active[(active >= start) & (active < end)] - start
        loss, grad_rows, grad_gathered = _shard_softmax(shard[mine], gathered, all_labels - start, mine, comm)
        feature_grad = comm.reduce_scatter(grad_gathered, "fc.feature_grad")
        with timed("compute.backward"):
            features.backward(feature_grad)
        _update_backbone(params, comm)
        with timed("compute.update"):
            shard.index_add_(0, mine, grad_rows * -LEARNING_RATE)  # scaled first: index_add_'s alpha is slow on CPU
        active_counts.append(len(active))
        return loss

    losses = run_steps(comm, steps, lambda k: tuple(from_numpy(a) for a in worker_batch(workload, rank, k)), step)
    return {"counters": comm.counters(), **timings(comm), "losses": losses,
            "backbone": [p.detach().cpu().numpy() for p in params], "fc_shard": shard.cpu().numpy(),
            "active": active_counts}
