"""Synchronous parameter server, for real: worker and server ranks for every executor model.

Ranks 0..N-1 are workers, the last P ranks servers; server s owns the rows with ``id mod P == s`` of every
table (``simulator.strategies.base.shard_of``). Models plug in their dense part (``dense_head``): what a
worker computes from the rows of its batch's ID slots.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from simulator.executor.comm import Communicator
from simulator.executor.pooled_models import MODELS as POOLED_MODELS
from simulator.executor.pooled_models import PooledHead, initial_tables
from simulator.executor.sum_models import LEARNING_RATE, SumHead, bce_loss, global_loss, initial_rows, sgd, worker_batch
from workloads import Workload


def dense_head(workload: Workload) -> SumHead | PooledHead:
    return PooledHead(workload) if workload.model in POOLED_MODELS else SumHead(workload)


def _initial(workload: Workload) -> list[np.ndarray]:
    return initial_tables(workload) if workload.model in POOLED_MODELS else initial_rows(workload)


def train_ps(rank: int, world: int, workload: Workload, steps: int, servers: int) -> dict:
    """Synchronous PS: ranks 0..N-1 are workers; the last ``servers`` ranks are servers, server s owning the
    rows with ``id mod P == s`` of every table (``shard_of``). Per step a worker sends each server the keys
    of its batch's distinct IDs that server owns and gets the rows back (``sparse.pull``), computes, and
    pushes the keys with the row gradients (``sparse.push``); a server sums each row's gradients over the
    workers and applies them before the next step's pulls (BSP). Dense parameters are all-reduced among
    workers (``dense.allreduce``, PERSIA-like). Keys travel as global row numbers (table offset + id)."""
    n = world - servers
    comm = Communicator()
    workers_group = torch.distributed.new_group(list(range(n)))  # created by every rank, used by workers
    if rank >= n:
        return _serve(comm, rank - n, n, workload, steps)
    dense = Communicator(workers_group)
    offsets = _table_offsets(workload)
    width = _row_width(workload)
    model = dense_head(workload)
    losses, step_s = [], []
    for step in range(steps):
        comm.barrier()
        started = time.perf_counter()
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
        logits = model(torch.cat([pulled[peer] for peer in keys])[where], rank, step)
        loss = bce_loss(logits, torch.from_numpy(mine.labels), n * workload.batch_per_worker)
        loss.backward()
        comm.exchange_variable(keys, [], "sparse.push")
        comm.exchange_variable({peer: pulled[peer].grad.reshape(-1) for peer in keys}, [], "sparse.push")
        sgd([], [], model.parameters(), dense)
        step_s.append(time.perf_counter() - started)
        losses.append(global_loss(loss, dense))
    counters = comm.counters()
    counters.update(dense.counters())
    return {"losses": losses, "step_s": step_s, "counters": counters}


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
    full = np.concatenate(_initial(workload))
    width = full.shape[1]
    table_of = np.repeat(np.arange(len(workload.tables)), [t.rows for t in workload.tables])
    ids_all = np.arange(len(full)) - offsets[table_of]
    owned = np.nonzero(ids_all % servers == server)[0]  # global rows this server holds
    weights = full[owned].copy()
    workers = list(range(n))
    for _ in range(steps):
        comm.barrier()
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


