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

from dataclasses import dataclass

import numpy as np
import torch

from simulator.executor.comm import Communicator
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
        summed = sum(per_id(workload.model, table[torch.from_numpy(ids)]).sum(dim=1)
                     for table, ids in zip(tables, batch.ids, strict=True))
        logits = head(workload.model, summed, bias)
        loss = bce_loss(logits, torch.from_numpy(batch.labels), len(batch.labels))
        loss.backward()
        with torch.no_grad():
            for param in (*tables, bias):
                param -= LEARNING_RATE * param.grad
                param.grad = None
        losses.append(float(loss.detach()))
    return [t.detach().numpy() for t in tables], float(bias.detach()), losses


def _sgd(tables: list[torch.Tensor], grads: list[torch.Tensor], bias: torch.Tensor, comm: Communicator) -> None:
    """SGD on a worker's rows (with ``grads``) and on the bias, whose gradient is all-reduced first."""
    with torch.no_grad():
        bias_grad = comm.all_reduce(bias.grad.reshape(1).clone(), "dense.allreduce")[0]
        for table, grad in zip(tables, grads, strict=True):
            table -= LEARNING_RATE * grad
            table.grad = None
        bias -= LEARNING_RATE * bias_grad
        bias.grad = None


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
        summed = comm.all_reduce(partial.clone(), "des.partials")
        b = len(partial) // comm.world
        return summed[comm.rank * b:(comm.rank + 1) * b].clone()

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return ctx.comm.all_gather(grad.contiguous(), "des.partials_grad"), None, None


def train_des(rank: int, world: int, workload: Workload, steps: int, variant: str = "des") -> dict:
    """One DES worker's training; returns its rows (owned IDs and weights), bias, losses and counters."""
    comm = Communicator()
    owned = [np.arange(rank, spec.rows, world) for spec in workload.tables]
    tables = [torch.tensor(w[rank::world], requires_grad=True) for w in initial_rows(workload)]
    bias = torch.zeros((), requires_grad=True)
    losses = []
    for step in range(steps):
        mine = worker_batch(workload, rank, step)
        ids = [comm.all_gather(torch.from_numpy(x), "des.ids") for x in mine.ids]  # the global batch's IDs
        big_b = world * workload.batch_per_worker
        partial = torch.zeros(big_b, workload.partial_width)
        for table, table_ids in zip(tables, ids, strict=True):
            here = table_ids % world == rank
            samples = torch.arange(big_b).unsqueeze(1).expand_as(table_ids)[here]
            partial = partial.index_add(0, samples, per_id(workload.model, table[table_ids[here] // world]))
        logits = head(workload.model, SumPartials.apply(partial, comm, variant == "des-rs"), bias)
        loss = bce_loss(logits, torch.from_numpy(mine.labels), big_b)
        loss.backward()
        _sgd(tables, [t.grad for t in tables], bias, comm)
        losses.append(global_loss(loss, comm))
    return {"owned": owned, "weights": [t.detach().numpy() for t in tables], "bias": float(bias.detach()),
            "losses": losses, "counters": comm.counters()}


def train_ps(rank: int, world: int, workload: Workload, steps: int, servers: int) -> dict:
    """Synchronous PS: ranks 0..N-1 are workers; the last ``servers`` ranks are servers, server s owning the
    rows with ``id mod P == s`` of every table (``shard_of``). Per step a worker sends each server the keys
    of its batch's distinct IDs that server owns and gets the rows back (``sparse.pull``), computes, and
    pushes the keys with the row gradients (``sparse.push``); a server sums each row's gradients over the
    workers and applies them before the next step's pulls (BSP). The bias is all-reduced among workers
    (``dense.allreduce``, PERSIA-like). Keys travel as global row numbers (table offset + id)."""
    n = world - servers
    comm = Communicator()
    workers_group = torch.distributed.new_group(list(range(n)))  # created by every rank, used by workers
    if rank >= n:
        return _serve(comm, rank - n, n, workload, steps)
    dense = Communicator(workers_group)
    offsets = _table_offsets(workload)
    width = _row_width(workload)
    bias = torch.zeros((), requires_grad=True)
    losses = []
    for step in range(steps):
        mine = worker_batch(workload, rank, step)
        gids = np.concatenate([offsets[t] + ids for t, ids in enumerate(mine.ids)], axis=1)  # (b, m)
        owner = np.concatenate([ids % servers for ids in mine.ids], axis=1)
        keys = {n + s: torch.from_numpy(np.unique(gids[owner == s])) for s in range(servers)}
        comm.exchange_variable(keys, [], "sparse.pull")
        rows = comm.exchange_variable({}, list(keys), "sparse.pull", torch.float32)
        pulled = {peer: rows[peer].reshape(len(keys[peer]), width).clone().requires_grad_(True) for peer in keys}
        order = np.concatenate([keys[peer].numpy() for peer in keys])
        sorter = np.argsort(order)
        where = torch.from_numpy(sorter[np.searchsorted(order[sorter], gids)])
        summed = per_id(workload.model, torch.cat([pulled[peer] for peer in keys])[where]).sum(dim=1)
        logits = head(workload.model, summed, bias)
        loss = bce_loss(logits, torch.from_numpy(mine.labels), n * workload.batch_per_worker)
        loss.backward()
        comm.exchange_variable(keys, [], "sparse.push")
        comm.exchange_variable({peer: pulled[peer].grad.reshape(-1) for peer in keys}, [], "sparse.push")
        _sgd([], [], bias, dense)
        losses.append(global_loss(loss, dense))
    counters = comm.counters()
    counters.update(dense.counters())
    return {"bias": float(bias.detach()), "losses": losses, "counters": counters}


def _row_width(workload: Workload) -> int:
    widths = {t.params_per_id for t in workload.tables}
    if len(widths) != 1:
        raise ValueError("the PS executor needs one row width across tables")
    return widths.pop()


def _table_offsets(workload: Workload) -> np.ndarray:
    """Global row number of each table's row 0 (tables in workload order)."""
    return np.concatenate([[0], np.cumsum([t.rows for t in workload.tables])[:-1]]).astype(np.int64)


def _serve(comm: Communicator, server: int, n: int, workload: Workload, steps: int) -> dict:
    """A PS server: answer every worker's pull, then apply the summed pushed gradients (per step)."""
    servers = comm.world - n
    offsets = _table_offsets(workload)
    full = np.concatenate(initial_rows(workload))
    width = full.shape[1]
    table_of = np.repeat(np.arange(len(workload.tables)), [t.rows for t in workload.tables])
    ids_all = np.arange(len(full)) - offsets[table_of]
    owned = np.nonzero(ids_all % servers == server)[0]  # global rows this server holds
    weights = full[owned].copy()
    workers = list(range(n))
    for _ in range(steps):
        keys = comm.exchange_variable({}, workers, "sparse.pull")
        local = {w: np.searchsorted(owned, keys[w].numpy()) for w in workers}
        comm.exchange_variable({w: torch.from_numpy(weights[local[w]].reshape(-1)) for w in workers}, [],
                               "sparse.pull")
        pushed_keys = comm.exchange_variable({}, workers, "sparse.push")
        grads = comm.exchange_variable({}, workers, "sparse.push", torch.float32)
        total = np.zeros_like(weights)
        for w in workers:
            np.add.at(total, np.searchsorted(owned, pushed_keys[w].numpy()), grads[w].numpy().reshape(-1, width))
        weights -= LEARNING_RATE * total
    return {"owned": owned, "weights": weights, "counters": comm.counters()}


def train_des_a2a(rank: int, world: int, workload: Workload, steps: int) -> dict:
    """DES with all-to-all (``des-a2a``): each worker sends every owner the IDs of its b samples that owner
    holds (``des.ids``; per-sample lengths go as metadata), owners return the b x r partial rows of each
    requester's samples (``des.partials``), and backward sends each owner the b x r partial gradients
    (``des.partials_grad``); owners kept the IDs and backpropagate into their rows."""
    comm = Communicator()
    model, b = workload.model, workload.batch_per_worker
    owned = [np.arange(rank, spec.rows, world) for spec in workload.tables]
    tables = [torch.tensor(w[rank::world], requires_grad=True) for w in initial_rows(workload)]
    bias = torch.zeros((), requires_grad=True)
    losses = []
    for step in range(steps):
        mine = worker_batch(workload, rank, step)
        # Per requester: this owner's (b, r) partial rows for its samples, with their graph to our rows.
        partials = [torch.zeros(b, workload.partial_width) for _ in range(world)]
        for table, ids in zip(tables, mine.ids, strict=True):
            owner = ids % world
            ids_to = [torch.from_numpy(ids[owner == o]) for o in range(world)]  # sample-major order
            lengths = [torch.from_numpy((owner == o).sum(axis=1)) for o in range(world)]
            got_ids = comm.all_to_all(ids_to, "des.ids")
            got_lengths = comm.all_to_all(lengths, None)
            for r in range(world):
                samples = torch.repeat_interleave(torch.arange(b), got_lengths[r])
                rows = per_id(model, table[got_ids[r] // world])
                partials[r] = partials[r].index_add(0, samples, rows)
        returned = comm.all_to_all([p.detach() for p in partials], "des.partials")
        summed = torch.stack(returned).sum(dim=0).requires_grad_(True)
        loss = bce_loss(head(model, summed, bias), torch.from_numpy(mine.labels), world * b)
        loss.backward()
        grads = comm.all_to_all([summed.grad] * world, "des.partials_grad")
        torch.autograd.backward(partials, grads)
        _sgd(tables, [t.grad for t in tables], bias, comm)
        losses.append(global_loss(loss, comm))
    return {"owned": owned, "weights": [t.detach().numpy() for t in tables], "bias": float(bias.detach()),
            "losses": losses, "counters": comm.counters()}


def train_dp(rank: int, world: int, workload: Workload, steps: int) -> dict:
    """Data parallel (``dp``): every worker holds every table; the whole table gradients are all-reduced
    (``sparse.allreduce``), then the bias's (``dense.allreduce``)."""
    comm = Communicator()
    model = workload.model
    tables = [torch.tensor(w, requires_grad=True) for w in initial_rows(workload)]
    bias = torch.zeros((), requires_grad=True)
    losses = []
    for step in range(steps):
        mine = worker_batch(workload, rank, step)
        summed = sum(per_id(model, table[torch.from_numpy(ids)]).sum(dim=1)
                     for table, ids in zip(tables, mine.ids, strict=True))
        loss = bce_loss(head(model, summed, bias), torch.from_numpy(mine.labels), world * workload.batch_per_worker)
        loss.backward()
        flat = comm.all_reduce(torch.cat([t.grad.reshape(-1) for t in tables]), "sparse.allreduce")
        _sgd(tables, [g.reshape(t.shape) for t, g in zip(tables, flat.split([t.numel() for t in tables]),
                                                        strict=True)], bias, comm)
        losses.append(global_loss(loss, comm))
    return {"owned": [np.arange(spec.rows) for spec in workload.tables],
            "weights": [t.detach().numpy() for t in tables], "bias": float(bias.detach()), "losses": losses,
            "counters": comm.counters()}
