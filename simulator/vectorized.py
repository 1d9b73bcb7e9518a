"""Analytical steps over arrays of batch sizes, in closed form: one evaluation for a whole sweep axis.

For ``des``, ``des-rs``, ``dp`` and synchronous ``ps`` with expected IDs, the analytical engine's critical
path is a fixed chain, written out here (each rank: a compute, a communication and a PS-server stream,
ops in program order):

- ``des``: IDs all-gathered (T_ids) -> partials of the owned rows (c_pf) -> partials all-reduced or
  reduce-scattered (T_p) -> dense forward and backward (f + g) -> partial gradients all-gathered (T_g);
  then the owned rows' backward and update (c_pb) on the compute stream while the dense gradients are
  all-reduced (T_d) on the communication stream; then the dense update (c_du):
  ``step = T_ids + c_pf + T_p + f + g + T_g + max(c_pb, T_d) + c_du``; with ``partial`` first-layer (resolved
  as ``Workload.des_partial``), c_pf and c_pb add the owners' first-layer GEMM over the B samples and its
  backward, f and g lose its FLOPs, and T_p, T_g carry r = ``first_layer_partial_width`` values per sample;
- ``dp``: forward and backward with their lookups (and the tables' dense gradient zeroed, z), then the
  table and dense gradients all-reduced one after the other, then the update:
  ``step = (p + f) + (p + g + z) + T_s + T_d + u``;
- ``ps`` (sync): keys to the servers (K), their lookup (L), rows back (V), with ``dense=ps`` the dense
  values after them on the same stream (DP); forward and backward with the pooling (f + g); keys and
  gradients pushed (Pu), dense gradients after them (DPu); the servers' update (SU):
  ``step = K + L + V + DP + f + g + Pu + DPu + SU``; with ``dense=allreduce`` the dense all-reduce (T_d)
  and update (u) follow the push alongside the servers' update: ``... + Pu + max(SU, T_d + u)``.
  An exchange whose messages all have one size c takes ``max(latency + c x drain)`` of its unit profile.

Bytes on the wire are the workload's ``comm_bytes`` per value, as the strategies send them (stored values
``dtype_bytes``, GEMMs at ``compute_dtype``'s peak: ``workloads.precision``). Every collective time is the
analytical backend's: the fastest candidate algorithm (as ``choose_algorithm``) of ``sum over steps of
repeat x max(latency + size / size_ref x drain)``, each algorithm's profile built once per fabric (and
pipeline shape) and evaluated for every size at once. Compute times are the strategy's cost
functions on arrays. The result equals ``simulate_step(..., "analytical")`` per batch size (tested), at a
small fraction of the cost per configuration (``benchmarks/sweep.py``).
"""

from __future__ import annotations

import numpy as np

from simulator import compute
from simulator.collectives import pipeline_chunks
from simulator.compute import fits
from simulator.strategies import StrategyOptions
from simulator.strategies.base import Cluster, whole_nodes
from simulator.strategies.costs import (
    dense_flops_per_sample,
    dense_kernels,
    dtype,
    embedding_backward_s,
    first_layer_backward_s,
    first_layer_forward_s,
    lookup_s,
    server_lookup_s,
    server_update_s,
    table_gradient_s,
)
from simulator.strategies.des import des_memory
from simulator.strategies.dp import dp_memory
from simulator.tuner import candidate_algorithms, profiled
from workloads import Workload
from workloads.ids import expected_unique
from workloads.precision import check_device

STRATEGIES = ("des", "des-rs", "dp", "ps")


def supports(workload: object, strategy: str, fidelity: str, steps: int = 1,
             options: StrategyOptions | None = None) -> bool:
    """Whether ``step_times`` evaluates this run (else it needs the engine)."""
    return (isinstance(workload, Workload) and workload.ids == "expected" and strategy in STRATEGIES
            and fidelity == "analytical" and steps == 1 and (options is None or options.ps.mode == "sync"
                                                              or strategy != "ps"))


def collective_s(cluster: Cluster, op: str, sizes: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(time s, bytes on the wire) of ``op`` over ``ranks`` at each of ``sizes`` (bytes), with the algorithm
    the engine would pick at each size (the fastest, or the cluster's)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if len(ranks) < 2:
        return np.zeros_like(sizes), np.zeros_like(sizes)
    per_node = whole_nodes(cluster, ranks)
    algos = [cluster.collective_algorithm] if cluster.collective_algorithm else candidate_algorithms(
        op, len(ranks), per_node)
    times, wire = np.full((len(algos), len(sizes)), np.inf), np.zeros((len(algos), len(sizes)))
    for a, algo in enumerate(algos):
        chunks = np.array([pipeline_chunks(op, algo, s) or 0 for s in sizes])
        for c in np.unique(chunks):
            sel = np.nonzero((chunks == c) & (sizes > 0))[0]
            if not len(sel):
                continue
            entry = profiled(cluster.fabric, op, algo, float(sizes[sel[0]]), 0, per_node, ranks)
            scale = sizes[sel] / entry.size_bytes
            times[a, sel] = sum(repeat * (step.latency_s[None, :] + scale[:, None] * step.drain_s[None, :]).max(axis=1)
                                for repeat, step in entry.profile)
            wire[a, sel] = entry.total_bytes * scale
    best = np.argmin(times, axis=0)  # ties go to the first candidate, as min() over the dict does
    columns = np.arange(len(sizes))
    empty = sizes <= 0
    return np.where(empty, 0.0, times[best, columns]), np.where(empty, 0.0, wire[best, columns])


def step_times(workload: Workload, cluster: Cluster, strategy: str, batches: np.ndarray,
               options: StrategyOptions | None = None) -> dict[str, np.ndarray]:
    """Per batch size (samples per worker): step_time_s, samples_per_s, bytes_on_wire,
    bytes_per_worker_mean, compute_s, exposed_comm_s, memory_worker_bytes and fits_memory; for des and des-rs
    also des_partial and partial_width (r), as the engine's summary reports them."""
    opts = options or StrategyOptions.default()
    if not supports(workload, strategy, "analytical", options=opts):
        raise ValueError(f"the closed form covers {', '.join(STRATEGIES)} (ps: sync) with expected IDs, "
                         f"not {strategy}")
    if cluster.collective_costs:
        raise ValueError("the closed form does not model per-call collective costs (a calibration's): use the engine")
    check_device(workload.precision, cluster.device)
    b = np.asarray(batches, dtype=np.float64)
    workers, device, n = cluster.workers, cluster.device, len(cluster.workers)
    host = device.step_overhead_us * 1e-6  # a step's host time outside its ops, first on the compute stream
    s, wire = workload.dtype_bytes, workload.comm_bytes  # bytes per stored value, per value on the wire
    lookups = b[:, None] * np.array([t.fields * t.hotness for t in workload.tables], dtype=np.float64)
    mode = workload.des_partial(opts.des.partial) if strategy in ("des", "des-rs") else "fields"
    flops, act = dense_flops_per_sample(workload, mode == "first-layer"), workload.activation_bytes_per_sample
    weights, kernels = workload.dense_params * s, dense_kernels(workload)
    forward = compute.dense_forward_s(device, b * flops, weights, b * act, dtype(workload), kernels)
    backward = compute.dense_backward_s(device, b * flops, weights, b * act, dtype(workload), kernels)
    dense_s, dense_wire = collective_s(cluster, "allreduce", np.array([workload.dense_params * wire]), workers)
    dense_update = compute.dense_update_s(device, workload.dense_params, s, workload.optimizer_slots)
    if strategy == "ps":
        return _ps(workload, cluster, opts, b, lookups, forward, backward, dense_s, dense_wire, dense_update, host)
    if strategy == "dp":
        unique = _unique(workload, lookups)
        pool = lookup_s(workload, device, lookups, unique, b)
        sparse_s, sparse_wire = collective_s(cluster, "allreduce", np.array([workload.sparse_params * wire]),
                                             workers)
        update = compute.dense_update_s(device, workload.dense_params + workload.sparse_params, s,
                                        workload.optimizer_slots)
        busy = host + 2 * pool + forward + backward + table_gradient_s(workload, device) + update
        step = busy + sparse_s + dense_s
        wire = np.broadcast_to(sparse_wire + dense_wire, b.shape)
        memory = dp_memory(workload, b)["worker"]
    else:
        owned_rows = _unique(workload, n * lookups) / n
        big_b = n * b
        partial_lookups = lookup_s(workload, device, lookups, owned_rows, big_b)
        partial_back = embedding_backward_s(workload, device, lookups, owned_rows, big_b)
        if mode == "first-layer":
            partial_back = partial_back + first_layer_backward_s(workload, device, big_b)
            partial_lookups = partial_lookups + first_layer_forward_s(workload, device, big_b)
        ids_s, ids_wire = (np.zeros_like(b), np.zeros_like(b)) if opts.des.input == "replicated" else collective_s(
            cluster, "allgather", big_b * workload.ids_per_sample * workload.id_bytes, workers)
        r = workload.des_partial_width(mode)
        partial_bytes = big_b * r * wire
        sum_s, sum_wire = collective_s(cluster, "allreduce" if strategy == "des" else "reducescatter",
                                       partial_bytes, workers)
        grad_s, grad_wire = collective_s(cluster, "allgather", partial_bytes, workers)
        held = compute.id_handling_s(device, big_b * workload.ids_per_sample)
        busy = host + held + partial_lookups + forward + backward + partial_back + dense_update
        step = (np.maximum(host, ids_s) + held + partial_lookups + sum_s + forward + backward + grad_s
                + np.maximum(partial_back, dense_s) + dense_update)
        wire = ids_wire + sum_wire + grad_wire + dense_wire
        memory = des_memory(workload, n, strategy, opts.des, b)["worker"]
    total, fitting = _memory(device, memory, b)
    chosen = {"des_partial": np.full(b.shape, mode), "partial_width": np.full(b.shape, r)} if strategy != "dp" else {}
    return {"step_time_s": step, "samples_per_s": n * b / step, "bytes_on_wire": wire,
            "bytes_per_worker_mean": 2 * wire / n, "compute_s": busy, "exposed_comm_s": step - busy,
            "memory_worker_bytes": total, "fits_memory": fitting, **chosen}


def _memory(device: object, parts: dict[str, float | np.ndarray], b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Total bytes and whether they fit ``device``, per batch size."""
    total = sum(np.broadcast_to(v, b.shape) for v in parts.values())
    fitting = np.array([fits(device, {k: float(np.broadcast_to(v, b.shape)[i]) for k, v in parts.items()})[0]
                        for i in range(len(b))])
    return total, fitting


def exchange_s(cluster: Cluster, src: np.ndarray, dst: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(time s, bytes) of a one-round exchange ``src[i] -> dst[i]`` of messages that all have one size, at
    each of ``sizes`` (bytes per message), as ``strategies.base.exchange`` lowers it (self-messages dropped)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    keep = src != dst
    if not keep.any():
        return np.zeros_like(sizes), np.zeros_like(sizes)
    unit = _exchange_profile(cluster, src[keep], dst[keep], np.ones(int(keep.sum())))
    time_s = (unit.latency_s[None, :] + sizes[:, None] * unit.drain_s[None, :]).max(axis=1)
    return np.where(sizes > 0, time_s, 0.0), sizes * int(keep.sum())


def _exchange_profile(cluster: Cluster, src: np.ndarray, dst: np.ndarray, sizes: np.ndarray) -> object:
    """The analytical step profile of messages ``src[i] -> dst[i]`` (hosts) of ``sizes`` bytes, over the
    hosts they involve, as the engine runs an exchange."""
    from simulator.network.analytical import step_profile
    from simulator.schedule import Pattern

    present = np.zeros(cluster.fabric.n_hosts, dtype=bool)
    present[src] = present[dst] = True
    ranks, position = np.nonzero(present)[0], np.cumsum(present) - 1
    return step_profile(cluster.fabric, Pattern.of(len(ranks), position[src], position[dst], sizes), ranks)


def _ps(workload: Workload, cluster: Cluster, opts: StrategyOptions, b: np.ndarray, lookups: np.ndarray,
        forward: np.ndarray, backward: np.ndarray, dense_s: np.ndarray, dense_wire: np.ndarray,
        dense_update: float, host: float) -> dict[str, np.ndarray]:
    """The synchronous PS step per batch size (see the module doc)."""
    from simulator.strategies.ps import ps_memory

    workers, servers = cluster.workers, cluster.servers
    n, p = len(workers), len(servers)
    device, server = cluster.device, cluster.server_device or cluster.device
    s, wire, key = workload.dtype_bytes, workload.comm_bytes, workload.id_bytes
    values = np.array([t.params_per_id for t in workload.tables], dtype=np.float64) * wire  # a row on the wire
    unique = _unique(workload, lookups)  # (configs, tables): a worker's distinct IDs
    unique_global = _unique(workload, n * lookups)
    pool = lookup_s(workload, device, lookups, unique, b)
    requested = n * unique / p  # what each server looks up: every worker's distinct IDs it holds
    lookup = server_lookup_s(workload, server, requested, n)
    src, dst = np.repeat(workers, p), np.tile(servers, n)
    keys_s, keys_wire = exchange_s(cluster, src, dst, unique.sum(axis=1) / p * key)
    rows_s, rows_wire = exchange_s(cluster, dst, src, unique @ values / p)
    push_s, push_wire = exchange_s(cluster, src, dst, (unique.sum(axis=1) * key + unique @ values) / p)
    server_s = server_update_s(workload, server, unique_global / p, n)
    pulled_dense = pushed_dense = 0.0
    dense_wire_ps = 0.0
    if opts.ps.dense == "ps":  # server j holds whole values [D j // P, D (j+1) // P): sizes differ by one value
        shard = np.diff(workload.dense_params * np.arange(p + 1) // p).astype(np.float64)
        sizes = np.tile(shard * wire, n)
        sel = (sizes > 0) & (src != dst)
        if sel.any():
            pulled_dense = _exchange_profile(cluster, dst[sel], src[sel], sizes[sel]).time_s()
            pushed_dense = _exchange_profile(cluster, src[sel], dst[sel], sizes[sel]).time_s()
            dense_wire_ps = 2 * float(sizes[sel].sum())
        server_s = server_s + float(np.max(compute.dense_update_s(server, shard, s, workload.optimizer_slots)))
    colocated = bool(np.isin(servers, workers).any())
    dedup = compute.id_handling_s(device, lookups.sum(axis=1), dedup=True)
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
    total, fitting = _memory(device, memory["worker"], b)
    server_total, server_fits = _memory(server, memory["server"], b)
    return {"step_time_s": step, "samples_per_s": n * b / step, "bytes_on_wire": wire,
            "bytes_per_worker_mean": traffic / n, "compute_s": busy, "exposed_comm_s": worker_end - busy,
            "memory_worker_bytes": total, "memory_server_bytes": server_total, "fits_memory": fitting & server_fits}


def _unique(workload: Workload, draws: np.ndarray) -> np.ndarray:
    """Expected distinct IDs per (batch size, table) among ``draws`` draws of each table."""
    return np.array([[expected_unique(t.rows, d, t.popularity, t.zipf_alpha) for t, d in zip(workload.tables, row,
                                                                                              strict=True)]
                     for row in draws])
