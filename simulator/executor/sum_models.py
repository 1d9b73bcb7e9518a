"""Models whose sparse part is a sum over IDs, for real: LR and FM, and the executor's data.

Each ID's row (``params_per_id`` values) maps to a partial vector of width r = ``Workload.partial_width``,
and a sample's partial result is the sum over its IDs (docs/TRAINING_MODEL.md): LR, the weight (r = 1); FM, the
vector v and the scalar w - |v|^2 / 2 (r = k + 1). The rest is dense: LR's logit is the sum plus a bias,
FM's is bias + (the scalar) + |sum of v|^2 / 2. That sum is what DES splits over row owners.

The data is the simulator's: worker w's batch at step k holds the IDs ``workloads.ids.sample_batch_ids``
draws from ``make_rng(seed, w, k)`` (labels from a separate generator, so IDs match the simulator's
``ids=sampled`` exactly); the global batch is the workers' batches in rank order. The loss is the sum of
binary cross-entropies over the global batch divided by B, so the reference's gradient is exactly the
sum of the workers' gradients. Optimizer: plain SGD, on the looked-up rows only (sparse gradients of
table-batched embeddings, ``simulator.executor.tables``).

The strategies' training loops are in ``simulator.executor.train`` (and ``ps``); they run LR and FM
through ``SumHead``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from simulator.executor import tensors
from simulator.executor.tables import bag_sum, initial_rows
from simulator.executor.tensors import from_numpy
from workloads import Workload
from workloads.ids import make_rng, sample_batch_ids

LEARNING_RATE = 0.5


@dataclass
class Batch:
    """One worker's (or the global) batch: per table an (n, fields x hotness) ID array, labels (n,) and dense
    features (n, ``dense_features``)."""

    ids: list[np.ndarray]
    labels: np.ndarray
    dense: np.ndarray


def worker_batch(workload: Workload, worker: int, step: int) -> Batch:
    b = workload.batch_per_worker
    drawn = sample_batch_ids(workload, b, make_rng(workload.seed, worker, step))
    labels = np.random.default_rng([workload.seed, worker, step, 1]).integers(0, 2, b).astype(np.float32)
    dense = np.random.default_rng([workload.seed, worker, step, 2]).normal(
        0.0, 1.0, (b, workload.dense_features)).astype(np.float32)
    return Batch([drawn[t.name] for t in workload.tables], labels, dense)


def global_batch(workload: Workload, world: int, step: int) -> Batch:
    parts = [worker_batch(workload, w, step) for w in range(world)]
    return Batch([np.concatenate([p.ids[t] for p in parts]) for t in range(len(workload.tables))],
                 np.concatenate([p.labels for p in parts]), np.concatenate([p.dense for p in parts]))


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
    tables = [from_numpy(w).requires_grad_(True) for w in initial_rows(workload)]
    bias = tensors.zeros().requires_grad_(True)
    losses = []
    for step in range(steps):
        batch = global_batch(workload, world, step)
        summed = sum(per_id(workload.model, table[from_numpy(ids)]).sum(dim=1)
                     for table, ids in zip(tables, batch.ids, strict=True))
        logits = head(workload.model, summed, bias)
        loss = bce_loss(logits, from_numpy(batch.labels), len(batch.labels))
        loss.backward()
        with torch.no_grad():
            for param in (*tables, bias):
                param -= LEARNING_RATE * param.grad
                param.grad = None
        losses.append(float(loss.detach()))
    return [t.detach().cpu().numpy() for t in tables], float(bias.detach()), losses


class SumHead:
    """LR's or FM's dense part, as every strategy's worker runs it (``simulator.executor.train``).

    ``pool``: the rows of a batch's (sample, ID slot)s -> the summed partials (n, r); ``partials``: an owner's
    rows summed per segment (sample x fields + field) -> (n, r); ``logits`` and ``logits_from_partials``:
    (n, r) summed partials -> (n,) logits. Rows are given as (``weight``, ``index``): looked up and pooled
    in one op."""

    def __init__(self, workload: Workload) -> None:
        self.model = workload.model
        self.bias = tensors.zeros().requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.bias]

    def pool(self, weight: torch.Tensor, index: torch.Tensor, sparse: bool) -> torch.Tensor:
        """Rows ``index`` (n, slots) of ``weight`` -> the summed partials (n, r)."""
        n, slots = index.shape
        return self.partials(weight, index.reshape(-1), tensors.arange(n * slots) // slots, n, 1, sparse)

    def partials(self, weight: torch.Tensor, index: torch.Tensor, segment: torch.Tensor, n: int, fields: int,
                 sparse: bool = True) -> torch.Tensor:
        """Rows ``index`` of ``weight`` summed per sample (``segment // fields``): LR's weights in one fused
        embedding bag; FM's partial vectors are not linear in the row, so its rows are gathered, mapped
        (``per_id``) and then summed."""
        if self.model == "lr":
            return bag_sum(weight, index, segment // fields, n, sparse)
        values = per_id(self.model, torch.nn.functional.embedding(index, weight, sparse=sparse))
        return tensors.zeros(n, values.shape[1]).index_add_(0, segment // fields, values)

    def logits(self, summed: torch.Tensor, batch: Batch) -> torch.Tensor:
        return head(self.model, summed, self.bias)

    logits_from_partials = logits
