"""Parameter server, for real: worker and server ranks for every executor model, synchronous (BSP) or
asynchronous (ASP).

Ranks 0..N-1 are workers, the last P ranks servers; server s owns the rows with ``id mod P == s`` of every
table (``simulator.strategies.base.shard_of``). Models plug in their dense part (``train.model_head``): what a
worker computes from the rows of its batch's ID slots. Keys travel as global row numbers (table offset + id).

Phases are timed as ``simulator.executor.train``'s; a server's as ``server.lookup`` (the rows a pull asks
for) and ``server.update`` (applying pushed gradients), each transfer under its category.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
import torch.distributed as dist

from simulator.executor import tensors
from simulator.executor.comm import Communicator, payload_bytes
from simulator.executor.sum_models import LEARNING_RATE, Batch, bce_loss, worker_batch
from simulator.executor.tables import initial_rows
from simulator.executor.tensors import from_numpy
from simulator.executor.train import Head, model_head, run_steps, sgd, timings
from workloads import Workload

MODES = ("sync", "async")
HEADER_TAG, PAYLOAD_TAG = 1, 2  # ASP point-to-point tags: a server's receive-from-any matches headers only
PULL, PUSH = 0, 1  # ASP request kinds

Transfer = tuple[int, torch.Tensor, str | None]  # (peer rank, tensor, category; None: metadata, not counted)


def train_ps(rank: int, world: int, workload: Workload, steps: int, servers: int, mode: str = "sync") -> dict:
    """A PS rank: ranks 0..N-1 are workers; the last ``servers`` ranks are servers, server s owning the rows
    with ``id mod P == s`` of every table (``shard_of``). Per step a worker sends each server the keys of its
    batch's distinct IDs that server owns and gets the rows back (``sparse.pull``), computes, and pushes the
    keys with the row gradients (``sparse.push``).

    ``mode="sync"`` (BSP): a server sums each row's gradients over the workers and applies them before the
    next step's pulls; dense parameters are all-reduced among workers (``dense.allreduce``, PERSIA-like);
    the loss is the global batch's (workers' losses summed, category ``metrics``).
    ``mode="async"`` (ASP): see ``_work_async`` and ``_serve_async``; dense parameters live on the servers.

    Workers return ``losses``, ``counters`` and timings (``train.timings``); servers ``owned`` (the global
    rows they hold), ``weights`` (those rows), ``counters`` and timings (BSP: per step; ASP: one entry, the
    totals of every request served)."""
    if mode not in MODES:
        raise ValueError(f"train_ps runs mode {' or '.join(MODES)}, not {mode}")
    n = world - servers
    comm = Communicator()
    if mode == "async":
        return _serve_async(comm, rank - n, n, workload, steps) if rank >= n else _work_async(
            comm, rank, n, workload, steps)
    workers_group = dist.new_group(list(range(n)))  # created by every rank, used by workers
    if rank >= n:
        return _serve(comm, rank - n, n, workload, steps)
    dense = Communicator(workers_group, comm.timer)
    timed = comm.timer.op
    width = _row_width(workload)
    head = model_head(workload)

    def step(k: int, batch: Batch) -> torch.Tensor:
        with timed("compute.ids"):
            keys, where = _batch_keys(workload, batch, n, servers)
        comm.exchange_variable(keys, [], "sparse.pull")  # the key counts go first (metadata)
        pulled = {peer: tensors.empty(len(key), width) for peer, key in keys.items()}
        comm.exchange({}, pulled, "sparse.pull")  # the rows: their count is known
        with timed("compute.lookup"):
            table = torch.cat(list(pulled.values())).requires_grad_(True)  # the pulled rows, servers in order
            pooled = head.pool(table, where, sparse=True)
        with timed("compute.forward"):
            loss = bce_loss(head.logits(pooled, batch), from_numpy(batch.labels), n * workload.batch_per_worker)
        with timed("compute.backward"):
            loss.backward()
            grads = _per_server(table, keys)
        # the push carries the pulled keys again (as ps-lite's do), with their gradients, in one round
        comm.exchange({peer: [keys[peer], grads[peer]] for peer in keys}, {}, "sparse.push")
        sgd([], head.parameters(), dense)
        return loss

    losses = run_steps(comm, steps, lambda k: worker_batch(workload, rank, k), step, metrics=dense)
    counters = comm.counters()
    counters.update(dense.counters())
    return {"losses": losses, "counters": counters, **timings(comm)}


def _per_server(table: torch.Tensor, keys: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Each pulled key's gradient, summed over the batch's slots that used it (the sparse gradient of the
    pulled rows added into one row per key, as a PS client aggregates before it pushes), flat per server."""
    summed = torch.zeros_like(table).index_add_(0, table.grad._indices()[0], table.grad._values())
    return {peer: rows.reshape(-1) for peer, rows in zip(keys, summed.split([len(k) for k in keys.values()]),
                                                          strict=True)}


def _row_width(workload: Workload) -> int:
    widths = {t.params_per_id for t in workload.tables}
    if len(widths) != 1:
        raise ValueError("the PS executor needs one row width across tables")
    return widths.pop()


def _table_offsets(workload: Workload) -> np.ndarray:
    """Global row number of each table's row 0 (tables in workload order)."""
    return np.concatenate([[0], np.cumsum([t.rows for t in workload.tables])[:-1]]).astype(np.int64)


def _batch_keys(workload: Workload, batch: Batch, n: int, servers: int) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """A worker's distinct keys (global row numbers) per server rank (n + s), sorted, and where each (sample,
    ID slot) of its batch finds its row among them, the servers' keys one after the other: (b, m). One
    ``unique`` over (owner, key) does both, as a PS client's dedup with its inverse does."""
    offsets = _table_offsets(workload)
    total = int(offsets[-1] + workload.tables[-1].rows)  # global rows
    gids = np.concatenate([offsets[t] + ids for t, ids in enumerate(batch.ids)], axis=1)  # (b, m)
    owner = np.concatenate([ids % servers for ids in batch.ids], axis=1)
    keys, inverse = np.unique(owner * total + gids, return_inverse=True)  # sorted by (owner, key)
    per_server = np.split(keys % total, np.searchsorted(keys, np.arange(1, servers) * total))
    return {n + s: from_numpy(k) for s, k in enumerate(per_server)}, from_numpy(inverse.reshape(gids.shape))


def _shard(workload: Workload, server: int, servers: int) -> tuple[np.ndarray, np.ndarray]:
    """The global rows server ``server`` of ``servers`` holds (sorted) and their initial values."""
    offsets = _table_offsets(workload)
    full = np.concatenate(initial_rows(workload))
    table_of = np.repeat(np.arange(len(workload.tables)), [t.rows for t in workload.tables])
    owned = np.nonzero((np.arange(len(full)) - offsets[table_of]) % servers == server)[0]
    return owned, full[owned].copy()


def _serve(comm: Communicator, server: int, n: int, workload: Workload, steps: int) -> dict:
    """A BSP server: answer every worker's pull, then apply the summed pushed gradients (per step)."""
    owned, weights = _shard(workload, server, comm.world - n)
    width = weights.shape[1]
    workers = list(range(n))
    timed = comm.timer.op

    def serve(_k: int, _data: None) -> None:
        keys = comm.exchange_variable({}, workers, "sparse.pull")
        with timed("server.lookup"):
            local = {w: np.searchsorted(owned, keys[w].cpu().numpy()) for w in workers}
            rows = {w: from_numpy(weights[local[w]].reshape(-1)) for w in workers}
        comm.exchange(rows, {}, "sparse.pull")
        pushed = {w: [torch.empty_like(keys[w]), tensors.empty(len(keys[w]) * width)] for w in workers}
        comm.exchange({}, pushed, "sparse.push")
        with timed("server.update"):  # SGD is linear: each worker's rows applied in turn equal their sum's
            for w, (pushed_keys, grads) in pushed.items():
                if not torch.equal(pushed_keys, keys[w]):
                    raise RuntimeError(f"worker {w} pushed other keys than it pulled")
                weights[local[w]] -= LEARNING_RATE * grads.cpu().numpy().reshape(-1, width)

    run_steps(comm, steps, lambda k: None, serve)
    return {"owned": owned, "weights": weights, "counters": comm.counters(), **timings(comm)}


def _dense_range(size: int, server: int, servers: int) -> tuple[int, int]:
    """Server ``server``'s contiguous range of the ``size`` flat dense parameters (``model.parameters()``
    order), whole values as the simulator splits them (``simulator.strategies.ps``)."""
    return size * server // servers, size * (server + 1) // servers


def _transfer(comm: Communicator, sends: list[Transfer], receives: list[Transfer]) -> None:
    """Point-to-point, counted: post every receive and then every send at once (non-blocking, so neither
    side waits on the other's order), then wait for them category by category, timing each and counting
    its payload bytes under its category. Empty tensors are not sent (the receiver knows their length).
    Metadata (category None) is a request header: sent under its own tag, waited for, never counted.
    Every wait is bounded by the process group's timeout."""
    first = next((category for _, _, category in (*sends, *receives) if category), "metadata")
    with comm.timer.op(first):  # the whole call, headers and host work included, under its first category
        _post_and_wait(comm, sends, receives)


def _post_and_wait(comm: Communicator, sends: list[Transfer], receives: list[Transfer]) -> None:
    pending: dict[str | None, list[dist.Work]] = defaultdict(list)
    moved: dict[str | None, list[float]] = defaultdict(lambda: [0.0, 0.0])  # bytes sent, received
    for post, transfers, side in ((dist.irecv, receives, 1), (dist.isend, sends, 0)):
        for peer, tensor, category in transfers:
            comm.check(tensor, category)
            if tensor.numel():
                tag = HEADER_TAG if category is None else PAYLOAD_TAG
                pending[category].append(post(tensor, peer, group=comm.group, tag=tag))
                moved[category][side] += payload_bytes(tensor)
    for work in pending.pop(None, []):
        work.wait()
    for category, works in pending.items():
        with comm._timed(category, *moved[category]):
            for work in works:
                work.wait()


def _header(kind: int, keys: int) -> torch.Tensor:
    """An ASP request header (metadata): its kind (PULL, PUSH) and number of keys."""
    return tensors.tensor([kind, keys], torch.int64)


def _flat_dense(model: Head) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _work_async(comm: Communicator, rank: int, n: int, workload: Workload, steps: int) -> dict:
    """An ASP worker: its own request stream, never waiting for another worker. Per step it pulls from
    every server the rows of its batch's distinct IDs that server owns (``sparse.pull``) and the server's
    range of the dense parameters (``dense.pull``), computes, and pushes the keys with the row gradients
    (``sparse.push``) and the dense gradients' ranges (``dense.push``): the simulator's ``dense=ps``. The
    loss is this worker's own, over its b samples (each push is one SGD step on its minibatch, so one
    worker trains exactly like single-process SGD). A step's wall time runs from its start to the end of
    its push; there is no barrier."""
    servers = comm.world - n
    width = _row_width(workload)
    head = model_head(workload)
    params = head.parameters()
    ranges = {n + s: _dense_range(sum(p.numel() for p in params), s, servers) for s in range(servers)}
    timed = comm.timer.op

    def step(_k: int, batch: Batch) -> torch.Tensor:
        with timed("compute.ids"):
            keys, where = _batch_keys(workload, batch, n, servers)
        rows = {peer: tensors.empty(len(k), width) for peer, k in keys.items()}
        dense = {peer: tensors.empty(hi - lo) for peer, (lo, hi) in ranges.items()}
        _transfer(comm, [(peer, _header(PULL, len(k)), None) for peer, k in keys.items()]
                  + [(peer, k, "sparse.pull") for peer, k in keys.items()],
                  [(peer, r, "sparse.pull") for peer, r in rows.items()]
                  + [(peer, d, "dense.pull") for peer, d in dense.items()])
        with timed("compute.lookup"), torch.no_grad():
            for param, value in zip(params, torch.cat(list(dense.values())).split([p.numel() for p in params]),
                                    strict=True):
                param.copy_(value.reshape(param.shape))
        with timed("compute.lookup"):
            table = torch.cat(list(rows.values())).requires_grad_(True)  # the pulled rows, servers in order
            pooled = head.pool(table, where, sparse=True)
        with timed("compute.forward"):
            loss = bce_loss(head.logits(pooled, batch), from_numpy(batch.labels), workload.batch_per_worker)
        with timed("compute.backward"):
            loss.backward()
            grads = _per_server(table, keys)
            dense_grad = torch.cat([p.grad.reshape(-1) for p in params])
            for param in params:
                param.grad = None
        _transfer(comm, [(peer, _header(PUSH, len(k)), None) for peer, k in keys.items()]
                  + [(peer, k, "sparse.push") for peer, k in keys.items()]
                  + [(peer, grads[peer], "sparse.push") for peer in keys]
                  + [(peer, dense_grad[lo:hi], "dense.push") for peer, (lo, hi) in ranges.items()], [])
        return loss

    losses = run_steps(comm, steps, lambda k: worker_batch(workload, rank, k), step, synchronous=False)
    return {"losses": losses, "counters": comm.counters(), **timings(comm)}


def _serve_async(comm: Communicator, server: int, n: int, workload: Workload, steps: int) -> dict:
    """An ASP server: serves requests one at a time in arrival order (a receive from any worker), each
    worker's in the order it sent them, and applies a push's gradients (rows and its dense range) as soon
    as it has them. Every worker sends it one pull and one push per step: it stops after 2 N steps'."""
    owned, weights = _shard(workload, server, comm.world - n)
    width = weights.shape[1]
    initial = _flat_dense(model_head(workload))
    lo, hi = _dense_range(len(initial), server, comm.world - n)
    dense = initial[lo:hi].clone()
    header = tensors.empty(2, dtype=torch.int64)
    timed = comm.timer.op

    def serve(worker: int) -> None:
        kind, count = header.tolist()
        keys = tensors.empty(count, dtype=torch.int64)
        if kind == PULL:
            _transfer(comm, [], [(worker, keys, "sparse.pull")])
            with timed("server.lookup"):
                rows = from_numpy(weights[np.searchsorted(owned, keys.cpu().numpy())].reshape(-1))
            _transfer(comm, [(worker, rows, "sparse.pull"), (worker, dense, "dense.pull")], [])
        else:
            grads, dense_grad = tensors.empty(count * width), tensors.empty(hi - lo)
            _transfer(comm, [], [(worker, keys, "sparse.push"), (worker, grads, "sparse.push"),
                                 (worker, dense_grad, "dense.push")])
            with timed("server.update"):
                rows = np.searchsorted(owned, keys.cpu().numpy())
                weights[rows] -= LEARNING_RATE * grads.cpu().numpy().reshape(-1, width)
                dense.sub_(LEARNING_RATE * dense_grad)

    def serve_all(_k: int, _data: None) -> None:  # one "step": every request; ``ops`` holds their totals
        for _ in range(2 * n * steps):
            serve(dist.recv(header, src=None, group=comm.group, tag=HEADER_TAG))  # metadata, bounded by the timeout

    run_steps(comm, 1, lambda k: None, serve_all, synchronous=False)
    return {"owned": owned, "weights": weights, "counters": comm.counters(), **timings(comm)}
