"""What the strategies' closed forms share: a step's common terms over an array of configurations (a batch
size each, and optionally the fabric's link rates and latencies), and the collectives and exchanges priced
as the analytical engine prices them.

A strategy with a closed form (``Strategy.closed_form``, beside its lowering) writes its critical path out
from these terms; ``simulator.run.closed_form.step_times`` picks it from the registry. Every collective time is
the analytical backend's: the fastest candidate algorithm (as ``tuner.choose_algorithm``) of ``sum over
steps of repeat x max(latency + size / size_ref x drain)``, each algorithm's profile built once per fabric
(and pipeline shape) and evaluated for every configuration at once. Link rates and latencies enter in one
place, the profile's evaluation (``StepProfile.times_s`` with the configurations' ``LinkGrid``): a network
term built on ``collective_s`` or ``exchange_profile`` passes ``Terms.grid`` on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from simulator.collectives.algorithms import pipeline_chunks
from simulator.collectives.tuner import candidate_algorithms, profiled
from simulator.compute import roofline
from simulator.compute.roofline import Device
from simulator.network.analytical import StepProfile, profile_times_s, step_profile
from simulator.network.fabric import LinkGrid
from simulator.network.schedule import Pattern
from simulator.options import StrategyOptions
from simulator.strategies.base import Cluster, whole_nodes
from simulator.strategies.costs import dense_flops_per_sample, dense_kernels, dtype
from workloads import AnyWorkload
from workloads.ids import expected_unique


@dataclass
class Terms:
    """A step's common terms per configuration: batch size ``b`` (samples per worker) and, with ``grid``, the
    cluster's fabric at that row's link rates and latencies (else as built). Bytes per stored value ``s`` and
    per value on the wire ``wire``, IDs looked up per table (``lookups``, configs x tables), the host's time
    per step, and (cached) the dense part's all-reduce and update. The recommender's terms (``lookups``,
    ``dense_pass_s``, ``dense_allreduce``, ``dense_update_s``, ``unique``) need a ``Workload``; the others serve
    a ``ClassificationWorkload`` too (``strategies.fc``)."""

    workload: AnyWorkload
    cluster: Cluster
    options: StrategyOptions
    b: np.ndarray
    grid: LinkGrid | None = None

    @property
    def device(self) -> Device:
        return self.cluster.device

    @property
    def n(self) -> int:
        return len(self.cluster.workers)

    @property
    def host_s(self) -> float:
        """A step's host time outside its ops, first on the compute stream."""
        return self.device.step_overhead_us * 1e-6

    @property
    def s(self) -> int:
        return self.workload.dtype_bytes

    @property
    def wire(self) -> int:
        return self.workload.comm_bytes

    @cached_property
    def lookups(self) -> np.ndarray:
        return self.b[:, None] * np.array([t.fields * t.hotness for t in self.workload.tables], dtype=np.float64)

    def dense_pass_s(self, first_layer: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(forward, backward) of the dense part for each batch size (``first_layer``: without DES's
        substituted first layer)."""
        w, device = self.workload, self.device
        flops, act = dense_flops_per_sample(w, first_layer), w.activation_bytes_per_sample
        weights, kernels = w.dense_params * self.s, dense_kernels(w)
        return (roofline.dense_forward_s(device, self.b * flops, weights, self.b * act, dtype(w), kernels),
                roofline.dense_backward_s(device, self.b * flops, weights, self.b * act, dtype(w), kernels))

    @cached_property
    def dense_allreduce(self) -> tuple[np.ndarray, np.ndarray]:
        """(time s, bytes) of the dense gradients' all-reduce over the workers."""
        return self.collective("allreduce", np.array([self.workload.dense_params * self.wire]), self.cluster.workers)

    def collective(self, op: str, sizes: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(time s, bytes on the wire) of ``op`` over ``ranks`` at each of ``sizes`` (bytes), as
        ``collective_s``: every closed form prices its collectives here."""
        return collective_s(self.cluster, op, sizes, ranks, self.grid)

    def exchange(self, src: np.ndarray, dst: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(time s, bytes) of a one-round exchange ``src[i] -> dst[i]`` of messages that all have one size, at
        each of ``sizes`` (bytes per message): ``exchange_scaled`` with unit sizes."""
        return self.exchange_scaled(src, dst, np.ones(len(src)), sizes)

    def exchange_time_s(self, src: np.ndarray, dst: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """Time (s) per configuration of one exchange of messages ``src[i] -> dst[i]`` of ``sizes[i]`` bytes
        (sizes may differ)."""
        return exchange_profile(self.cluster, src, dst, sizes).times_s(np.ones(len(self.b)), self.grid)

    @property
    def dense_update_s(self) -> float:
        w = self.workload
        return roofline.dense_update_s(self.device, w.dense_params, self.s, w.optimizer_slots)

    def unique(self, draws: np.ndarray) -> np.ndarray:
        """Expected distinct IDs per (configuration, table) among ``draws`` draws of each table (each distinct
        row of draws computed once)."""
        distinct, inverse = np.unique(draws, axis=0, return_inverse=True)
        return np.array([[expected_unique(t.rows, d, t.popularity, t.zipf_alpha)
                          for t, d in zip(self.workload.tables, row, strict=True)] for row in distinct]
                        ).reshape(len(distinct), -1)[inverse.reshape(-1)]

    def result(self, step: np.ndarray, busy: np.ndarray, wire: np.ndarray, memory: dict[str, float | np.ndarray],
               per_worker: np.ndarray | None = None, **more: np.ndarray) -> dict[str, np.ndarray]:
        """The summary's figures per batch size (``per_worker``: bytes sent plus received per worker; default
        2 x bytes on the wire / N)."""
        total, fitting = memory_fits(self.device, memory, self.b)
        return {"step_time_s": step, "samples_per_s": self.n * self.b / step, "bytes_on_wire": wire,
                "bytes_per_worker_mean": 2 * wire / self.n if per_worker is None else per_worker,
                "compute_s": busy, "exposed_comm_s": step - busy, "memory_worker_bytes": total,
                "fits_memory": fitting, **more}

    def exchange_scaled(self, src: np.ndarray, dst: np.ndarray, sizes: np.ndarray,
                        scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(time s, bytes) of a one-round exchange of messages ``src[i] -> dst[i]`` of ``sizes[i] x scale``
        bytes at each of ``scale``: sizes that differ per pair but all grow with one quantity (the batch), as
        ``strategies.base.exchange`` lowers it (self and empty messages dropped). Its unit profile gives
        ``max over links of (latency + scale x drain)`` (with ``grid``: at each configuration's rates)."""
        scale = np.asarray(scale, dtype=np.float64)
        keep = (src != dst) & (sizes > 0)
        if not keep.any():
            return np.zeros_like(scale), np.zeros_like(scale)
        time_s = exchange_profile(self.cluster, src[keep], dst[keep], sizes[keep]).times_s(scale, self.grid)
        return np.where(scale > 0, time_s, 0.0), scale * float(sizes[keep].sum())


def memory_fits(device: Device, parts: dict[str, float | np.ndarray], b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Total bytes and whether they fit ``device`` (``roofline.fits``' test: total <= capacity), per batch size."""
    total = sum(np.broadcast_to(v, b.shape) for v in parts.values())
    return total, total <= device.mem_capacity_bytes


def collective_s(cluster: Cluster, op: str, sizes: np.ndarray, ranks: np.ndarray,
                 grid: LinkGrid | None) -> tuple[np.ndarray, np.ndarray]:
    """(time s, bytes on the wire) of ``op`` over ``ranks`` at each of ``sizes`` (bytes; with ``grid``, one size
    or one per configuration), with the algorithm the engine would pick for each (the fastest, or the
    cluster's)."""
    sizes = np.asarray(sizes, dtype=np.float64)
    if grid is not None:
        sizes = np.broadcast_to(sizes, (len(grid),))
    if len(ranks) < 2:
        return np.zeros_like(sizes), np.zeros_like(sizes)
    per_node = whole_nodes(cluster, ranks)
    algos = [cluster.collective_algorithm] if cluster.collective_algorithm else candidate_algorithms(
        op, len(ranks), per_node)
    times, wire = np.full((len(algos), len(sizes)), np.inf), np.zeros((len(algos), len(sizes)))
    for a, algo in enumerate(algos):
        distinct, inverse = np.unique(sizes, return_inverse=True)
        chunks = np.array([pipeline_chunks(op, algo, s) or 0 for s in distinct])[inverse.reshape(-1)]
        for c in np.unique(chunks):
            sel = np.nonzero((chunks == c) & (sizes > 0))[0]
            if not len(sel):
                continue
            entry = profiled(cluster.fabric, op, algo, float(sizes[sel[0]]), 0, per_node, ranks)
            scale = sizes[sel] / entry.size_bytes
            times[a, sel] = profile_times_s(entry.profile, scale, None if grid is None else grid.take(sel))
            wire[a, sel] = entry.total_bytes * scale
    best = np.argmin(times, axis=0)  # ties go to the first candidate, as min() over the dict does
    columns = np.arange(len(sizes))
    empty = sizes <= 0
    return np.where(empty, 0.0, times[best, columns]), np.where(empty, 0.0, wire[best, columns])


def exchange_profile(cluster: Cluster, src: np.ndarray, dst: np.ndarray, sizes: np.ndarray) -> StepProfile:
    """The analytical step profile of messages ``src[i] -> dst[i]`` (hosts) of ``sizes`` bytes, over the
    hosts they involve, as the engine runs an exchange (price it with ``StepProfile.times_s`` and the grid)."""
    present = np.zeros(cluster.fabric.n_hosts, dtype=bool)
    present[src] = present[dst] = True
    ranks, position = np.nonzero(present)[0], np.cumsum(present) - 1
    return step_profile(cluster.fabric, Pattern.of(len(ranks), position[src], position[dst], sizes), ranks)
