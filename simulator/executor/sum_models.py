"""Models whose sparse part is a sum over IDs, for real: LR and FM, single-process and on ranks (DES, PS).

Each ID's row (``params_per_id`` values) maps to a partial vector of width r = ``Workload.partial_width``,
and a sample's partial result is the sum over its IDs (TRAINING.md): LR, the weight (r = 1); FM, the
vector v and the scalar w - |v|^2 / 2 (r = k + 1). The rest is dense: LR's logit is the sum plus a bias,
FM's is bias + (the scalar) + |sum of v|^2 / 2. That sum is what DES splits over row owners.

The data is the simulator's: worker w's batch at step k holds the IDs ``workloads.ids.sample_batch_ids``
draws from ``make_rng(seed, w, k)`` (labels from a separate generator, so IDs match the simulator's
``ids=sampled`` exactly); the global batch is the workers' batches in rank order. The loss is the sum of
binary cross-entropies over the global batch divided by B, so the reference's gradient is exactly the
sum of the workers' gradients. Optimizer: plain SGD.

DES: worker r owns the rows with ``id mod N == r`` of every table (``simulator.strategies.base.shard_of``),
stored at ``id // N``. It all-gathers the batch's IDs (``des.ids``), sums the partials of the rows it owns
for every sample of the global batch (its sub-operator), and the partial sums are added across workers
(``des.partials``: all-reduce, or reduce-scatter for ``des-rs``); each worker keeps its b rows. Backward
all-gathers the b partial gradients (``des.partials_grad``) so every worker updates its own rows; the bias
gradient is all-reduced (``dense.allreduce``). No row ever crosses the network.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from simulator.executor.comm import Communicator, on_device
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


MODELS = ("lr", "fm")


def initial_rows(workload: Workload) -> list[np.ndarray]:
    """Every table's rows, (rows, params_per_id), before training, from the workload's seed."""
    if workload.model not in MODELS:
        raise ValueError(f"sum_models runs {', '.join(MODELS)}, not {workload.model}")
    return [np.random.default_rng([workload.seed, 7, t]).normal(0.0, 0.1, (spec.rows, spec.params_per_id))
            .astype(np.float32) for t, spec in enumerate(workload.tables)]


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


def lookup(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Rows ``ids`` of ``table``, with a sparse gradient: backward and the update touch only those rows
    (as the simulator's embedding update of unique rows), never the whole table."""
    return torch.nn.functional.embedding(ids, table, sparse=True)


def sgd(tables: list[torch.Tensor], grads: list[torch.Tensor], dense: list[torch.Tensor],
        comm: Communicator | None) -> None:
    """SGD on a worker's rows (with ``grads``, dense or sparse) and on the dense parameters, whose gradients are first
    all-reduced as one flat tensor (``dense.allreduce``) when ``comm`` is given."""
    with torch.no_grad():
        if dense:
            flat = torch.cat([p.grad.reshape(-1) for p in dense])
            if comm is not None:
                flat = comm.all_reduce(flat, "dense.allreduce")
            for param, grad in zip(dense, flat.split([p.numel() for p in dense]), strict=True):
                param -= LEARNING_RATE * grad.reshape(param.shape)
                param.grad = None
        for table, grad in zip(tables, grads, strict=True):
            if grad.is_sparse:  # touched rows only (``lookup``); index_add sums duplicates without a sort
                # (scaled first: index_add_'s alpha takes a path ~20x slower on the CPU, torch 2.13)
                table.index_add_(0, grad._indices()[0], grad._values() * -LEARNING_RATE)
            else:
                table -= LEARNING_RATE * grad
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


def owned_shard(rows: list[np.ndarray], rank: int, world: int) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """The rows worker ``rank`` of ``world`` owns (``id mod world == rank``): their IDs, and them as trainable
    tensors indexed by ``id // world``."""
    owned = [np.arange(rank, len(table), world) for table in rows]
    return owned, [torch.tensor(table[rank::world], requires_grad=True) for table in rows]


def shard_result(owned: list[np.ndarray], tables: list[torch.Tensor], losses: list[float], step_s: list[float],
                 comm: Communicator) -> dict:
    """What an owner-sharded worker reports: its rows' IDs and values, the losses, its wall seconds per step
    (from a barrier to the end of its update; input loading and the loss metric excluded) and its byte
    counters."""
    return {"owned": owned, "weights": [t.detach().cpu().numpy() for t in tables], "losses": losses, "step_s": step_s,
            "counters": comm.counters()}


def gather_ids(ids: list[np.ndarray], comm: Communicator) -> list[torch.Tensor]:
    """Every table's (B, columns) IDs of the global batch, from this worker's (b, columns) ones: one
    all-gather of all tables at once (``des.ids``)."""
    widths = [x.shape[1] for x in ids]
    return list(comm.all_gather(on_device(np.concatenate(ids, axis=1)), "des.ids").split(widths, dim=1))


def route_ids(ids: list[np.ndarray], comm: Communicator,
              groups: list[int] | None = None) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Each worker sends every owner (``id mod N``) the IDs of its (b, columns) tables that owner holds, in
    one all-to-all (``des.ids``, row-major); how many per sample and group of columns (``groups[t]`` equal
    groups per table: its fields; default one per table) go first, as metadata. Per requester r, per table:
    (the segment of each received ID: sample x groups + group, the IDs) as received here."""
    groups = groups or [1] * len(ids)
    owners = [x % comm.world for x in ids]
    b = len(ids[0])
    to = [on_device(np.concatenate([x[own == o] for x, own in zip(ids, owners, strict=True)]))
          for o in range(comm.world)]
    counts = [on_device(np.concatenate([(own == o).reshape(b, g, -1).sum(axis=2) for own, g in
                                               zip(owners, groups, strict=True)], axis=1)) for o in range(comm.world)]
    got_counts = comm.all_to_all(counts, None, [b] * comm.world)  # (b, sum of groups) from each rank: metadata
    got_ids = comm.all_to_all(to, "des.ids", [int(c.sum()) for c in got_counts])
    routed = []
    for r in range(comm.world):
        per_table = got_counts[r].split(groups, dim=1)
        id_parts = got_ids[r].split([int(c.sum()) for c in per_table])
        routed.append([(torch.repeat_interleave(torch.arange(c.numel()), c.reshape(-1)), table_ids)
                       for c, table_ids in zip(per_table, id_parts, strict=True)])
    return routed


def train_des(rank: int, world: int, workload: Workload, steps: int, variant: str = "des") -> dict:
    """One DES worker's training; returns its rows (owned IDs and weights), bias, losses and counters."""
    comm = Communicator()
    owned, tables = owned_shard(initial_rows(workload), rank, world)
    bias = torch.zeros((), requires_grad=True)
    losses, step_s = [], []
    for step in range(steps):
        mine = worker_batch(workload, rank, step)  # input loading is not part of the step (a loader prefetches)
        comm.barrier()
        started = time.perf_counter()
        ids = gather_ids(mine.ids, comm)
        big_b = world * workload.batch_per_worker
        partial = torch.zeros(big_b, workload.partial_width)
        for table, table_ids in zip(tables, ids, strict=True):
            here = table_ids % world == rank
            samples = torch.arange(big_b).unsqueeze(1).expand_as(table_ids)[here]
            partial.index_add_(0, samples, per_id(workload.model, lookup(table, table_ids[here] // world)))
        logits = head(workload.model, SumPartials.apply(partial, comm, variant == "des-rs"), bias)
        loss = bce_loss(logits, on_device(mine.labels), big_b)
        loss.backward()
        sgd(tables, [t.grad for t in tables], [bias], comm)
        step_s.append(time.perf_counter() - started)
        losses.append(global_loss(loss, comm))
    return {**shard_result(owned, tables, losses, step_s, comm), "bias": float(bias.detach())}


def train_des_a2a(rank: int, world: int, workload: Workload, steps: int) -> dict:
    """DES with all-to-all (``des-a2a``): each worker sends every owner the IDs of its b samples that owner
    holds (``des.ids``; per-sample lengths go as metadata), owners return the b x r partial rows of each
    requester's samples (``des.partials``), and backward sends each owner the b x r partial gradients
    (``des.partials_grad``); owners kept the IDs and backpropagate into their rows."""
    comm = Communicator()
    model, b = workload.model, workload.batch_per_worker
    owned, tables = owned_shard(initial_rows(workload), rank, world)
    bias = torch.zeros((), requires_grad=True)
    losses, step_s = [], []
    for step in range(steps):
        mine = worker_batch(workload, rank, step)  # input loading is not part of the step (a loader prefetches)
        comm.barrier()
        started = time.perf_counter()
        # Per requester: this owner's (b, r) partial rows for its samples, with their graph to our rows.
        partials = [torch.zeros(b, workload.partial_width) for _ in range(world)]
        for r, routed in enumerate(route_ids(mine.ids, comm)):
            for table, (samples, ids) in zip(tables, routed, strict=True):
                partials[r].index_add_(0, samples, per_id(model, lookup(table, ids // world)))
        returned = comm.all_to_all([p.detach() for p in partials], "des.partials", [b] * world)
        summed = torch.stack(returned).sum(dim=0).requires_grad_(True)
        loss = bce_loss(head(model, summed, bias), on_device(mine.labels), world * b)
        loss.backward()
        grads = comm.all_to_all([summed.grad] * world, "des.partials_grad", [b] * world)
        torch.autograd.backward(partials, grads)
        sgd(tables, [t.grad for t in tables], [bias], comm)
        step_s.append(time.perf_counter() - started)
        losses.append(global_loss(loss, comm))
    return {**shard_result(owned, tables, losses, step_s, comm), "bias": float(bias.detach())}


class ReplicatedTables:
    """DP's tables: every table's rows in one flat buffer (the tables are leaves sharing its storage), and
    one flat gradient buffer into which the tables' sparse gradients are added, all-reduced in place
    (``sparse.allreduce``, as DDP's buckets) and applied in one pass."""

    def __init__(self, rows: list[np.ndarray]) -> None:
        sizes = [r.size for r in rows]
        self.flat = on_device(np.concatenate([r.reshape(-1) for r in rows]))
        self.tables = [part.view(r.shape).requires_grad_(True) for part, r in zip(self.flat.split(sizes), rows,
                                                                                   strict=True)]
        self.grad = torch.zeros_like(self.flat)
        self.grads = [part.view(r.shape) for part, r in zip(self.grad.split(sizes), rows, strict=True)]

    def all_reduce_and_update(self, comm: Communicator) -> None:
        with torch.no_grad():
            self.grad.zero_()
            for table, grad in zip(self.tables, self.grads, strict=True):
                grad.index_add_(0, table.grad._indices()[0], table.grad._values())
                table.grad = None
            comm.all_reduce(self.grad, "sparse.allreduce")
            self.flat.add_(self.grad, alpha=-LEARNING_RATE)


def train_dp(rank: int, world: int, workload: Workload, steps: int) -> dict:
    """Data parallel (``dp``): every worker holds every table; the whole table gradients are all-reduced
    (``sparse.allreduce``, :class:`ReplicatedTables`), then the bias's (``dense.allreduce``)."""
    comm = Communicator()
    model = workload.model
    replicated = ReplicatedTables(initial_rows(workload))
    bias = torch.zeros((), requires_grad=True)
    losses, step_s = [], []
    for step in range(steps):
        mine = worker_batch(workload, rank, step)  # input loading is not part of the step (a loader prefetches)
        comm.barrier()
        started = time.perf_counter()
        summed = sum(per_id(model, lookup(table, on_device(ids))).sum(dim=1)
                     for table, ids in zip(replicated.tables, mine.ids, strict=True))
        loss = bce_loss(head(model, summed, bias), on_device(mine.labels), world * workload.batch_per_worker)
        loss.backward()
        replicated.all_reduce_and_update(comm)
        sgd([], [], [bias], comm)
        step_s.append(time.perf_counter() - started)
        losses.append(global_loss(loss, comm))
    return {"owned": [np.arange(spec.rows) for spec in workload.tables],
            "weights": [t.detach().cpu().numpy() for t in replicated.tables], "bias": float(bias.detach()),
            "losses": losses, "step_s": step_s, "counters": comm.counters()}


class SumHead:
    """The dense part of LR or FM for a PS worker: rows looked up per (sample, ID slot) -> logits."""

    def __init__(self, workload: Workload) -> None:
        self.model = workload.model
        self.bias = torch.zeros((), requires_grad=True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.bias]

    def __call__(self, rows: torch.Tensor, worker: int, step: int) -> torch.Tensor:
        return head(self.model, per_id(self.model, rows).sum(dim=1), self.bias)
