"""Parameter server: workers pull the rows their batch needs and push their gradients (docs/TRAINING_MODEL.md).

Per step, worker w with U_w distinct IDs (split over P servers by ``shard_of``):
- ``ps.keys``: it dedups its b m IDs into keys per server (``roofline.ids``);
- ``sparse.pull``: U_w keys out (``id_bytes`` each), U_w rows back (``params_per_id x comm_bytes``: every
  value on the wire in the workload's ``comm_bytes``, stored values in ``dtype_bytes``);
- the pulled rows pooled per sample (``roofline.lookup``), forward and backward on its b samples;
- ``sparse.push``: U_w keys + U_w row gradients out;
- dense parameters on the servers (``dense=ps``: ``dense.pull`` P_d values at the start of a step,
  ``dense.push`` P_d gradients at its end, range-partitioned in whole values: server j holds
  [P_d j // P, P_d (j+1) // P)) or all-reduced among workers
  (``dense=allreduce``, PERSIA-like);
- each server merges the gradients of its rows and applies the optimizer on its CPU.
Synchronous (BSP): one request round per step; a server answers step k+1's pulls after applying every
worker's step-k gradients. Asynchronous (``mode=async``) and bounded staleness (``mode=ssp``, bound s):
every worker has its own request stream; a server serves and updates for each worker separately (its
requests in order, other workers' concurrently), and step k+1's pulls wait for no update (async) or for
every worker's step k - s update (ssp). A fast worker runs ahead of a slow one by at most s steps.
With ``server_threads`` = T, a server's lookups and updates for all workers share T threads, first come
first served (``StepGraph.fifo``), as a real server's request handlers do.
"""

from __future__ import annotations

import numpy as np

from simulator.compute import roofline
from simulator.core.stepgraph import StepGraph
from simulator.options import PSOptions, StrategyOptions
from simulator.strategies import costs
from simulator.strategies.base import (
    Cluster,
    Lowered,
    Strategy,
    collective,
    demand,
    exchange,
    host_op,
    ids_op,
    worker_memory,
)
from simulator.strategies.closed import Terms, memory_fits
from workloads import Workload


def lower_ps(workload: Workload, cluster: Cluster, steps: int = 1, options: PSOptions | None = None) -> Lowered:
    """The PS step graph of ``steps`` steps on ``cluster`` (which must have servers)."""
    opts = options or PSOptions()
    workers, servers = cluster.workers, cluster.servers
    n, p = len(workers), len(servers)
    if p == 0:
        raise ValueError("the ps strategy needs at least one server")
    server_device = cluster.server_device or cluster.device
    s, key = workload.comm_bytes, workload.id_bytes  # s: bytes per value on the wire
    values = np.array([t.params_per_id for t in workload.tables], dtype=np.float64) * s
    b = workload.batch_per_worker
    dense_bytes = workload.dense_params * s
    # dense=ps: server j holds the whole values [D j // P, D (j+1) // P) of the flattened dense parameters
    dense_shard = np.diff(workload.dense_params * np.arange(p + 1) // p).astype(np.float64)
    graph = StepGraph(cluster.fabric.n_hosts, workers, servers, steps)
    # Sync: one request round of every worker per step. Async/ssp: each worker has its own request stream
    # (its ops, and the servers' part in them, are ordered per worker only).
    groups = [np.arange(n)] if opts.mode == "sync" else [np.array([w]) for w in range(n)]
    updates: list[tuple[int, ...]] = []  # per step: the server update ops of every group
    fwd_s = costs.dense_forward_s(workload, cluster.device, b)
    bwd_s = costs.dense_backward_s(workload, cluster.device, b)
    stats = demand(workload, n) if workload.ids == "expected" else None
    p2p = cluster.collective_costs.get("p2p")
    for k in range(steps):
        host_op(graph, workers, cluster.device, k)
        dem = stats or demand(workload, n, k)
        keys_ws = dem.split_totals(p)[0]  # (workers, servers): distinct IDs of each worker held by each server
        rows_ws = dem.split_totals(p, weights=values)[0]
        # Pooling the pulled rows forward, and scattering gradients into them backward: the same gather.
        pool_s = costs.lookup_s(workload, cluster.device, np.broadcast_to(dem.lookups, dem.unique.shape), dem.unique,
                                b)
        waits = _updates_to_wait_for(updates, k, opts)
        step_updates, backwards = [], []
        for members in groups:
            own = len(groups) > 1
            comm, server_stream = (f"ps.w{members[0]}", f"server.w{members[0]}") if own else ("comm", "server")
            worker = int(members[0]) if own else None  # the request stream's worker
            if own and opts.server_threads is not None:  # one pool of threads per server for every worker
                server_stream = "server.pool"
                graph.fifo[server_stream] = opts.server_threads
            hosts = workers[members]
            src, dst = np.repeat(hosts, p), np.tile(servers, len(members))
            keys = keys_ws[members].ravel() * key
            rows = rows_ws[members].ravel()
            requested = dem.requested(p, members)
            dedup = ids_op(graph, "ps.keys", hosts, costs.ids_s(cluster.device, dem.lookups.sum(), dedup=True), (), k)
            pull = exchange(graph, "pull.keys", "sparse.pull", src, dst, keys, waits + dedup, k, comm, p2p, worker)
            lookup = graph.compute("server.lookup", "server.lookup", servers,
                                   costs.server_lookup_s(workload, server_device, requested, len(members)),
                                   deps=pull, step=k, stream=server_stream, role="server", worker=worker)
            pulled = exchange(graph, "pull.values", "sparse.pull", dst, src, rows, (lookup,), k, comm, p2p, worker)
            if opts.dense == "ps":
                # in the reply to the pull request: one call per server and direction carries rows and range
                pulled += exchange(graph, "dense.pull", "dense.pull", dst, src, np.tile(dense_shard * s, len(members)),
                                   waits, k, comm, worker=worker)
            pool = graph.compute("lookup", "compute.lookup", hosts, pool_s[members], deps=pulled, step=k)
            fwd = graph.compute("forward", "compute.forward", hosts, fwd_s, deps=(pool,), step=k)
            bwd = graph.compute("backward", "compute.backward", hosts, pool_s[members] + bwd_s, deps=(fwd,), step=k)
            backwards.append(bwd)
            pushed = exchange(graph, "push", "sparse.push", src, dst, keys + rows, (bwd,), k, comm, p2p, worker)
            # A server merges the gradients of the rows it received: distinct across the round's workers.
            merged = requested if own else dem.owned_global(p)
            server_s = costs.server_update_s(workload, server_device, merged, len(members))
            if opts.dense == "ps":
                pushed += exchange(graph, "dense.push", "dense.push", src, dst, np.tile(dense_shard * s, len(members)),
                                   (bwd,), k, comm, worker=worker)  # with the push's rows, in its call
                server_s = server_s + costs.dense_update_s(workload, server_device, dense_shard)
            step_updates.append(graph.compute("server.update", "server.update", servers, server_s, deps=pushed,
                                              step=k, stream=server_stream, role="server", worker=worker))
        if opts.dense == "allreduce":
            reduced = collective(graph, cluster, "dense.allreduce", "allreduce", dense_bytes, workers,
                                 tuple(backwards), k)
            graph.compute("dense.update", "compute.update", workers,
                          costs.dense_update_s(workload, cluster.device, workload.dense_params), deps=reduced, step=k)
        updates.append(tuple(step_updates))

    unique = (stats or demand(workload, n)).unique
    unique = unique[[np.argmax(unique @ values)]]  # the worker that pulls the most
    return Lowered(graph, {role: {k: float(v[0]) if np.ndim(v) else v for k, v in parts.items()}
                           for role, parts in ps_memory(workload, p, opts, unique, b).items()})


def ps_memory(workload: Workload, servers: int, options: PSOptions, unique: np.ndarray,
              batch_per_worker: float | np.ndarray) -> dict[str, dict[str, float | np.ndarray]]:
    """Memory (bytes) by component of a PS worker (the rows it pulls, and their gradients: ``unique``
    distinct IDs per table, last axis) and of a server (its shard of the tables, and of the dense part
    with ``dense=ps``), with optimizer state on the servers."""
    slots = workload.optimizer_slots
    values = np.array([t.params_per_id for t in workload.tables], dtype=np.float64) * workload.dtype_bytes
    pulled = (np.asarray(unique) * values).sum(axis=-1) * 2  # rows and their gradients
    dense_copies = 2 if options.dense == "ps" else 2 + slots
    dense_bytes = workload.dense_params * workload.dtype_bytes
    return {"worker": worker_memory(workload, dense_copies, batch_per_worker=batch_per_worker, pulled_rows=pulled),
            "server": {"sparse_shard": workload.sparse_bytes * (1 + slots) / servers,
                       "dense_shard": dense_bytes * (1 + slots) / servers if options.dense == "ps" else 0.0}}


def _updates_to_wait_for(updates: list[tuple[int, ...]], step: int, opts: PSOptions) -> tuple[int, ...]:
    """The server updates step ``step``'s pulls wait for: the previous step's (sync), step - 1 - s's (ssp),
    none (async)."""
    lag = {"sync": 0, "ssp": opts.staleness, "async": None}[opts.mode]
    if lag is None or step - 1 - lag < 0:
        return ()
    return updates[step - 1 - lag]


def _lower(workload: Workload, cluster: Cluster, steps: int, options: StrategyOptions) -> Lowered:
    return lower_ps(workload, cluster, steps, options.ps)


def closed_form(t: Terms) -> dict[str, np.ndarray]:
    """Synchronous ps per batch size: keys to the servers (K), their lookup (L), rows back (V), with
    ``dense=ps`` the dense values after them on the same stream (DP); forward and backward with the pooling
    (f + g); keys and gradients pushed (Pu), dense gradients after them (DPu); the servers' update (SU):
    ``step = K + L + V + DP + f + g + Pu + DPu + SU``; with ``dense=allreduce`` the dense all-reduce (T_d) and
    update (u) follow the push alongside the servers' update: ``... + Pu + max(SU, T_d + u)``. An exchange
    whose messages all have one size c takes ``max(latency + c x drain)`` of its unit profile."""
    workload, cluster, opts, b, lookups = t.workload, t.cluster, t.options, t.b, t.lookups
    forward, backward = t.dense_pass_s()
    (dense_s, dense_wire), dense_update, host = t.dense_allreduce, t.dense_update_s, t.host_s
    workers, servers = cluster.workers, cluster.servers
    n, p = len(workers), len(servers)
    device, server = cluster.device, cluster.server_device or cluster.device
    s, wire, key = workload.dtype_bytes, workload.comm_bytes, workload.id_bytes
    values = np.array([t.params_per_id for t in workload.tables], dtype=np.float64) * wire  # a row on the wire
    unique = t.unique(lookups)  # (configs, tables): a worker's distinct IDs
    unique_global = t.unique(n * lookups)
    pool = costs.lookup_s(workload, device, lookups, unique, b)
    requested = n * unique / p  # what each server looks up: every worker's distinct IDs it holds
    lookup = costs.server_lookup_s(workload, server, requested, n)
    src, dst = np.repeat(workers, p), np.tile(servers, n)
    keys_s, keys_wire = t.exchange(src, dst, unique.sum(axis=1) / p * key)
    rows_s, rows_wire = t.exchange(dst, src, unique @ values / p)
    push_s, push_wire = t.exchange(src, dst, (unique.sum(axis=1) * key + unique @ values) / p)
    server_s = costs.server_update_s(workload, server, unique_global / p, n)
    pulled_dense = pushed_dense = 0.0
    dense_wire_ps = 0.0
    if opts.ps.dense == "ps":  # server j holds whole values [D j // P, D (j+1) // P): sizes differ by one value
        shard = np.diff(workload.dense_params * np.arange(p + 1) // p).astype(np.float64)
        sizes = np.tile(shard * wire, n)
        sel = (sizes > 0) & (src != dst)
        if sel.any():
            pulled_dense = t.exchange_time_s(dst[sel], src[sel], sizes[sel])
            pushed_dense = t.exchange_time_s(src[sel], dst[sel], sizes[sel])
            dense_wire_ps = 2 * float(sizes[sel].sum())
        server_s = server_s + float(np.max(roofline.dense_update_s(server, shard, s, workload.optimizer_slots)))
    colocated = bool(np.isin(servers, workers).any())
    dedup = roofline.id_handling_s(device, lookups.sum(axis=1), dedup=True)
    head = host + dedup + keys_s + lookup + rows_s + pulled_dense + pool + forward + pool + backward + push_s
    if opts.ps.dense == "ps":
        step = head + pushed_dense + server_s
        worker_end = step if colocated else head + pushed_dense
        tail, hosted = 0.0, server_s  # a worker's compute after backward; a co-located host's
    else:
        step = head + np.maximum(server_s, dense_s + dense_update)
        worker_end = step if colocated else head + dense_s + dense_update
        overlap = np.maximum(0.0, np.minimum(server_s, dense_s + dense_update) - dense_s)
        tail, hosted = dense_update, server_s + dense_update - overlap  # the two updates' union
    busy = host + dedup + 2 * pool + forward + backward + (lookup + hosted if colocated else tail)
    exchanged = keys_wire + rows_wire + push_wire + dense_wire_ps
    reduced = dense_wire if opts.ps.dense == "allreduce" else 0.0
    wire = exchanged + reduced
    traffic = (2 * exchanged if colocated else exchanged) + 2 * reduced
    memory = ps_memory(workload, p, opts.ps, unique, b)
    server_total, server_fits = memory_fits(server, memory["server"], b)
    figures = t.result(step, busy, wire, memory["worker"], traffic / n, memory_server_bytes=server_total)
    figures["exposed_comm_s"] = worker_end - busy  # a dedicated server's update is not a worker's wait
    figures["fits_memory"] = figures["fits_memory"] & server_fits
    return figures


STRATEGIES = (Strategy("ps", "parameter server: pull rows, push gradients (sync, async or bounded staleness)",
                       "recommender", _lower, needs_servers=True, options="ps", closed_form=closed_form),)
