"""Models with pooled embeddings and an MLP, for real: DNN and DLRM, single-process and on ranks (DES, DP).

The sparse part pools each field's IDs (sum) into a k-vector; a sample's partial result is all its
pooled vectors, r = sum(fields x dim) = ``Workload.partial_width``, which DES sums over row owners. The
dense part is built from ``Workload.linear_layers`` so its parameter count is the simulator's
``dense_params`` exactly (checked): a bottom MLP over the dense features, the interaction (``concat``, or
DLRM's ``dot``: pairwise dot products of the bottom output and the pooled vectors, upper triangle, then
the bottom output), the top MLP (ReLU between layers). Data and loss as in ``sum_models``; dense
features are seeded per (worker, step). Dense gradients are all-reduced (``dense.allreduce``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from simulator.executor.comm import Communicator
from simulator.executor.sum_models import LEARNING_RATE, _loss, _SumPartials, global_batch, worker_batch
from workloads import Workload

MODELS = ("dnn", "dlrm")


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
        layers = [nn.Linear(i, o) for i, o in workload.linear_layers]
        bottom = len(workload.bottom_mlp) if workload.dense_features else 0
        self.bottom = nn.ModuleList(layers[:bottom])
        self.top = nn.ModuleList(layers[bottom:])
        self.interaction = workload.interaction
        if sum(p.numel() for p in self.parameters()) != workload.dense_params:
            raise ValueError("the torch head does not match the workload's dense parameter count")

    def forward(self, pooled: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """Logits from pooled vectors (n, F, k) and dense features (n, D)."""
        x = dense
        for layer in self.bottom:
            x = torch.relu(layer(x))
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
        return x.squeeze(1)


def initial_tables(workload: Workload) -> list[np.ndarray]:
    return [np.random.default_rng([workload.seed, 7, t]).normal(0.0, 0.1, (spec.rows, spec.dim)).astype(np.float32)
            for t, spec in enumerate(workload.tables)]


def _pool(rows: torch.Tensor, fields: int) -> torch.Tensor:
    """(n, fields x hotness, k) looked-up rows -> (n, fields, k) sums per field."""
    n, columns, k = rows.shape
    return rows.reshape(n, fields, columns // fields, k).sum(dim=2)


def _step(head: DenseHead, tables: list[torch.Tensor], comm: Communicator | None) -> None:
    """SGD on the head (gradients all-reduced when ``comm``) and on the given tables."""
    with torch.no_grad():
        params = list(head.parameters())
        grads = torch.cat([p.grad.reshape(-1) for p in params])
        if comm is not None:
            grads = comm.all_reduce(grads, "dense.allreduce")
        for p, g in zip(params, grads.split([p.numel() for p in params]), strict=True):
            p -= LEARNING_RATE * g.reshape(p.shape)
            p.grad = None
        for table in tables:
            table -= LEARNING_RATE * table.grad
            table.grad = None


def train_reference(workload: Workload, world: int, steps: int) -> tuple[list[np.ndarray], list[float]]:
    """Single-process training on the global batches: (tables, loss per step)."""
    head = DenseHead(workload)
    tables = [torch.tensor(w, requires_grad=True) for w in initial_tables(workload)]
    losses = []
    for step in range(steps):
        batch = global_batch(workload, world, step)
        pooled = torch.cat([_pool(table[torch.from_numpy(ids)], spec.fields)
                            for table, ids, spec in zip(tables, batch.ids, workload.tables, strict=True)], dim=1)
        loss = _loss(head(pooled, dense_features(workload, list(range(world)), step)),
                     torch.from_numpy(batch.labels), len(batch.labels))
        loss.backward()
        _step(head, tables, None)
        losses.append(float(loss.detach()))
    return [t.detach().numpy() for t in tables], losses


def train_des(rank: int, world: int, workload: Workload, steps: int, variant: str = "des") -> dict:
    """A DES worker: owned rows pooled for the whole global batch, partials summed across workers."""
    comm = Communicator()
    head = DenseHead(workload)
    owned = [np.arange(rank, spec.rows, world) for spec in workload.tables]
    tables = [torch.tensor(w[rank::world], requires_grad=True) for w in initial_tables(workload)]
    big_b = world * workload.batch_per_worker
    losses = []
    for step in range(steps):
        mine = worker_batch(workload, rank, step)
        parts = []
        for table, ids, spec in zip(tables, mine.ids, workload.tables, strict=True):
            ids = comm.all_gather(torch.from_numpy(ids), "des.ids")
            here = ids % world == rank
            rows = torch.zeros((*ids.shape, spec.dim)).index_put((here,), table[ids[here] // world])
            parts.append(_pool(rows, spec.fields))
        partial = torch.cat(parts, dim=1)  # (B, F, k): this worker's rows' share of every pooled vector
        summed = _SumPartials.apply(partial.flatten(1), comm, variant == "des-rs").reshape(-1, *partial.shape[1:])
        loss = _loss(head(summed, dense_features(workload, [rank], step)), torch.from_numpy(mine.labels), big_b)
        loss.backward()
        _step(head, tables, comm)
        losses.append(float(comm.all_reduce(loss.detach().reshape(1).clone(), "metrics")[0]))
    return {"owned": owned, "weights": [t.detach().numpy() for t in tables], "losses": losses,
            "counters": comm.counters()}
