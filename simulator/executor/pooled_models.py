"""Models with pooled embeddings and an MLP, for real: DNN, DLRM, Wide&Deep, DeepFM (the strategies'
loops, ``simulator.executor.train`` and ``ps``, run them through ``PooledHead``).

The sparse part pools each field's IDs (sum) into a k-vector; W&D and DeepFM rows also hold a
first-order weight (row = (w, v)), summed over the sample's IDs. A sample's partial result is all its
pooled vectors plus that sum: r = ``Workload.partial_width`` (E, or E + 1), which DES sums over row owners.
The dense part is built from ``Workload.linear_layers`` so its parameter count is the simulator's
``dense_params`` exactly (checked): a bottom MLP over the dense features; for W&D and DeepFM a linear term
over them; the interaction (``concat``; DLRM's ``dot``: pairwise dot products of the bottom output and the
pooled vectors, upper triangle, then the bottom output; DeepFM's ``fm``: the second-order FM term over the
field vectors, its deep tower on the concatenation); the top MLP (ReLU between layers). The logit adds the
first-order sum and the linear term where the model has them. Data (dense features
included) and loss as in ``sum_models``.

On the wire a sample's partial result is one row of r values: the pooled vectors field by field (tables in
workload order, k values each), then the first-order sum for W&D and DeepFM. With DES's ``first-layer``
partial (``Workload.des_partial``; concat and DeepFM's deep tower), a row is instead the
owner's share of the first top layer's embedding part, pooled.flatten(1) @ W[:, :E]^T (h1 values, no bias),
then for DeepFM the sum of the field vectors (k) and the scalar first-order sum - 1/2 sum of squared field
vectors, for W&D the first-order sum: every piece linear in the owner's rows (DeepFM's squares because
each one-hot field's vector lies on one owner), so the sum over owners is the model's exactly; the worker
adds W[:, E:] x + bias once, after the sum (``DenseHead.forward_substituted``).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from simulator.executor import tensors
from simulator.executor.sum_models import LEARNING_RATE, Batch, bce_loss, global_batch
from simulator.executor.tables import bag_sum, columns, initial_rows
from simulator.executor.tensors import from_numpy
from workloads import Workload

MODELS = ("dnn", "dlrm", "widedeep", "deepfm")
FIRST_ORDER = ("widedeep", "deepfm")  # rows hold (w, v); the logit adds sum w and a linear term


class DenseHead(nn.Module):
    """Bottom MLP, interaction and top MLP of a DNN or DLRM workload (``linear_layers`` order)."""

    def __init__(self, workload: Workload) -> None:
        super().__init__()
        if workload.model not in MODELS:
            raise ValueError(f"pooled_models runs {', '.join(MODELS)}, not {workload.model}")
        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):  # built on the CPU under the seed
            warnings.filterwarnings("ignore", "Initializing zero-element tensors")  # DeepFM's Linear(0, 1): a bias
            torch.manual_seed(workload.seed)
            layers = [nn.Linear(i, o, device="cpu") for i, o in workload.linear_layers]
        bottom = len(workload.bottom_mlp) if workload.dense_features else 0
        self.bottom = nn.ModuleList(layers[:bottom])
        self.linear = layers[bottom] if workload.model in FIRST_ORDER else None
        self.top = nn.ModuleList(layers[bottom + (self.linear is not None):])
        self.interaction = workload.interaction
        if sum(p.numel() for p in self.parameters()) != workload.dense_params:
            raise ValueError("the torch head does not match the workload's dense parameter count")
        self.to(tensors.device())

    def forward(self, pooled: torch.Tensor, dense: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
        """Logits from pooled vectors (n, F, k), dense features (n, D) and first-order sums (n,)."""
        x, extra = self._bottom(dense, first)
        if self.interaction == "fm":
            total = pooled.sum(dim=1)
            extra = extra + 0.5 * ((total * total).sum(dim=1) - (pooled * pooled).sum(dim=(1, 2)))
        if self.interaction == "dot":
            vectors = torch.cat([x.unsqueeze(1), pooled], dim=1)
            dots = vectors @ vectors.transpose(1, 2)
            upper = torch.triu_indices(vectors.shape[1], vectors.shape[1], offset=1, device=vectors.device)
            x = torch.cat([dots[:, upper[0], upper[1]], x], dim=1)
        else:
            x = torch.cat([pooled.flatten(1), x], dim=1)
        return self._top(x) + extra

    def _bottom(self, dense: torch.Tensor, first: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | float]:
        """The bottom MLP's output (n, D') and the wide part's logits (n,; 0 without one): first-order sums
        plus the linear layer on the dense features."""
        x = dense
        for layer in self.bottom:
            x = torch.relu(layer(x))
        return x, (first + self.linear(x).squeeze(1) if self.linear is not None else 0.0)

    def _top(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """The top MLP from layer ``start`` (ReLU between layers) -> logits (n,)."""
        for i, layer in enumerate(self.top[start:], start):
            x = layer(x)
            if i < len(self.top) - 1:
                x = torch.relu(x)
        return x.squeeze(1)

    def first_weight(self, embedding_width: int) -> torch.Tensor:
        """W_e: the first top layer's embedding columns (h1, E), a view of its weight (gradients land there)."""
        return self.top[0].weight[:, :embedding_width]

    def forward_substituted(self, y: torch.Tensor, dense: torch.Tensor, scalar: torch.Tensor | None,
                            total: torch.Tensor | None) -> torch.Tensor:
        """Logits from the summed first-layer partials: ``y`` = pooled.flatten(1) @ W_e^T (n, h1), the FM
        vectors' sum ``total`` (n, k; DeepFM) and ``scalar`` (n,: W&D's first-order sum; DeepFM's minus half
        the squared field vectors); equal to ``forward`` on the pooled vectors."""
        x, extra = self._bottom(dense, scalar)
        if total is not None:
            extra = extra + 0.5 * (total * total).sum(dim=1)
        first = self.top[0]  # its dense-feature columns and bias, once per sample
        h = y + x @ first.weight[:, first.weight.shape[1] - x.shape[1]:].T + first.bias
        return self._top(torch.relu(h) if len(self.top) > 1 else h, 1) + extra


def _pool(sums: torch.Tensor, first_order: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows summed per field (n, fields, width) -> pooled vectors (n, fields, k) and first-order sums (n,)."""
    if not first_order:
        return sums, tensors.zeros(len(sums))
    return sums[..., 1:], sums[..., 0].sum(dim=1)


def _partial(rows: torch.Tensor, fields: int, first_order: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Looked-up rows (n, fields x hotness, width) -> pooled vectors (n, fields, k) and first-order sums (n,)."""
    n, columns, width = rows.shape
    return _pool(rows.reshape(n, fields, columns // fields, width).sum(dim=2), first_order)


def _join(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-table (pooled, first) -> all fields' pooled vectors (n, F, k) and the first-order sums (n,)."""
    return torch.cat([p for p, _ in parts], dim=1), sum(f for _, f in parts)


def _columns(pooled: torch.Tensor, first: torch.Tensor, first_order: bool) -> torch.Tensor:
    """The partial result as sent, (n, r): pooled vectors flattened, then the first-order sum if any."""
    return torch.cat([pooled.flatten(1), first.unsqueeze(1)], dim=1) if first_order else pooled.flatten(1)


def train_reference(workload: Workload, world: int, steps: int) -> tuple[list[np.ndarray], list[float]]:
    """Single-process training on the global batches: (tables, loss per step)."""
    head = DenseHead(workload)
    tables = [from_numpy(w).requires_grad_(True) for w in initial_rows(workload)]
    losses = []
    first_order = workload.model in FIRST_ORDER
    for step in range(steps):
        batch = global_batch(workload, world, step)
        parts = [_partial(table[from_numpy(ids)], spec.fields, first_order)
                 for table, ids, spec in zip(tables, batch.ids, workload.tables, strict=True)]
        pooled, first = _join(parts)
        loss = bce_loss(head(pooled, from_numpy(batch.dense), first),
                     from_numpy(batch.labels), len(batch.labels))
        loss.backward()
        with torch.no_grad():  # whole-table gradients: the reference stays the plain textbook step
            for param in (*head.parameters(), *tables):
                param -= LEARNING_RATE * param.grad
                param.grad = None
        losses.append(float(loss.detach()))
    return [t.detach().cpu().numpy() for t in tables], losses


class PooledHead:
    """A pooled model's dense part as every strategy's worker runs it (``simulator.executor.train``), the
    same interface as ``sum_models.SumHead``: ``pool`` a batch's rows per (sample, ID slot) into pooled vectors
    and first-order sums, ``partials`` an owner's rows per segment into flat (n, r) partial results (rows given
    as ``weight`` and ``index``: looked up and pooled in one fused embedding bag), ``logits`` and
    ``logits_from_partials`` from either."""

    def __init__(self, workload: Workload, partial: str = "fields") -> None:
        self.workload = workload
        self.head = DenseHead(workload)
        self.first_order = workload.model in FIRST_ORDER
        self.field = columns(workload).field  # each ID slot's field, numbered across tables
        self.first_layer = partial == "first-layer"  # DES partials: the first layer's (module doc), not fields'
        if self.first_layer and (workload.first_layer_obstacle or workload.interaction not in ("concat", "fm")):
            raise ValueError(f"first-layer partials are not exact for {workload.model} ({workload.interaction})")

    def parameters(self) -> list[torch.Tensor]:
        return list(self.head.parameters())

    def pool(self, weight: torch.Tensor, index: torch.Tensor, sparse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``index`` (n, slots) of ``weight``, every table's fields pooled at once: pooled vectors (n, F, k)
        and first-order sums (n,)."""
        n, fields = len(index), self.workload.n_fields
        segment = (tensors.arange(n)[:, None] * fields + self.field[None, :]).reshape(-1)
        return self._bags(weight, index.reshape(-1), segment, n, sparse)

    def partials(self, weight: torch.Tensor, index: torch.Tensor, segment: torch.Tensor, n: int, fields: int,
                 sparse: bool = True) -> torch.Tensor:
        """An owner's share of n samples' partial results (n, r): rows ``index`` of ``weight`` summed per
        segment (sample x fields + field, nondecreasing), pooled, flattened as sent; or with first-layer
        partials their (n, r) share of the first layer, FM sum and scalar (module doc)."""
        pooled, first = self._bags(weight, index, segment, n, sparse)
        if not self.first_layer:
            return _columns(pooled, first, self.first_order)
        parts = [pooled.flatten(1) @ self.head.first_weight(self.workload.embedding_width).T]
        if self.workload.interaction == "fm":
            parts.append(pooled.sum(dim=1))
            first = first - 0.5 * (pooled * pooled).sum(dim=(1, 2))
        if self.first_order:
            parts.append(first.unsqueeze(1))
        return torch.cat(parts, dim=1)

    def _bags(self, weight: torch.Tensor, index: torch.Tensor, segment: torch.Tensor, n: int,
              sparse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One fused embedding bag per (sample, field) segment -> pooled vectors and first-order sums."""
        fields = self.workload.n_fields
        sums = bag_sum(weight, index, segment, n * fields, sparse)
        return _pool(sums.reshape(n, fields, -1), self.first_order)

    def logits(self, pooled: tuple[torch.Tensor, torch.Tensor], batch: Batch) -> torch.Tensor:
        vectors, first = pooled
        return self.head(vectors, from_numpy(batch.dense), first if self.first_order else None)

    def logits_from_partials(self, summed: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Logits of a batch from its summed partial results (n, r)."""
        if self.first_layer:
            h1, k = self.workload.first_layer_width, self.workload.dim
            total = summed[:, h1:h1 + k] if self.workload.interaction == "fm" else None
            return self.head.forward_substituted(summed[:, :h1], from_numpy(batch.dense),
                                                 summed[:, -1] if self.first_order else None, total)
        vectors = summed[:, :self.workload.embedding_width].reshape(len(summed), self.workload.n_fields, -1)
        return self.logits((vectors, summed[:, -1]), batch)
