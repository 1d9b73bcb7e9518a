"""``dessim calibrate``: the simulator's parameters fitted to this machine, per worker count.

Measured, on every rank at once (as in a training step, the ranks share the machine):
- microbenchmarks: all-reduce, all-gather, reduce-scatter, all-to-all and p2p over 1 KiB-4 MiB (on at least
  2 ranks); fp32 GEMMs, embedding lookups as the executor pools them, a streaming add, a linear layer's
  forward and backward;
- real executor steps of every model and strategy at ``CALIBRATION_BATCHES`` samples per worker (not
  ``dessim validate``'s 1024: validation is held out), timed per op category.

Fitted, by least squares on relative errors:
- each collective op's per-call cost (``call_us``, ``ns_per_byte`` of its buffer) on top of its time on the
  nominal loopback star (``fit_collectives``), as NCCL's tuner has a latency and a bandwidth per op;
- a first guess of the compute terms from the microbenchmarks (``fit_compute``), then the compute terms and
  the PS server's own fitted to the executor steps' per-op times (``stepfit.fit_device``);
- then the per-call costs of the collectives the steps call, refitted to their in-step times
  (``stepfit.fit_collectives_in_step``): between a step's compute they cost more than back to back;
- and the compute jitter under which the simulator's ranks wait in collectives as long as the executor's
  did (``stepfit.fit_jitter``).

Executor steps are run ``STEP_REPEATS`` times over; each configuration keeps its quietest pass.

The profile (JSON) is what ``simulator.compute.roofline.load_calibration`` reads; its ``meta.points`` keeps every
measured point with the fitted prediction, ``meta.quality`` the fit's quality per group.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from simulator.calibration.stepfit import (
    FITTED,
    Observed,
    fit_collectives_in_step,
    fit_device,
    fit_jitter,
    relative_lstsq,
)
from simulator.calibration.validation import WARMUP_STEPS, machine_cores
from simulator.compute.roofline import Device, load_device
from simulator.executor import tensors
from simulator.executor.comm import Communicator
from simulator.executor.launch import run_local
from simulator.executor.run import use_device

COLLECTIVES = {"allreduce": "ring", "allgather": "ring", "reducescatter": "ring", "alltoall": "direct",
               "p2p": None}  # p2p: each rank sends its buffer to the next and receives the previous one's
COLLECTIVE_BYTES = tuple(4 ** k * 1024 for k in range(7))  # 1 KiB .. 4 MiB, the buffer size (nccl-tests' S)
GEMM_N = (32, 64, 128, 256, 384, 512)
GATHER_LOOKUPS = (1024, 4096, 16384, 65536)
GATHER_WIDTHS = (1, 16, 64)  # fp32 values per row: LR's weight, the executor models' vectors, a wide one
GATHER_TABLE_ROWS = 262144
GATHER_POOLED = 4  # lookups summed into one pooled row
STREAM_ELEMENTS = (2 ** 12, 2 ** 15, 2 ** 18, 2 ** 21, 2 ** 23)  # up to 32 MiB arrays: DRAM, not cache
CALIBRATION_BATCHES = (256, 4096)  # samples per worker of the executor steps fitted: not validate's default 1024
MODELS = ("lr", "fm", "widedeep", "deepfm", "dlrm")
STEPS = 6  # executor steps per calibration run (the first is warm-up)
STEP_REPEATS = 5  # passes over the executor configurations; each keeps its quietest (``run.quietest``)
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


def _rank_benchmarks(rank: int, world: int, backend: str, collectives: bool, compute: bool) -> list[dict]:
    """This rank's measurements: collective sweeps (``size_bytes``: the buffer, nccl-tests' S; ``buffer_bytes``:
    what the simulator's per-call cost counts, the bytes to or from other ranks for all-to-all and p2p), then
    compute."""
    use_device(backend, rank)
    comm = Communicator()
    rows = []
    for op in COLLECTIVES if collectives else ():
        for size in COLLECTIVE_BYTES:
            n = max(world, size // 4 // world * world)  # fp32 elements, divisible by the world
            x = tensors.full((n,), 1.0)
            chunks = list(x.chunk(world))
            inbox = tensors.empty(n)
            call = {"allreduce": lambda x=x: comm.all_reduce(x, "bench"),
                    "allgather": lambda x=x, n=n: comm.all_gather(x[:n // world], "bench"),
                    "reducescatter": lambda x=x: comm.reduce_scatter(x, "bench"),
                    "alltoall": lambda chunks=chunks: comm.all_to_all(chunks, "bench", [len(chunks[0])] * world),
                    "p2p": lambda x=x, inbox=inbox: comm.exchange({(rank + 1) % world: x}, {(rank - 1) % world: inbox},
                                                                  "bench")}[op]
            buffer = 4.0 * n * ((world - 1) / world if op == "alltoall" else 1.0)
            rows.append({"group": "collective", "op": op, "world": world, "size_bytes": 4.0 * n,
                         "buffer_bytes": buffer, "time_s": _median_s(call, comm, COLLECTIVE_BACK_TO_BACK)})
    return rows + (_compute_benchmarks(comm) if compute else [])


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
    """Run the microbenchmarks: compute on ``world`` ranks at once (every rank's point), collectives on
    ``max(world, 2)`` ranks (the slowest rank's time; one worker's PS still talks to a server rank)."""
    ranks = max(world, 2)
    runs = [(world, ranks == world, True)] + ([(ranks, True, False)] if ranks != world else [])
    frames = []
    for size, collectives, compute in runs:
        out = run_local(_rank_benchmarks, size, backend, collectives, compute, backend=backend, timeout_s=timeout_s)
        frames.append(pd.concat([pd.DataFrame(r).assign(rank=i) for i, r in enumerate(out)], ignore_index=True))
    frame = pd.concat(frames, ignore_index=True)
    compute = frame[frame.group != "collective"].assign(world=world)
    collectives = frame[frame.group == "collective"].groupby(["group", "op", "world", "size_bytes", "buffer_bytes"],
                                                             as_index=False).time_s.max()
    return pd.concat([collectives, compute], ignore_index=True)


def nominal_s(op: str, size_bytes: float, world: int) -> float:
    """A collective's time on the nominal loopback star (``LOOPBACK_GBPS``, ``LOOPBACK_LATENCY_US`` per hop);
    ``p2p``: every rank sends ``size_bytes`` to the next (two hops, the bytes once over each link)."""
    from simulator.calibration.validation import LOOPBACK_GBPS, LOOPBACK_LATENCY_US, local_fabric
    from simulator.network.fabric import Fabric
    from simulator.run.collective import simulate_collective

    if op == "p2p":
        return 2 * LOOPBACK_LATENCY_US * 1e-6 + size_bytes * 8 / (LOOPBACK_GBPS * 1e9)
    fabric: Fabric = local_fabric(world)
    return simulate_collective(op, COLLECTIVES[op], size_bytes, fabric, "analytical")[0].time_s


def fit_collectives(points: pd.DataFrame) -> tuple[dict[str, dict[str, float]], pd.DataFrame]:
    """Per collective op, the per-call costs (``call_us``, ``ns_per_byte`` of its ``buffer_bytes``) that, added
    to its time on the nominal loopback, best match the measured times (least squares on relative errors,
    both >= 0): one pair per op, as NCCL's tuner has a latency and a bandwidth per (op, algorithm)."""
    nominal = np.array([nominal_s(r.op, r.size_bytes, int(r.world)) for r in points.itertuples()])
    fitted = np.zeros(len(points))
    costs = {}
    for op in points.op.unique():
        sel = (points.op == op).to_numpy()
        measured = points.time_s.to_numpy()[sel]
        columns = np.column_stack([np.full(sel.sum(), 1e-6), points.buffer_bytes.to_numpy()[sel] * 1e-9])
        call_us, ns_per_byte = relative_lstsq(columns, np.maximum(measured - nominal[sel], 0.0), measured)
        costs[op] = {"call_us": float(call_us), "ns_per_byte": float(ns_per_byte)}
        fitted[sel] = nominal[sel] + columns @ np.array([call_us, ns_per_byte])
    return costs, points.assign(predicted_s=fitted)


def fit_compute(points: pd.DataFrame, device: Device) -> tuple[dict, pd.DataFrame]:
    """Launch overhead, eff_flops, eff_gather, eff_mem, lookup_ns and the backward factor of ``device``, with
    the simulator's own cost models (``simulator.compute.roofline``): GEMMs ``launch + flops / (peak x eff_flops)``;
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
    launch_s, *inverse, lookup_ns = relative_lstsq(columns, timed.time_s.to_numpy())
    eff = [min(1.0, 1.0 / i) if i > 0 else 1.0 for i in inverse]
    fitted = columns @ np.array([launch_s, *(1.0 / e for e in eff), lookup_ns])
    linear = points[points.group == "backward"]
    backward_factor = float(np.median(linear.both_s / linear.time_s - 1.0))
    return ({"launch_overhead_us": launch_s * 1e6, "eff_flops": eff[0], "eff_gather": eff[1], "eff_mem": eff[2],
             "lookup_ns": lookup_ns, "backward_factor": backward_factor}, timed.assign(predicted_s=fitted))


def quality(fitted: pd.DataFrame) -> pd.DataFrame:
    """Per rank count, fitted group and op: points, median and max relative error |predicted / measured - 1|."""
    fitted = fitted[fitted.time_s > 0]  # a category the step never spent time in has no relative error
    error = (fitted.predicted_s / fitted.time_s - 1.0).abs()
    return (fitted.assign(error=error).groupby(["ranks", "group", "op"], as_index=False)
            .agg(points=("error", "size"), median_error=("error", "median"), max_error=("error", "max")))


def executor_points(world: int, models: Sequence[str], batches: Sequence[int], steps: int, backend: str = "gloo",
                    timeout_s: float = 60.0, repeats: int = STEP_REPEATS) -> list[Observed]:
    """Every model's every strategy (PS with its servers; those the backend runs: NCCL needs a GPU per rank)
    trained on ``world`` workers at each batch size of ``batches`` (samples per worker): what each step spent
    per category."""
    from simulator.executor.run import check, default_servers, execute_many, small_workload, strategies_for

    gpus = torch.cuda.device_count() if backend == "nccl" else None
    observed = []
    for ps in (False, True):  # ranks started once per family (PS adds servers), for every batch size
        if ps and gpus is not None and world + default_servers(world) > gpus:
            continue
        configs = [(small_workload(m, batch), s) for batch in batches for m in models for s in strategies_for(m)
                   if s.startswith("ps") == ps and _runs(check, s, backend)]
        if not configs:
            continue
        measurements = execute_many(configs, world, steps, backend=backend, timeout_s=timeout_s, repeats=repeats)
        for (workload, strategy), measured in zip(configs, measurements, strict=True):
            observed.append(Observed(workload, strategy, world, measured.servers, steps,
                                     measured.breakdown(WARMUP_STEPS), measured.median_step_s(WARMUP_STEPS),
                                     measured.unwaited(WARMUP_STEPS)))
    return observed


def _runs(check: Callable[[str, str], None], strategy: str, backend: str) -> bool:
    try:
        check(strategy, backend)
    except ValueError:
        return False
    return True


def calibrate_ranks(world: int, device: Device, backend: str = "gloo", timeout_s: float = 60.0,
                    models: Sequence[str] = MODELS, batches: Sequence[int] = CALIBRATION_BATCHES,
                    steps: int = STEPS, repeats: int = STEP_REPEATS) -> tuple[dict, pd.DataFrame]:
    """Measure and fit with ``world`` workers: (the profile's fields as a dict, the fitted points).

    Microbenchmarks first: the collectives' per-call costs (``fit_collectives``) and a first guess of the
    compute terms (``fit_compute``); then real executor steps of ``models`` at ``batches`` samples per worker,
    whose per-op times the compute terms are fitted to (``stepfit.fit_device``)."""
    points = measure(world, backend, timeout_s)
    guess, compute_fit = fit_compute(points[points.group != "collective"], device)
    collectives, collective_fit = fit_collectives(points[points.group == "collective"])
    observed = executor_points(world, models, batches, steps, backend, timeout_s, repeats)
    fitted, server, step_fit = fit_device(observed, device.model_copy(update=guess))
    collectives, in_step = fit_collectives_in_step(observed, fitted, fitted.model_copy(update=server), collectives,
                                                   machine_cores(backend))
    sigma = fit_jitter(observed, fitted, fitted.model_copy(update=server), collectives, machine_cores(backend))
    fields = {"devices": {device.name: {f: getattr(fitted, f) for f in FITTED}}, "server": server,
              "collectives": collectives, "jitter_sigma": sigma or None,
              "meta": {"calibration_batches": list(batches), "models": list(models)}}
    step_points = pd.concat([step_fit.assign(group="step"), in_step.assign(group="step collective")])
    step_points = step_points.rename(columns={"measured_s": "time_s", "category": "op"})
    return fields, pd.concat([collective_fit, compute_fit, step_points], ignore_index=True).assign(ranks=world)


def calibrate(worlds: list[int], device_name: str, backend: str = "gloo", timeout_s: float = 60.0,
              progress: Callable[[int], None] | None = None, models: Sequence[str] = MODELS,
              batches: Sequence[int] = CALIBRATION_BATCHES, steps: int = STEPS,
              repeats: int = STEP_REPEATS) -> tuple[dict, pd.DataFrame]:
    """Measure and fit at each world size (workers): (the profile as a JSON-able dict, the fit quality table).

    The profile's top level is the first world size's fit; ``ranks`` holds every world size's (``dessim
    validate`` uses the one of its run's worker count). ``progress(done)`` is called after each world size."""
    device = load_device(device_name)
    by_ranks, fitted = {}, []
    for world in worlds:
        fields, points = calibrate_ranks(world, device, backend, timeout_s, models, batches, steps, repeats)
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
