"""Models with pooled embeddings and an MLP, for real: DNN, DLRM, Wide&Deep, DeepFM, single-process and
under DES on ranks.

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
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from torch import nn

from simulator.executor.comm import Communicator
from simulator.executor.sum_models import (
    SumPartials,
    bce_loss,
    global_batch,
    global_loss,
    owned_shard,
    sgd,
    shard_result,
    worker_batch,
)
from workloads import Workload

MODELS = ("dnn", "dlrm", "widedeep", "deepfm")
FIRST_ORDER = ("widedeep", "deepfm")  # rows hold (w, v); the logit adds sum w and a linear term


def dense_features(workload: Workload, workers: list[int], step: int) -> torch.Tensor:
    """The dense features of those workers' batches at ``step`` (rows in worker order)."""
    return torch.cat([torch.from_numpy(np.random.default_rng([workload.seed, w, step, 2]).normal(
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


def initial_tables(workload: Workload) -> list[np.ndarray]:
    return [np.random.default_rng([workload.seed, 7, t]).normal(0.0, 0.1, (spec.rows, spec.params_per_id))
            .astype(np.float32) for t, spec in enumerate(workload.tables)]


def _partial(rows: torch.Tensor, fields: int, first_order: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Looked-up rows (n, fields x hotness, width) -> pooled vectors (n, fields, k) and first-order sums (n,)."""
    n, columns, _ = rows.shape
    vectors = rows[..., 1:] if first_order else rows
    pooled = vectors.reshape(n, fields, columns // fields, -1).sum(dim=2)
    first = rows[..., 0].sum(dim=1) if first_order else torch.zeros(n)
    return pooled, first


def train_reference(workload: Workload, world: int, steps: int) -> tuple[list[np.ndarray], list[float]]:
    """Single-process training on the global batches: (tables, loss per step)."""
    head = DenseHead(workload)
    tables = [torch.tensor(w, requires_grad=True) for w in initial_tables(workload)]
    losses = []
    first_order = workload.model in FIRST_ORDER
    for step in range(steps):
        batch = global_batch(workload, world, step)
        parts = [_partial(table[torch.from_numpy(ids)], spec.fields, first_order)
                 for table, ids, spec in zip(tables, batch.ids, workload.tables, strict=True)]
        pooled, first = torch.cat([p for p, _ in parts], dim=1), sum(f for _, f in parts)
        loss = bce_loss(head(pooled, dense_features(workload, list(range(world)), step), first),
                     torch.from_numpy(batch.labels), len(batch.labels))
        loss.backward()
        sgd(tables, [t.grad for t in tables], list(head.parameters()), None)
        losses.append(float(loss.detach()))
    return [t.detach().numpy() for t in tables], losses


def train_des(rank: int, world: int, workload: Workload, steps: int, variant: str = "des") -> dict:
    """A DES worker: owned rows pooled for the whole global batch, partials summed across workers."""
    comm = Communicator()
    head = DenseHead(workload)
    owned, tables = owned_shard(initial_tables(workload), rank, world)
    big_b = world * workload.batch_per_worker
    first_order = workload.model in FIRST_ORDER
    losses, step_s = [], []
    for step in range(steps):
        comm.barrier()
        started = time.perf_counter()
        mine = worker_batch(workload, rank, step)
        parts = []
        for table, ids, spec in zip(tables, mine.ids, workload.tables, strict=True):
            ids = comm.all_gather(torch.from_numpy(ids), "des.ids")
            here = ids % world == rank
            rows = torch.zeros((*ids.shape, spec.params_per_id)).index_put((here,), table[ids[here] // world])
            parts.append(_partial(rows, spec.fields, first_order))
        pooled = torch.cat([p for p, _ in parts], dim=1)  # (B, F, k): this worker's share of each pooled vector
        columns = [pooled.flatten(1)] + ([sum(f for _, f in parts).unsqueeze(1)] if first_order else [])
        summed = SumPartials.apply(torch.cat(columns, dim=1), comm, variant == "des-rs")
        vectors = summed[:, :pooled.shape[1] * pooled.shape[2]].reshape(-1, *pooled.shape[1:])
        first = summed[:, -1] if first_order else None
        loss = bce_loss(head(vectors, dense_features(workload, [rank], step), first), torch.from_numpy(mine.labels),
                     big_b)
        loss.backward()
        sgd(tables, [t.grad for t in tables], list(head.parameters()), comm)
        step_s.append(time.perf_counter() - started)
        losses.append(global_loss(loss, comm))
    return shard_result(owned, tables, losses, step_s, comm)


class PooledHead:
    """The dense part of a pooled model for a PS worker: rows looked up per (sample, ID slot) -> logits."""

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
        pooled, first = torch.cat([p for p, _ in parts], dim=1), sum(f for _, f in parts)
        return self.head(pooled, dense_features(self.workload, [worker], step), first if self.first_order else None)
