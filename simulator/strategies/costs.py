"""Compute-op durations of a training step, from the workload and ``simulator.compute.roofline``'s roofline model.

Arrays of rows are per table (last axis); leading axes (workers, servers) pass through, so one call
prices an op on every rank.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from simulator.compute import roofline
from simulator.compute.roofline import Device
from workloads import Workload


def dtype(workload: Workload) -> str:
    """The dtype whose peak the dense part's GEMMs run at (``Workload.compute_dtype``)."""
    return workload.compute_dtype


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


def dense_flops_per_sample(workload: Workload, first_layer: bool = False) -> int:
    """Forward FLOPs per sample of a worker's dense part; ``first_layer``: without the first dense layer's
    embedding columns (DES ``first-layer``: the row owners compute them, ``first_layer_forward_s``)."""
    return workload.dense_flops_per_sample - (workload.first_layer_flops_per_sample if first_layer else 0)


def dense_forward_s(workload: Workload, device: Device, samples: float, first_layer: bool = False) -> float:
    """Forward of the dense part (MLPs, interaction) for ``samples`` samples (``first_layer``: as above)."""
    return float(roofline.dense_forward_s(
        device, samples * dense_flops_per_sample(workload, first_layer), workload.dense_params * workload.dtype_bytes,
        samples * workload.activation_bytes_per_sample, dtype(workload), dense_kernels(workload)))


def dense_backward_s(workload: Workload, device: Device, samples: float, first_layer: bool = False) -> float:
    return float(roofline.dense_backward_s(
        device, samples * dense_flops_per_sample(workload, first_layer), workload.dense_params * workload.dtype_bytes,
        samples * workload.activation_bytes_per_sample, dtype(workload), dense_kernels(workload)))


def first_layer_forward_s(workload: Workload, device: Device, samples: float | np.ndarray) -> float | np.ndarray:
    """An owner's partial of the first dense layer for ``samples`` samples: its (samples x embeddings read)
    partial times the layer's embedding columns W (``first_layer_flops_per_sample`` each; W, the partial and
    the h1 outputs streamed), one GEMM."""
    return _first_layer(roofline.dense_forward_s, workload, device, samples)


def first_layer_backward_s(workload: Workload, device: Device, samples: float | np.ndarray) -> float | np.ndarray:
    """Its backward: the gradient of W (partial^T dL/dy) and of the partial (dL/dy W^T)."""
    return _first_layer(roofline.dense_backward_s, workload, device, samples)


def _first_layer(cost: Callable[..., float | np.ndarray], workload: Workload, device: Device,
                 samples: float | np.ndarray) -> float | np.ndarray:
    width, h1 = workload.first_layer_input, workload.first_layer_width
    return cost(device, samples * workload.first_layer_flops_per_sample, width * h1 * workload.dtype_bytes,
                samples * (width + h1) * workload.activation_value_bytes, dtype(workload), 1)


def tables_batched(device: Device, per_table: np.ndarray) -> np.ndarray:
    """Per-table times (last axis) as one table-batched kernel (TorchRec's fused embedding bags, the executor's
    one lookup for every table): their work summed, one launch."""
    launch_s = device.launch_overhead_us * 1e-6
    busy = per_table > 0
    return np.sum(per_table - launch_s * busy, axis=-1) + launch_s * np.any(busy, axis=-1)


def lookup_s(workload: Workload, device: Device, lookups: np.ndarray, unique_rows: np.ndarray,
             samples: float | np.ndarray | None = None) -> np.ndarray:
    """Gather ``unique_rows`` rows and pool ``lookups`` of them into one row per (sample, field) of ``samples``
    samples (None: no pooling, a row written per lookup), tables batched (per table on the last axis). A
    workload that cannot pool as it reads (``Workload.pools_in_lookup``: FM) writes each lookup's row first,
    then the pooled ones."""
    return tables_batched(device, roofline.embedding_lookup_s(device, np.asarray(lookups, dtype=np.float64),
                                                             np.asarray(unique_rows, dtype=np.float64),
                                                             row_bytes(workload), _written(workload, lookups, samples)))


def _written(workload: Workload, lookups: np.ndarray, samples: float | np.ndarray | None) -> np.ndarray | None:
    """Rows a lookup writes per table (``lookup_s``): one per (sample, field), plus one per lookup where it
    cannot pool as it reads; None without ``samples`` (a row per lookup)."""
    if samples is None:
        return None
    pooled = np.asarray(samples, dtype=np.float64)[..., None] * np.array([t.fields for t in workload.tables],
                                                                         dtype=np.float64)
    return pooled if workload.pools_in_lookup else pooled + np.asarray(lookups, dtype=np.float64)


def embedding_backward_s(workload: Workload, device: Device, lookups: np.ndarray, unique_rows: np.ndarray,
                         samples: float | np.ndarray | None = None) -> np.ndarray:
    """The backward and optimizer update of a lookup (``lookup_s``'s arguments) on the device owning the rows,
    as ``Workload.embedding_update`` runs them: ``unfused``, the lookup's cost again (read the pooled
    gradients, scatter-add them into the rows' gradients) then ``sparse_update_s``; ``fused``, one kernel
    (FBGEMM's table-batched embedding backward) reading the pooled gradients and updating each row and its
    optimizer state in place, no gradient row materialized (``roofline.embedding_fused_backward_s``)."""
    if workload.embedding_update == "unfused":
        return lookup_s(workload, device, lookups, unique_rows, samples) + sparse_update_s(workload, device,
                                                                                            unique_rows)
    return tables_batched(device, roofline.embedding_fused_backward_s(
        device, np.asarray(lookups, dtype=np.float64), np.asarray(unique_rows, dtype=np.float64), row_bytes(workload),
        workload.optimizer_slots, _written(workload, lookups, samples)))


def ids_s(device: Device, ids: np.ndarray | float, dedup: bool = False) -> np.ndarray | float:
    """Finding where ``ids`` IDs live (owner, routing; ``dedup``: and their distinct values), before any
    lookup."""
    return roofline.id_handling_s(device, ids, dedup)


def sparse_update_s(workload: Workload, device: Device, unique_rows: np.ndarray) -> np.ndarray:
    """Optimizer update of ``unique_rows`` rows on the device that owns them, summed over tables."""
    return tables_batched(device, roofline.embedding_update_s(device, np.asarray(unique_rows, dtype=np.float64),
                                                             row_bytes(workload), workload.optimizer_slots))


def server_lookup_s(workload: Workload, server: Device, rows: np.ndarray, requests: float) -> np.ndarray:
    """A PS server reading the ``rows`` its ``requests`` pulls ask for (tables batched), and handling them."""
    return lookup_s(workload, server, rows, rows) + requests * server.request_us * 1e-6


def server_update_s(workload: Workload, server: Device, rows: np.ndarray, requests: float) -> np.ndarray:
    """A PS server applying the optimizer to ``rows`` received rows (tables batched), and handling the
    ``requests`` pushes that brought them."""
    return tables_batched(server, roofline.ps_server_update_s(server, np.asarray(rows, dtype=np.float64),
                                                             row_bytes(workload), workload.optimizer_slots)) + (
        requests * server.request_us * 1e-6)


def table_gradient_s(workload: Workload, device: Device) -> float:
    """Zero-filling the tables' dense gradient (``sparse_bytes``, streaming at ``eff_mem``) before a batch's
    row gradients are added into it: what DP's backward does first (DDP's dense embedding gradient, the
    executor's gradient bucket)."""
    return float(roofline.op_time_s(device, 0.0, workload.sparse_bytes))


def dense_update_s(workload: Workload, device: Device, params: float | np.ndarray) -> float | np.ndarray:
    return roofline.dense_update_s(device, params, workload.dtype_bytes, workload.optimizer_slots)
