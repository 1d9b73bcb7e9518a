"""Compute-op durations of a training step, from the workload and ``simulator.compute``'s roofline model.

Arrays of rows are per table (last axis); leading axes (workers, servers) pass through, so one call
prices an op on every rank.
"""

from __future__ import annotations

import numpy as np

from simulator import compute
from simulator.compute import Device
from workloads import Workload

DTYPES = {2: "bf16", 4: "fp32", 8: "fp64"}


def dtype(workload: Workload) -> str:
    return DTYPES[workload.dtype_bytes]


def row_bytes(workload: Workload) -> np.ndarray:
    """Bytes of one row (``params_per_id`` values) of each table."""
    return np.array([t.params_per_id * workload.dtype_bytes for t in workload.tables], dtype=np.float64)


def pooled_bytes(workload: Workload) -> np.ndarray:
    """Bytes of one pooled output row (``dim`` values) of each table."""
    return np.array([t.dim * workload.dtype_bytes for t in workload.tables], dtype=np.float64)


def dense_kernels(workload: Workload) -> int:
    """Kernels of the dense part's forward: one per linear layer (GEMM with fused bias and activation) and
    one for the interaction and loss."""
    return len(workload.linear_layers) + 1


def dense_forward_s(workload: Workload, device: Device, samples: float) -> float:
    """Forward of the dense part (MLPs, interaction) for ``samples`` samples."""
    return float(compute.dense_forward_s(
        device, samples * workload.dense_flops_per_sample, workload.dense_params * workload.dtype_bytes,
        samples * workload.activation_bytes_per_sample, dtype(workload), dense_kernels(workload)))


def dense_backward_s(workload: Workload, device: Device, samples: float) -> float:
    return float(compute.dense_backward_s(
        device, samples * workload.dense_flops_per_sample, workload.dense_params * workload.dtype_bytes,
        samples * workload.activation_bytes_per_sample, dtype(workload), dense_kernels(workload)))


def lookup_s(workload: Workload, device: Device, lookups: np.ndarray, unique_rows: np.ndarray) -> np.ndarray:
    """Gather ``unique_rows`` rows and pool ``lookups`` of them, summed over tables (last axis)."""
    per_table = compute.embedding_lookup_s(device, np.asarray(lookups, dtype=np.float64),
                                           np.asarray(unique_rows, dtype=np.float64), row_bytes(workload))
    return np.sum(per_table, axis=-1)


def ids_s(device: Device, ids: np.ndarray | float) -> np.ndarray | float:
    """Finding where ``ids`` IDs live (owner, dedup, routing), before any lookup."""
    return compute.id_handling_s(device, ids)


def sparse_update_s(workload: Workload, device: Device, unique_rows: np.ndarray) -> np.ndarray:
    """Optimizer update of ``unique_rows`` rows on the device that owns them, summed over tables."""
    per_table = compute.embedding_update_s(device, np.asarray(unique_rows, dtype=np.float64), row_bytes(workload),
                                           workload.optimizer_slots)
    return np.sum(per_table, axis=-1)


def server_update_s(workload: Workload, server: Device, rows: np.ndarray) -> np.ndarray:
    """A PS server applying the optimizer to ``rows`` received rows, summed over tables."""
    per_table = compute.ps_server_update_s(server, np.asarray(rows, dtype=np.float64), row_bytes(workload),
                                           workload.optimizer_slots)
    return np.sum(per_table, axis=-1)


def dense_update_s(workload: Workload, device: Device, params: float | np.ndarray) -> float | np.ndarray:
    return compute.dense_update_s(device, params, workload.dtype_bytes, workload.optimizer_slots)
