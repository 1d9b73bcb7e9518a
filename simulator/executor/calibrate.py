"""``dessim calibrate``: microbenchmarks on the real backend, fitted to the simulator's parameters.

Measured, on every rank at once (as in a training step, the ranks share the machine):
- collective sweeps: all-reduce, all-gather, reduce-scatter and all-to-all over sizes, at each world size;
- compute: fp32 GEMMs (n x n x n), embedding lookups as the executor pools them (random rows of several
  widths gathered and summed per segment), a streaming elementwise add over sizes, and a linear layer's
  forward and forward + backward.

Fitted, by least squares on relative errors (every model below is linear in its unknowns):
- network: the simulator's own time of each collective on a star of the world's ranks is
  ``A x latency + B / bandwidth`` (A, B read off the analytical backend at two settings), giving one link
  efficiency (of ``LOOPBACK_GBPS``) and one extra latency per message for all ops and sizes;
- compute: the simulator's own cost models (see ``fit_compute``), one shared launch overhead, the
  per-ID index cost ``lookup_ns`` separated from the per-byte cost by the row widths; the backward factor
  is (forward + backward) / forward - 1 of the linear layer.

The profile (JSON) is what ``simulator.compute.load_calibration`` reads; its ``meta.points`` keeps every
measured point with the fitted prediction, ``meta.quality`` the fit's quality per group.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from simulator.compute import Device, load_device
from simulator.executor import tensors
from simulator.executor.comm import Communicator
from simulator.executor.launch import run_local
from simulator.executor.run import use_device

COLLECTIVES = {"allreduce": "ring", "allgather": "ring", "reducescatter": "ring", "alltoall": "direct"}
COLLECTIVE_BYTES = tuple(4 ** k * 1024 for k in range(7))  # 1 KiB .. 4 MiB, the buffer size (nccl-tests' S)
GEMM_N = (32, 64, 128, 256, 384, 512)
GATHER_LOOKUPS = (1024, 4096, 16384, 65536)
GATHER_WIDTHS = (1, 16, 64)  # fp32 values per row: LR's weight, the executor models' vectors, a wide one
GATHER_TABLE_ROWS = 262144
GATHER_POOLED = 4  # lookups summed into one pooled row
STREAM_ELEMENTS = (2 ** 12, 2 ** 15, 2 ** 18, 2 ** 21, 2 ** 23)  # up to 32 MiB arrays: DRAM, not cache
REPEATS = 5  # timed repetitions per point (after 2 warm-ups); the median is kept
COLLECTIVE_BACK_TO_BACK = 5  # collectives timed per repetition


def _median_s(run: Callable[[], object], comm: Communicator, back_to_back: int = 1) -> float:
    """Median over REPEATS (after 2 warm-ups) of the mean wall time of ``back_to_back`` calls of ``run``,
    the ranks lined up by a barrier before each repetition. Back-to-back calls (as nccl-tests times them)
    keep the skew with which ranks leave the barrier out of a collective's time."""
    times = []
    for i in range(REPEATS + 2):
        comm.barrier()
        started = time.perf_counter()
        for _ in range(back_to_back):
            run()
        if i >= 2:
            times.append((time.perf_counter() - started) / back_to_back)
    return float(np.median(times))


def _rank_benchmarks(rank: int, world: int, backend: str) -> list[dict]:
    """This rank's measurements: collective sweeps (bytes = buffer size), then compute."""
    use_device(backend, rank)
    comm = Communicator()
    rows = []
    for op in COLLECTIVES if world > 1 else ():  # one rank has no network
        for size in COLLECTIVE_BYTES:
            n = max(world, size // 4 // world * world)  # fp32 elements, divisible by the world
            x = tensors.full((n,), 1.0)
            chunks = list(x.chunk(world))
            call = {"allreduce": lambda x=x: comm.all_reduce(x, "bench"),
                    "allgather": lambda x=x, n=n: comm.all_gather(x[:n // world], "bench"),
                    "reducescatter": lambda x=x: comm.reduce_scatter(x, "bench"),
                    "alltoall": lambda chunks=chunks: comm.all_to_all(chunks, "bench", [len(chunks[0])] * world)}[op]
            rows.append({"group": "collective", "op": op, "world": world, "size_bytes": 4.0 * n,
                         "time_s": _median_s(call, comm, COLLECTIVE_BACK_TO_BACK)})
    return rows + _compute_benchmarks(comm)


def _compute_benchmarks(comm: Communicator) -> list[dict]:
    """GEMMs, row gathers, streams and a linear layer's backward/forward ratio, ranks running together."""
    rows = []
    for n in GEMM_N:
        a, b = tensors.zeros(n, n).normal_(), tensors.zeros(n, n).normal_()
        rows.append({"group": "gemm", "op": "matmul", "flops": 2.0 * n ** 3, "bytes": 12.0 * n * n,
                     "time_s": _median_s(lambda a=a, b=b: a @ b, comm)})
    generator = tensors.generator(comm.rank)
    for width in GATHER_WIDTHS:
        table = tensors.zeros(GATHER_TABLE_ROWS, width).normal_()
        for k in GATHER_LOOKUPS:  # the executor's pooling: looked-up rows summed per (sample, field) segment
            index = torch.randint(0, GATHER_TABLE_ROWS, (k,), generator=generator, device=tensors.device())
            segment = tensors.arange(k) // GATHER_POOLED
            rows.append({"group": "gather", "op": "lookup+pool", "lookups": float(k),
                         "unique_rows": float(index.unique().numel()), "pooled_rows": float(k // GATHER_POOLED),
                         "row_bytes": 4.0 * width, "time_s": _median_s(
                             lambda t=table, i=index, g=segment, n=k // GATHER_POOLED: tensors.zeros(
                                 n, t.shape[1]).index_add_(0, g, t.index_select(0, i)), comm)})
    for k in STREAM_ELEMENTS:
        a, b = tensors.zeros(k).normal_(), tensors.zeros(k).normal_()
        rows.append({"group": "stream", "op": "add", "flops": float(k), "bytes": 12.0 * k,
                     "time_s": _median_s(lambda a=a, b=b: a + b, comm)})
    layer = torch.nn.Linear(256, 256, device=tensors.device())
    x = tensors.zeros(1024, 256).normal_().requires_grad_(True)  # grads of input and weight
    forward_s = _median_s(lambda: layer(x), comm)
    both_s = _median_s(lambda: layer(x).sum().backward(), comm)
    rows.append({"group": "backward", "op": "linear", "flops": 0.0, "bytes": 0.0, "time_s": forward_s,
                 "both_s": both_s})
    return rows


def measure(world: int, backend: str = "gloo", timeout_s: float = 60.0) -> pd.DataFrame:
    """Run the microbenchmarks on ``world`` ranks at once; one row per measured point (collectives: the
    slowest rank's time; compute: every rank's point)."""
    ranks = run_local(_rank_benchmarks, world, backend, backend=backend, timeout_s=timeout_s)
    frame = pd.concat([pd.DataFrame(r).assign(rank=i) for i, r in enumerate(ranks)], ignore_index=True)
    compute = frame[frame.group != "collective"].assign(world=world)
    if world == 1:
        return compute.reset_index(drop=True)
    collectives = frame[frame.group == "collective"].groupby(["group", "op", "world", "size_bytes"],
                                                             as_index=False).time_s.max()
    return pd.concat([collectives, compute], ignore_index=True)


def _relative_lstsq(columns: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Least squares of ``columns @ x = measured`` on relative errors; x clipped at 0 (a negative latency
    or inverse rate means the term is too small to see)."""
    weighted = columns / measured[:, None]
    x, *_ = np.linalg.lstsq(weighted, np.ones_like(measured), rcond=None)
    return np.clip(x, 0.0, None)


def fit_network(points: pd.DataFrame, nominal_gbps: float, nominal_latency_us: float) -> tuple[dict, pd.DataFrame]:
    """Link efficiency and extra latency per message that make the simulator's collective times match."""
    from simulator.fabric import Fabric
    from simulator.simulate import simulate_collective
    from topologies.builders import MAX_GBPS, star

    columns = []
    for row in points.itertuples():
        def simulated_s(latency_us: float, gbps: float, row: object = row) -> float:
            fabric = Fabric(star(hosts=int(row.world), link_gbps=gbps, latency_us=latency_us))
            return simulate_collective(row.op, COLLECTIVES[row.op], row.size_bytes, fabric, "analytical")[0].time_s
        # t = A x (hop latency, s) + X x (1 / link rate, s/B): A (hops on the critical path) from 1 s hops,
        # the bandwidth term subtracted; X (bytes on the critical path) from 1 Gb/s links without latency
        columns.append((simulated_s(1e6, MAX_GBPS) - simulated_s(0.0, MAX_GBPS), simulated_s(0.0, 1.0) * 1e9 / 8))
    matrix = np.array(columns)
    measured = points.time_s.to_numpy()
    latency_s, inverse_rate = _relative_lstsq(matrix, measured)
    gbps = 8.0 / inverse_rate / 1e9 if inverse_rate > 0 else math.inf
    efficiency = min(1.0, gbps / nominal_gbps)
    hop_latency_us = max(latency_s * 1e6, nominal_latency_us)
    fitted = matrix @ np.array([hop_latency_us / 1e6, 8.0 / (nominal_gbps * efficiency * 1e9)])
    # a star path is two hops: the extra per message is twice the extra per hop
    return ({"link_efficiency": efficiency, "latency_us_extra": 2 * (hop_latency_us - nominal_latency_us),
             "fitted_link_gbps": gbps, "fitted_hop_latency_us": latency_s * 1e6},
            points.assign(predicted_s=fitted))


def fit_compute(points: pd.DataFrame, device: Device) -> tuple[dict, pd.DataFrame]:
    """Launch overhead, eff_flops, eff_gather, eff_mem, lookup_ns and the backward factor of ``device``, with
    the simulator's own cost models (``simulator.compute``): GEMMs ``launch + flops / (peak x eff_flops)``;
    lookups ``launch + unique_rows x row_bytes / (bw x eff_gather) + pooled_rows x row_bytes / (bw x eff_mem)
    + lookups x lookup_ns``; streams ``launch + bytes / (bw x eff_mem)``."""
    timed = points[points.group.isin(["gemm", "gather", "stream"])].fillna(0.0)
    peak = device.peak_tflops["fp32"] * 1e12
    bandwidth = device.mem_bandwidth_GBps * 1e9
    gemm, gather, stream = (timed.group == g for g in ("gemm", "gather", "stream"))
    columns = np.column_stack([np.ones(len(timed)),
                               np.where(gemm, timed.flops / peak, 0.0),
                               np.where(gather, timed.unique_rows * timed.row_bytes / bandwidth, 0.0),
                               np.where(stream, timed.bytes, np.where(gather, timed.pooled_rows * timed.row_bytes,
                                                                      0.0)) / bandwidth,
                               np.where(gather, timed.lookups * 1e-9, 0.0)])
    launch_s, *inverse, lookup_ns = _relative_lstsq(columns, timed.time_s.to_numpy())
    eff = [min(1.0, 1.0 / i) if i > 0 else 1.0 for i in inverse]
    fitted = columns @ np.array([launch_s, *(1.0 / e for e in eff), lookup_ns])
    linear = points[points.group == "backward"]
    backward_factor = float(np.median(linear.both_s / linear.time_s - 1.0))
    return ({"launch_overhead_us": launch_s * 1e6, "eff_flops": eff[0], "eff_gather": eff[1], "eff_mem": eff[2],
             "lookup_ns": lookup_ns, "backward_factor": backward_factor}, timed.assign(predicted_s=fitted))


def quality(fitted: pd.DataFrame) -> pd.DataFrame:
    """Per rank count, fitted group and op: points, median and max relative error |predicted / measured - 1|."""
    error = (fitted.predicted_s / fitted.time_s - 1.0).abs()
    return (fitted.assign(error=error).groupby(["ranks", "group", "op"], as_index=False)
            .agg(points=("error", "size"), median_error=("error", "median"), max_error=("error", "max")))


def calibrate_ranks(world: int, device: Device, backend: str = "gloo",
                    timeout_s: float = 60.0) -> tuple[dict, pd.DataFrame]:
    """Measure and fit with ``world`` ranks: (the profile's fields as a dict, the fitted points)."""
    from simulator.validation import LOOPBACK_GBPS, LOOPBACK_LATENCY_US

    points = measure(world, backend, timeout_s)
    compute, compute_fit = fit_compute(points[points.group != "collective"], device)
    fields = {"devices": {device.name: compute}, "backward_factor": compute.pop("backward_factor"), "meta": {}}
    fitted = [compute_fit]
    if world > 1:
        network, network_fit = fit_network(points[points.group == "collective"], LOOPBACK_GBPS,
                                           LOOPBACK_LATENCY_US)
        fields.update(link_efficiency=network["link_efficiency"], latency_us_extra=network["latency_us_extra"],
                      meta={"fitted_link_gbps": network["fitted_link_gbps"],
                            "fitted_hop_latency_us": network["fitted_hop_latency_us"]})
        fitted.insert(0, network_fit)
    return fields, pd.concat(fitted, ignore_index=True).assign(ranks=world)


def calibrate(worlds: list[int], device_name: str, backend: str = "gloo", timeout_s: float = 60.0,
              progress: Callable[[int], None] | None = None) -> tuple[dict, pd.DataFrame]:
    """Measure and fit at each world size: (the profile as a JSON-able dict, the fit quality table).

    The profile's top level is the first world size's fit; ``ranks`` holds every world size's.
    ``progress(done)`` is called after each world size."""
    device = load_device(device_name)
    by_ranks, fitted = {}, []
    for world in worlds:
        fields, points = calibrate_ranks(world, device, backend, timeout_s)
        by_ranks[world] = fields
        fitted.append(points)
        if progress:
            progress(len(by_ranks))
    points = pd.concat(fitted, ignore_index=True)
    table = quality(points)
    profile = {**by_ranks[worlds[0]], "ranks": by_ranks}
    profile["meta"] = {"tool": "dessim calibrate", "backend": backend, "worlds": worlds, "device": device.name,
                       "host": platform.node(), "cpu": platform.processor() or platform.machine(),
                       "cores": os.cpu_count(), "torch": torch.__version__,
                       "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       **by_ranks[worlds[0]]["meta"], "quality": table.to_dict(orient="records"),
                       "points": points.drop(columns=["rank"], errors="ignore").to_dict(orient="records")}
    return profile, table
