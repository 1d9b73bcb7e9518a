"""The recommender strategies' training loops on real ranks: DES (``des``, ``des-rs``, ``des-a2a``) and DP, for
every executor model (its dense part: ``sum_models.SumHead`` or ``pooled_models.PooledHead``), and the step
loop, optimizer and loss metric PS (``simulator.executor.ps``) and the extreme classifier also use.

DES: worker r owns the rows with ``id mod N == r`` of every table (``simulator.strategies.base.shard_of``,
``OwnedTables``). It all-gathers the batch's IDs (``des.ids``), sums the partials of the rows it owns for every
sample of the global batch (its sub-operator), and the partial sums are added across workers
(``des.partials``: all-reduce, or reduce-scatter for ``des-rs``); each worker keeps its b rows. Backward
all-gathers the b partial gradients (``des.partials_grad``) so every worker updates its own rows; the dense
gradients are all-reduced (``dense.allreduce``). No row ever crosses the network. ``des-a2a`` routes each
worker's IDs to their owners instead, and owners return each requester's partial rows (all-to-all).

DP: every worker holds every table; the whole table gradients are all-reduced (``sparse.allreduce``, as
DDP's buckets), then the dense ones.

Every step's phases are timed under the simulator's op categories (``simulator.executor.timing``):
``compute.ids`` (which IDs a worker holds, or routes where), ``compute.partial`` (DES: the owned rows'
partial results), ``compute.lookup`` (PS and DP: rows per ID slot, pooled), ``compute.forward`` (the dense
part and the loss), ``compute.backward`` (their backward, and for PS and DP the pooling's), ``compute.update``
(DES: the partials' backward into the owned rows; every optimizer step), and each collective under its
category.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch

from simulator.executor.comm import Communicator
from simulator.executor.pooled_models import MODELS as POOLED_MODELS
from simulator.executor.pooled_models import PooledHead
from simulator.executor.sum_models import LEARNING_RATE, Batch, SumHead, bce_loss, worker_batch
from simulator.executor.tables import (
    OwnedTables,
    ReplicatedTables,
    apply_sparse,
    columns,
    gather_ids,
    initial_rows,
    route_ids,
)
from simulator.executor.tensors import from_numpy
from workloads import Workload

Head = SumHead | PooledHead
Data = TypeVar("Data")


def model_head(workload: Workload, partial: str = "fields") -> Head:
    """The dense part of ``workload``'s model, as its workers run it (``partial``: DES's resolved partial,
    ``Workload.des_partial``; LR and FM only have fields)."""
    return PooledHead(workload, partial) if workload.model in POOLED_MODELS else SumHead(workload)


def sgd(tables: list[torch.Tensor], dense: list[torch.Tensor], comm: Communicator) -> None:
    """SGD on a worker's batched tables (their sparse gradients: the looked-up rows only) and on the dense
    parameters, whose gradients are all-reduced first as one flat bucket (``dense.allreduce``); the rest is
    timed as ``compute.update``."""
    timed = comm.timer.op
    with torch.no_grad():
        if dense:
            with timed("compute.update"):
                flat = torch.cat([p.grad.reshape(-1) for p in dense])
            flat = comm.all_reduce(flat, "dense.allreduce")
            with timed("compute.update"):  # one fused update of every tensor, as torch.optim's foreach SGD
                grads = [g.view(p.shape) for p, g in zip(dense, flat.split([p.numel() for p in dense]), strict=True)]
                torch._foreach_add_(dense, grads, alpha=-LEARNING_RATE)
                for param in dense:
                    param.grad = None
        with timed("compute.update"):
            for table in tables:
                apply_sparse(table, table.grad, LEARNING_RATE)
                table.grad = None


def global_loss(loss: torch.Tensor, comm: Communicator) -> float:
    """The global batch's loss: the workers' parts summed (a metric, counted apart from the model's traffic)."""
    return float(comm.all_reduce(loss.detach().reshape(1).clone(), "metrics")[0])


def run_steps(comm: Communicator, steps: int, load: Callable[[int], Data],
              step: Callable[[int, Data], torch.Tensor | None], metrics: Communicator | None = None,
              synchronous: bool = True) -> list[float]:
    """The executor's one timed step loop (every strategy's workers and servers run it): per step, ``load(k)``
    (input loading, not part of the step: a loader prefetches), a barrier when ``synchronous``, then
    ``step(k, data)`` timed on ``comm.timer`` (its wall time, from the barrier, or its own start, to the end
    of its update, and its phases). The loss it returns is summed over ``metrics`` (default ``comm``) outside
    the step when synchronous, and is this rank's own otherwise; a step that returns None (a server's) has
    none. Returns the losses."""
    losses = []
    for k in range(steps):
        data = load(k)
        if synchronous:
            comm.barrier()
        comm.timer.begin()
        loss = step(k, data)
        comm.timer.end()
        if loss is not None:
            losses.append(global_loss(loss, metrics or comm) if synchronous else float(loss.detach()))
    return losses


def timings(comm: Communicator) -> dict:
    """A rank's measured ``step_s`` (wall seconds per step) and ``ops`` (per step, seconds per category)."""
    return {"step_s": comm.timer.step_s, "ops": comm.timer.ops}


def shard_result(tables: OwnedTables | ReplicatedTables, losses: list[float], comm: Communicator) -> dict:
    """What a worker reports: per table the IDs of its rows and their values, the losses, its timings and its
    byte counters."""
    return {"owned": tables.owned, "weights": [t.cpu().numpy() for t in tables.tables()], "losses": losses,
            "counters": comm.counters(), **timings(comm)}


def _loss(head: Head, batch: Batch, global_batch_size: int, pooled: object = None,
          summed: torch.Tensor | None = None) -> torch.Tensor:
    logits = head.logits(pooled, batch) if summed is None else head.logits_from_partials(summed, batch)
    return bce_loss(logits, from_numpy(batch.labels), global_batch_size)


def train_des(rank: int, world: int, workload: Workload, steps: int, variant: str = "des",
              partial: str = "auto") -> dict:
    """One DES worker (``des`` or ``des-rs``; ``partial``: fields, first-layer or auto, as the simulator's
    ``DESOptions.partial``); returns its rows (owned IDs and weights), losses, timings and counters (and the
    bias, for LR and FM). With first-layer partials the owners' backward also adds their share of the first
    layer's weight gradient, which ``dense.allreduce`` sums."""
    comm = Communicator()
    timed = comm.timer.op
    head = model_head(workload, workload.des_partial(partial))
    owned, layout = OwnedTables(initial_rows(workload), rank, world), columns(workload)
    big_b = world * workload.batch_per_worker

    def step(k: int, batch: Batch) -> torch.Tensor:
        ids = gather_ids(batch.ids, comm)
        with timed("compute.ids"):
            sample, column, held = owned.owned_in(ids)
            segment = sample * layout.fields + layout.field[column]
        with timed("compute.partial"):  # (B, r): this worker's share of every sample's partial result
            partial = head.partials(owned.weight, owned.index(held, layout.table[column]), segment, big_b,
                                    layout.fields)
        with torch.no_grad():
            if variant == "des-rs":
                mine = comm.reduce_scatter(partial, "des.partials")
            else:  # in place: partial's values are not needed again
                b = workload.batch_per_worker
                mine = comm.all_reduce(partial.detach(), "des.partials")[rank * b:(rank + 1) * b]
        summed = mine.detach().requires_grad_(True)  # the head's input: its gradient is des.partials_grad's
        with timed("compute.forward"):
            loss = _loss(head, batch, big_b, summed=summed)
        with timed("compute.backward"):
            loss.backward()
        grad = comm.all_gather(summed.grad, "des.partials_grad")
        with timed("compute.update"):
            partial.backward(grad)
        sgd([owned.weight], head.parameters(), comm)
        return loss

    losses = run_steps(comm, steps, lambda k: worker_batch(workload, rank, k), step)
    return {**shard_result(owned, losses, comm), **_bias(head)}


def train_des_a2a(rank: int, world: int, workload: Workload, steps: int, partial: str = "auto") -> dict:
    """DES with all-to-all (``des-a2a``): each worker sends every owner the IDs of its b samples that owner
    holds (``des.ids``, in (sample, field, slot) order, after their per-(sample, field) ``des.lengths``),
    owners pool them into (b, r) partial rows per requester and return them (``des.partials``), and backward
    sends each owner the (b, r) partial gradients (``des.partials_grad``); owners kept the IDs and backpropagate
    into their rows. This is TorchRec's row-wise sharding with pooled outputs. ``partial`` as ``train_des``."""
    comm = Communicator()
    timed = comm.timer.op
    head = model_head(workload, workload.des_partial(partial))
    owned, layout = OwnedTables(initial_rows(workload), rank, world), columns(workload)
    b = workload.batch_per_worker

    def step(k: int, batch: Batch) -> torch.Tensor:
        routed = route_ids(batch.ids, layout, comm)
        with timed("compute.partial"):
            partials = [head.partials(owned.weight, owned.index(ids, layout.field_table[segment % layout.fields]),
                                      segment, b, layout.fields) for segment, ids in routed]
        returned = comm.all_to_all([p.detach() for p in partials], "des.partials", [b] * world)
        with timed("compute.forward"):
            summed = torch.stack(returned).sum(dim=0).requires_grad_(True)
            loss = _loss(head, batch, world * b, summed=summed)
        with timed("compute.backward"):
            loss.backward()
        grads = comm.all_to_all([summed.grad] * world, "des.partials_grad", [b] * world)
        with timed("compute.update"):
            torch.autograd.backward(partials, grads)
        sgd([owned.weight], head.parameters(), comm)
        return loss

    losses = run_steps(comm, steps, lambda k: worker_batch(workload, rank, k), step)
    return {**shard_result(owned, losses, comm), **_bias(head)}


def train_dp(rank: int, world: int, workload: Workload, steps: int) -> dict:
    """Data parallel (``dp``), as the simulator's ``lower_dp`` accounts it: every worker holds every table,
    looks up and pools its batch's rows, and the whole tables' gradients (``sparse_params`` values:
    ``sparse.allreduce``, :class:`~simulator.executor.tables.ReplicatedTables`) and the dense ones
    (``dense_params``: ``dense.allreduce``) are all-reduced. "owned" is every row of every table."""
    comm = Communicator()
    timed = comm.timer.op
    head = model_head(workload)
    replicated, layout = ReplicatedTables(initial_rows(workload)), columns(workload)

    def step(k: int, batch: Batch) -> torch.Tensor:
        with timed("compute.lookup"):
            index = replicated.index(from_numpy(np.concatenate(batch.ids, axis=1)), layout.table)
            pooled = head.pool(replicated.weight, index, sparse=True)
        with timed("compute.forward"):
            loss = _loss(head, batch, world * workload.batch_per_worker, pooled)
        with timed("compute.backward"):
            loss.backward()
        replicated.all_reduce_and_update(comm, LEARNING_RATE)
        sgd([], head.parameters(), comm)
        return loss

    losses = run_steps(comm, steps, lambda k: worker_batch(workload, rank, k), step)
    return {**shard_result(replicated, losses, comm), **_bias(head)}


def _bias(head: Head) -> dict:
    """LR's and FM's trained bias (their tests compare it with the reference's)."""
    return {"bias": float(head.bias.detach())} if isinstance(head, SumHead) else {}

