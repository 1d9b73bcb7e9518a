"""Models with pooled embeddings and an MLP, for real: DNN, DLRM, Wide&Deep, DeepFM, single-process and
on ranks under DES (``des``, ``des-rs``, ``des-a2a``) and DP.

The sparse part pools each field's IDs (sum) into a k-vector; W&D and DeepFM rows also hold a
first-order weight (row = (w, v)), summed over the sample's IDs. A sample's partial result is all its
pooled vectors plus that sum: r = ``Workload.partial_width`` (E, or E + 1), which DES sums over row owners.
The dense part is built from ``Workload.linear_layers`` so its parameter count is the simulator's
``dense_params`` exactly (checked): a bottom MLP over the dense features; for W&D and DeepFM a linear term
over them; the interaction (``concat``; DLRM's ``dot``: pairwise dot products of the bottom output and the
pooled vectors, upper triangle, then the bottom output; DeepFM's ``fm``: the second-order FM term over the
field vectors, its deep tower on the concatenation); the top MLP (ReLU between layers). The logit adds the
first-order sum and the linear term where the model has them. Data and loss as in ``sum_models``; dense
features are seeded per (worker, step). Dense gradients are all-reduced (``dense.allreduce``).

On the wire a sample's partial result is one row of r values: the pooled vectors field by field (tables in
workload order, k values each), then the first-order sum for W&D and DeepFM.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from torch import nn

from simulator.executor.comm import Communicator, on_device
from simulator.executor.sum_models import (
    LEARNING_RATE,
    SumPartials,
    bce_loss,
    global_batch,
    global_loss,
    sgd,
    shard_result,
    train_replicated,
    worker_batch,
)
from simulator.executor.tables import OwnedTables, columns, gather_ids, initial_rows, route_ids
from workloads import Workload

MODELS = ("dnn", "dlrm", "widedeep", "deepfm")
FIRST_ORDER = ("widedeep", "deepfm")  # rows hold (w, v); the logit adds sum w and a linear term


def dense_features(workload: Workload, workers: list[int], step: int) -> torch.Tensor:
    """The dense features of those workers' batches at ``step`` (rows in worker order)."""
    return torch.cat([on_device(np.random.default_rng([workload.seed, w, step, 2]).normal(
        0.0, 1.0, (workload.batch_per_worker, workload.dense_features)).astype(np.float32)) for w in workers])


class DenseHead(nn.Module):
    """Bottom MLP, interaction and top MLP of a DNN or DLRM workload (``linear_layers`` order)."""

    def __init__(self, workload: Workload) -> None:
        super().__init__()
        if workload.model not in MODELS:
            raise ValueError(f"pooled_models runs {', '.join(MODELS)}, not {workload.model}")
        torch.manual_seed(workload.seed)
        with warnings.catch_warnings():  # DeepFM without dense features: its linear term is Linear(0, 1), a bias
            warnings.filterwarnings("ignore", "Initializing zero-element tensors")
            layers = [nn.Linear(i, o) for i, o in workload.linear_layers]
        bottom = len(workload.bottom_mlp) if workload.dense_features else 0
        self.bottom = nn.ModuleList(layers[:bottom])
        self.linear = layers[bottom] if workload.model in FIRST_ORDER else None
        self.top = nn.ModuleList(layers[bottom + (self.linear is not None):])
        self.interaction = workload.interaction
        if sum(p.numel() for p in self.parameters()) != workload.dense_params:
            raise ValueError("the torch head does not match the workload's dense parameter count")

    def forward(self, pooled: torch.Tensor, dense: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from pooled vectors (n, F, k), dense features (n, D) and first-order sums (n,)."""
        x = dense
        for layer in self.bottom:
            x = torch.relu(layer(x))
        extra = 0.0
        if self.linear is not None:
            extra = first + self.linear(x).squeeze(1)
        if self.interaction == "fm":
            total = pooled.sum(dim=1)
            extra = extra + 0.5 * ((total * total).sum(dim=1) - (pooled * pooled).sum(dim=(1, 2)))
        if self.interaction == "dot":
            vectors = torch.cat([x.unsqueeze(1), pooled], dim=1)
            dots = vectors @ vectors.transpose(1, 2)
            upper = torch.triu_indices(vectors.shape[1], vectors.shape[1], offset=1)
            x = torch.cat([dots[:, upper[0], upper[1]], x], dim=1)
        else:
            x = torch.cat([pooled.flatten(1), x], dim=1)
        for i, layer in enumerate(self.top):
            x = layer(x)
            if i < len(self.top) - 1:
                x = torch.relu(x)
        return x.squeeze(1) + extra


def _pool(sums: torch.Tensor, first_order: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows summed per field (n, fields, width) -> pooled vectors (n, fields, k) and first-order sums (n,)."""
    if not first_order:
        return sums, torch.zeros(len(sums))
    return sums[..., 1:], sums[..., 0].sum(dim=1)


def _partial(rows: torch.Tensor, fields: int, first_order: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Looked-up rows (n, fields x hotness, width) -> pooled vectors (n, fields, k) and first-order sums (n,)."""
    n, columns, width = rows.shape
    return _pool(rows.reshape(n, fields, columns // fields, width).sum(dim=2), first_order)


def _partial_owned(rows: torch.Tensor, segment: torch.Tensor, n: int, fields: int,
                   first_order: bool) -> torch.Tensor:
    """An owner's share of n samples' partial results (n, r): its looked-up ``rows`` summed per segment
    (sample x fields + field), pooled, flattened as sent."""
    sums = torch.zeros(n * fields, rows.shape[1]).index_add_(0, segment, rows)
    return _columns(*_pool(sums.reshape(n, fields, -1), first_order), first_order)


def _join(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-table (pooled, first) -> all fields' pooled vectors (n, F, k) and the first-order sums (n,)."""
    return torch.cat([p for p, _ in parts], dim=1), sum(f for _, f in parts)


def _columns(pooled: torch.Tensor, first: torch.Tensor, first_order: bool) -> torch.Tensor:
    """The partial result as sent, (n, r): pooled vectors flattened, then the first-order sum if any."""
    return torch.cat([pooled.flatten(1), first.unsqueeze(1)], dim=1) if first_order else pooled.flatten(1)


def _logits_from_partials(head: DenseHead, summed: torch.Tensor, workload: Workload, worker: int,
                          step: int) -> torch.Tensor:
    """Logits of ``worker``'s b samples at ``step`` from their summed partial results (b, r)."""
    vectors = summed[:, :workload.embedding_width].reshape(len(summed), workload.n_fields, -1)
    first = summed[:, -1] if workload.model in FIRST_ORDER else None
    return head(vectors, dense_features(workload, [worker], step), first)


def train_reference(workload: Workload, world: int, steps: int) -> tuple[list[np.ndarray], list[float]]:
    """Single-process training on the global batches: (tables, loss per step)."""
    head = DenseHead(workload)
    tables = [torch.tensor(w, requires_grad=True) for w in initial_rows(workload)]
    losses = []
    first_order = workload.model in FIRST_ORDER
    for step in range(steps):
        batch = global_batch(workload, world, step)
        parts = [_partial(table[on_device(ids)], spec.fields, first_order)
                 for table, ids, spec in zip(tables, batch.ids, workload.tables, strict=True)]
        pooled, first = _join(parts)
        loss = bce_loss(head(pooled, dense_features(workload, list(range(world)), step), first),
                     on_device(batch.labels), len(batch.labels))
        loss.backward()
        sgd([], list(head.parameters()), None)
        with torch.no_grad():  # whole-table gradients: the reference stays the plain textbook step
            for table in tables:
                table -= LEARNING_RATE * table.grad
                table.grad = None
        losses.append(float(loss.detach()))
    return [t.detach().cpu().numpy() for t in tables], losses


def train_des(rank: int, world: int, workload: Workload, steps: int, variant: str = "des") -> dict:
    """A DES worker: owned rows pooled for the whole global batch, partials summed across workers."""
    comm = Communicator()
    head = DenseHead(workload)
    owned, layout = OwnedTables(initial_rows(workload), rank, world), columns(workload)
    big_b = world * workload.batch_per_worker
    first_order = workload.model in FIRST_ORDER
    losses, step_s = [], []
    for step in range(steps):
        mine = worker_batch(workload, rank, step)  # input loading is not part of the step (a loader prefetches)
        comm.barrier()
        started = time.perf_counter()
        sample, column, rows = owned.owned_in(gather_ids(mine.ids, comm), layout)
        # (B, r): this worker's share of every sample's partial result
        partial = _partial_owned(rows, sample * layout.fields + layout.field[column], big_b, layout.fields,
                                 first_order)
        summed = SumPartials.apply(partial, comm, variant == "des-rs")
        loss = bce_loss(_logits_from_partials(head, summed, workload, rank, step), on_device(mine.labels),
                        big_b)
        loss.backward()
        sgd([owned.weight], list(head.parameters()), comm)
        step_s.append(time.perf_counter() - started)
        losses.append(global_loss(loss, comm))
    return shard_result(owned, losses, step_s, comm)


class ExchangePartials(torch.autograd.Function):
    """``des-a2a``'s sum. Forward: send each requester the (b, r) partial rows this owner computed for its
    samples (``des.partials``) and sum the rows every owner sent here. Backward: send every owner the (b, r)
    gradient of this worker's sum (``des.partials_grad``), so each owner gets its requesters' gradients."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, comm: Communicator,
                *partials: torch.Tensor) -> torch.Tensor:
        ctx.comm = comm
        b = len(partials[0])
        return torch.stack(comm.all_to_all(list(partials), "des.partials", [b] * comm.world)).sum(dim=0)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return None, *ctx.comm.all_to_all([grad.contiguous()] * ctx.comm.world, "des.partials_grad",
                                          [len(grad)] * ctx.comm.world)


def train_des_a2a(rank: int, world: int, workload: Workload, steps: int) -> dict:
    """DES with all-to-all (``des-a2a``): each worker sends every owner the IDs of its b samples that owner
    holds (``des.ids``, in (sample, field, slot) order, after their per-(sample, field) ``des.lengths``),
    owners pool them into (b, r) partial rows per requester and return them (``des.partials``), and backward
    sends each owner the (b, r) partial gradients (``des.partials_grad``, :class:`ExchangePartials`); owners
    kept the IDs and backpropagate into their rows. Dense gradients are all-reduced (``dense.allreduce``)."""
    comm = Communicator()
    head = DenseHead(workload)
    owned, layout = OwnedTables(initial_rows(workload), rank, world), columns(workload)
    b, first_order = workload.batch_per_worker, workload.model in FIRST_ORDER
    losses, step_s = [], []
    for step in range(steps):
        mine = worker_batch(workload, rank, step)  # input loading is not part of the step (a loader prefetches)
        comm.barrier()
        started = time.perf_counter()
        partials = [_partial_owned(owned.rows(ids, layout.field_table[segment % layout.fields]), segment, b,
                                   layout.fields, first_order) for segment, ids in route_ids(mine.ids, layout, comm)]
        summed = ExchangePartials.apply(comm, *partials)
        loss = bce_loss(_logits_from_partials(head, summed, workload, rank, step), on_device(mine.labels),
                        world * b)
        loss.backward()
        sgd([owned.weight], list(head.parameters()), comm)
        step_s.append(time.perf_counter() - started)
        losses.append(global_loss(loss, comm))
    return shard_result(owned, losses, step_s, comm)


class PooledHead:
    """The dense part of a pooled model for a PS or DP worker: rows looked up per (sample, ID slot) -> logits."""

    def __init__(self, workload: Workload) -> None:
        self.workload = workload
        self.head = DenseHead(workload)
        self.first_order = workload.model in FIRST_ORDER

    def parameters(self) -> list[torch.Tensor]:
        return list(self.head.parameters())

    def __call__(self, rows: torch.Tensor, worker: int, step: int) -> torch.Tensor:
        parts, start = [], 0
        for spec in self.workload.tables:
            columns = spec.fields * spec.hotness
            parts.append(_partial(rows[:, start:start + columns], spec.fields, self.first_order))
            start += columns
        pooled, first = _join(parts)
        return self.head(pooled, dense_features(self.workload, [worker], step), first if self.first_order else None)


def train_dp(rank: int, world: int, workload: Workload, steps: int) -> dict:
    """Data parallel (``dp``), as the simulator's ``lower_dp`` accounts it: ``train_replicated`` with the
    dense head; the whole tables' gradients (``sparse_params`` values) and the dense ones (``dense_params``)
    are all-reduced. "owned" is every row of every table."""
    model = PooledHead(workload)
    return train_replicated(rank, world, workload, steps, lambda rows, step: model(rows, rank, step),
                            list(model.parameters()))
