"""Models whose sparse part is a sum over IDs, for real: LR and FM, single-process and on ranks (DES, PS).

Each ID's row (``params_per_id`` values) maps to a partial vector of width r = ``Workload.partial_width``,
and a sample's partial result is the sum over its IDs (TRAINING.md): LR, the weight (r = 1); FM, the
vector v and the scalar w - |v|^2 / 2 (r = k + 1). The rest is dense: LR's logit is the sum plus a bias,
FM's is bias + (the scalar) + |sum of v|^2 / 2. That sum is what DES splits over row owners.

The data is the simulator's: worker w's batch at step k holds the IDs ``workloads.ids.sample_batch_ids``
draws from ``make_rng(seed, w, k)`` (labels from a separate generator, so IDs match the simulator's
``ids=sampled`` exactly); the global batch is the workers' batches in rank order. The loss is the sum of
binary cross-entropies over the global batch divided by B, so the reference's gradient is exactly the
sum of the workers' gradients. Optimizer: plain SGD, on the looked-up rows only (sparse gradients of
table-batched embeddings, ``simulator.executor.tables``).

DES: worker r owns the rows with ``id mod N == r`` of every table (``simulator.strategies.base.shard_of``,
``OwnedTables``). It all-gathers the batch's IDs (``des.ids``), sums the partials of the rows it owns
for every sample of the global batch (its sub-operator), and the partial sums are added across workers
(``des.partials``: all-reduce, or reduce-scatter for ``des-rs``); each worker keeps its b rows. Backward
all-gathers the b partial gradients (``des.partials_grad``) so every worker updates its own rows; the bias
gradient is all-reduced (``dense.allreduce``). No row ever crosses the network.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from simulator.executor.comm import Communicator, on_device
from simulator.executor.tables import (
    OwnedTables,
    ReplicatedTables,
    apply_sparse,
    columns,
    gather_ids,
    initial_rows,
    route_ids,
)
from workloads import Workload
from workloads.ids import make_rng, sample_batch_ids

LEARNING_RATE = 0.5


@dataclass
class Batch:
    """One worker's (or the global) batch: per table an (n, fields x hotness) ID array, and labels."""

    ids: list[np.ndarray]
    labels: np.ndarray


def worker_batch(workload: Workload, worker: int, step: int) -> Batch:
    b = workload.batch_per_worker
    drawn = sample_batch_ids(workload, b, make_rng(workload.seed, worker, step))
    labels = np.random.default_rng([workload.seed, worker, step, 1]).integers(0, 2, b).astype(np.float32)
    return Batch([drawn[t.name] for t in workload.tables], labels)


def global_batch(workload: Workload, world: int, step: int) -> Batch:
    parts = [worker_batch(workload, w, step) for w in range(world)]
    return Batch([np.concatenate([p.ids[t] for p in parts]) for t in range(len(workload.tables))],
                 np.concatenate([p.labels for p in parts]))


def per_id(model: str, rows: torch.Tensor) -> torch.Tensor:
    """Each row's partial vector (last axis): LR its weight; FM (v, w - |v|^2 / 2)."""
    if model == "lr":
        return rows
    v = rows[..., 1:]
    return torch.cat([v, rows[..., :1] - 0.5 * (v * v).sum(dim=-1, keepdim=True)], dim=-1)


def head(model: str, summed: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Logits from the summed partials (n, r)."""
    if model == "lr":
        return summed[:, 0] + bias
    v = summed[:, :-1]
    return bias + summed[:, -1] + 0.5 * (v * v).sum(dim=1)


def bce_loss(logits: torch.Tensor, labels: torch.Tensor, global_batch_size: int) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / global_batch_size


def train_reference(workload: Workload, world: int, steps: int) -> tuple[list[np.ndarray], float, list[float]]:
    """Single-process training on the global batches: (tables' rows, bias, loss per step)."""
    tables = [torch.tensor(w, requires_grad=True) for w in initial_rows(workload)]
    bias = torch.zeros((), requires_grad=True)
    losses = []
    for step in range(steps):
        batch = global_batch(workload, world, step)
        summed = sum(per_id(workload.model, table[on_device(ids)]).sum(dim=1)
                     for table, ids in zip(tables, batch.ids, strict=True))
        logits = head(workload.model, summed, bias)
        loss = bce_loss(logits, on_device(batch.labels), len(batch.labels))
        loss.backward()
        with torch.no_grad():
            for param in (*tables, bias):
                param -= LEARNING_RATE * param.grad
                param.grad = None
        losses.append(float(loss.detach()))
    return [t.detach().cpu().numpy() for t in tables], float(bias.detach()), losses


def sgd(tables: list[torch.Tensor], dense: list[torch.Tensor], comm: Communicator | None) -> None:
    """SGD on a worker's batched tables (their sparse gradients: the looked-up rows only) and on the dense
    parameters, whose gradients are first all-reduced as one flat tensor (``dense.allreduce``) when ``comm``
    is given."""
    with torch.no_grad():
        if dense:
            flat = torch.cat([p.grad.reshape(-1) for p in dense])
            if comm is not None:
                flat = comm.all_reduce(flat, "dense.allreduce")
            for param, grad in zip(dense, flat.split([p.numel() for p in dense]), strict=True):
                param -= LEARNING_RATE * grad.reshape(param.shape)
                param.grad = None
    for table in tables:
        apply_sparse(table, table.grad, LEARNING_RATE)
        table.grad = None


def global_loss(loss: torch.Tensor, comm: Communicator) -> float:
    """The global batch's loss: the workers' parts summed (a metric, counted apart from the model's traffic)."""
    return float(comm.all_reduce(loss.detach().reshape(1).clone(), "metrics")[0])


class SumPartials(torch.autograd.Function):
    """Forward: sum the B partial results over workers, keep this worker's b. Backward: all-gather the b
    gradients, so every worker gets the gradient of all B of its partials."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, partial: torch.Tensor, comm: Communicator,
                reduce_scatter: bool) -> torch.Tensor:
        ctx.comm = comm
        if reduce_scatter:
            return comm.reduce_scatter(partial, "des.partials")
        summed = comm.all_reduce(partial, "des.partials")  # in place: a fresh tensor, not saved for backward
        b = len(partial) // comm.world
        return summed[comm.rank * b:(comm.rank + 1) * b].clone()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return ctx.comm.all_gather(grad.contiguous(), "des.partials_grad"), None, None


def shard_result(tables: OwnedTables | ReplicatedTables, losses: list[float], step_s: list[float],
                 comm: Communicator) -> dict:
    """What a worker reports: per table the IDs of its rows and their values, the losses, its wall seconds
    per step (from a barrier to the end of its update; input loading and the loss metric excluded) and its
    byte counters."""
    return {"owned": tables.owned, "weights": [t.cpu().numpy() for t in tables.tables()], "losses": losses,
            "step_s": step_s, "counters": comm.counters()}


def train_des(rank: int, world: int, workload: Workload, steps: int, variant: str = "des") -> dict:
    """One DES worker's training; returns its rows (owned IDs and weights), bias, losses and counters."""
    comm = Communicator()
    owned, layout = OwnedTables(initial_rows(workload), rank, world), columns(workload)
    bias = torch.zeros((), requires_grad=True)
    big_b = world * workload.batch_per_worker
    losses, step_s = [], []
    for step in range(steps):
        mine = worker_batch(workload, rank, step)  # input loading is not part of the step (a loader prefetches)
        comm.barrier()
        started = time.perf_counter()
        sample, _, rows = owned.owned_in(gather_ids(mine.ids, comm), layout)
        partial = torch.zeros(big_b, workload.partial_width).index_add_(0, sample, per_id(workload.model, rows))
        logits = head(workload.model, SumPartials.apply(partial, comm, variant == "des-rs"), bias)
        loss = bce_loss(logits, on_device(mine.labels), big_b)
        loss.backward()
        sgd([owned.weight], [bias], comm)
        step_s.append(time.perf_counter() - started)
        losses.append(global_loss(loss, comm))
    return {**shard_result(owned, losses, step_s, comm), "bias": float(bias.detach())}


def train_des_a2a(rank: int, world: int, workload: Workload, steps: int) -> dict:
    """DES with all-to-all (``des-a2a``): each worker sends every owner the IDs of its b samples that owner
    holds (``des.ids``, after their per-(sample, field) ``des.lengths``), owners return the b x r partial rows of
    each requester's samples (``des.partials``), and backward sends each owner the b x r partial gradients
    (``des.partials_grad``); owners kept the IDs and backpropagate into their rows."""
    comm = Communicator()
    model, b = workload.model, workload.batch_per_worker
    owned, layout = OwnedTables(initial_rows(workload), rank, world), columns(workload)
    bias = torch.zeros((), requires_grad=True)
    losses, step_s = [], []
    for step in range(steps):
        mine = worker_batch(workload, rank, step)  # input loading is not part of the step (a loader prefetches)
        comm.barrier()
        started = time.perf_counter()
        # Per requester: this owner's (b, r) partial rows for its samples, with their graph to our rows.
        partials = [torch.zeros(b, workload.partial_width).index_add_(
            0, segment // layout.fields, per_id(model, owned.rows(ids, layout.field_table[segment % layout.fields])))
            for segment, ids in route_ids(mine.ids, layout, comm)]
        returned = comm.all_to_all([p.detach() for p in partials], "des.partials", [b] * world)
        summed = torch.stack(returned).sum(dim=0).requires_grad_(True)
        loss = bce_loss(head(model, summed, bias), on_device(mine.labels), world * b)
        loss.backward()
        grads = comm.all_to_all([summed.grad] * world, "des.partials_grad", [b] * world)
        torch.autograd.backward(partials, grads)
        sgd([owned.weight], [bias], comm)
        step_s.append(time.perf_counter() - started)
        losses.append(global_loss(loss, comm))
    return {**shard_result(owned, losses, step_s, comm), "bias": float(bias.detach())}


def train_replicated(rank: int, world: int, workload: Workload, steps: int,
                     logits: Callable[[torch.Tensor, int], torch.Tensor], dense: list[torch.Tensor]) -> dict:
    """The data-parallel loop both model families share: every worker holds every table; ``logits(rows,
    step)`` scores the batch from its looked-up rows; the whole table gradients are all-reduced
    (``sparse.allreduce``, :class:`~simulator.executor.tables.ReplicatedTables`), then those of ``dense``
    (``dense.allreduce``)."""
    comm = Communicator()
    replicated, layout = ReplicatedTables(initial_rows(workload)), columns(workload)
    losses, step_s = [], []
    for step in range(steps):
        mine = worker_batch(workload, rank, step)  # input loading is not part of the step (a loader prefetches)
        comm.barrier()
        started = time.perf_counter()
        rows = replicated.rows(on_device(np.concatenate(mine.ids, axis=1)), layout.table)
        loss = bce_loss(logits(rows, step), on_device(mine.labels), world * workload.batch_per_worker)
        loss.backward()
        replicated.all_reduce_and_update(comm, LEARNING_RATE)
        sgd([], dense, comm)
        step_s.append(time.perf_counter() - started)
        losses.append(global_loss(loss, comm))
    return shard_result(replicated, losses, step_s, comm)


def train_dp(rank: int, world: int, workload: Workload, steps: int) -> dict:
    """Data parallel (``dp``) for LR and FM: ``train_replicated`` with the bias as the dense part."""
    model = workload.model
    bias = torch.zeros((), requires_grad=True)
    result = train_replicated(rank, world, workload, steps,
                              lambda rows, step: head(model, per_id(model, rows).sum(dim=1), bias), [bias])
    return {**result, "bias": float(bias.detach())}


class SumHead:
    """The dense part of LR or FM for a PS worker: rows looked up per (sample, ID slot) -> logits."""

    def __init__(self, workload: Workload) -> None:
        self.model = workload.model
        self.bias = torch.zeros((), requires_grad=True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.bias]

    def __call__(self, rows: torch.Tensor, worker: int, step: int) -> torch.Tensor:
        return head(self.model, per_id(self.model, rows).sum(dim=1), self.bias)
