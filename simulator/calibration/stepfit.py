"""Fitting the simulator's compute terms to the per-op times of real executor steps (``dessim calibrate``).

The model is the simulator's own: a configuration's step graph as the executor runs it
(``validation.executor_step``), its compute ops priced by ``simulator.compute.roofline`` from a Device. The fit finds
the Device fields of ``FITTED`` that bring every configuration's predicted seconds per step by category
(``validation.per_step`` of ``validation.compute_times``) closest to the measured ones
(``Measurement.breakdown``): Levenberg-Marquardt on the fields' logarithms (they stay positive;
efficiencies are capped at 1), each residual one category's gap over its configuration's measured step, so
that a category counts as much as it weighs in the step, the quantity the fit serves. Communication
categories are left out of it (their measured times include waiting for other ranks). Two fits follow on the
same steps: ``fit_collectives_in_step``, the collectives' per-call costs on the steps' own calls as the last
rank to arrive spends them (starting from ``calibrate.fit_collectives``' microbenchmark fit), and
``fit_jitter``, the ranks' compute jitter from how long the others waited.

Which terms, and why each exists on real hardware too (docs/VALIDATION.md): ``launch_overhead_us`` (one
dispatch per kernel: a GPU's launch, an eager framework's per-op overhead), ``eff_flops`` / ``eff_mem`` /
``eff_gather`` (achieved fractions of the datasheet's FLOP/s and memory bandwidth, streaming and random rows),
``lookup_ns`` (per looked-up ID: index arithmetic and scatter), ``id_ns`` (per ID of a batch before any
lookup: its owner, routing), ``dedup_ns`` (per ID a PS worker dedups into keys), ``backward_factor`` (a dense
layer's backward over its forward) and ``step_overhead_us`` (a step's host time outside its ops).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from simulator.calibration.validation import (
    WARMUP_STEPS,
    category_seconds,
    compute_times,
    executor_step,
    predict,
    simulator_strategy,
)
from simulator.compute.roofline import CalibrationProfile, CollectiveCost, Device
from simulator.strategies import needs_servers
from workloads import AnyWorkload

FITTED = ("launch_overhead_us", "eff_flops", "eff_mem", "eff_gather", "lookup_ns", "id_ns", "dedup_ns",
          "backward_factor", "step_overhead_us")
FITTED_SERVER = ("request_us", "eff_gather", "lookup_ns")  # a PS server's own (the executor's: numpy on the CPU)
FRACTIONS = ("eff_flops", "eff_mem", "eff_gather")
SMALLEST, LARGEST = 1e-6, 1e7  # the range of a fitted field (below: a term too small to see)
COMPUTE_CATEGORIES = ("compute.", "server.", "other")  # what a rank spends on its own, not waiting for others
MAX_JITTER = 1.5  # the largest compute jitter fitted (exp(1.5 Z): a rank 4.5x slower one step in six)
IN_STEP_OPS = ("allreduce", "allgather", "reducescatter", "alltoall")  # per-call costs fitted on in-step calls


@dataclass
class Observed:
    """One executor configuration as measured: what ran, its seconds per step by category and its step (s)."""

    workload: AnyWorkload
    strategy: str
    workers: int
    servers: int
    steps: int
    breakdown: pd.Series
    step_s: float
    unwaited: pd.Series | None = None  # Measurement.unwaited: the collectives' own time per step, by category


def own_categories(breakdown: pd.Series) -> pd.Series:
    """The categories a rank spends on its own (compute, a server's work, host time): what this fit fits."""
    return breakdown[[str(c).startswith(COMPUTE_CATEGORIES) for c in breakdown.index]]


def predicted_breakdown(observed: Observed, device: Device, server: Device | None = None) -> pd.Series:
    """The simulator's seconds per step by (own) category of ``observed``'s configuration on ``device`` (PS
    servers on ``server``, default the same)."""
    categories, seconds = _compute_seconds(observed, device, server)
    return own_categories(pd.Series(seconds, index=categories, dtype=np.float64))


def _compute_seconds(observed: Observed, device: Device, server: Device | None) -> tuple[list[str], list[float]]:
    """The categories and seconds per step of ``observed``'s configuration's compute ops (``category_seconds``)."""
    steps = min(observed.steps, WARMUP_STEPS + 1)  # one step after warm-up: three times fewer ops to price
    graph, cluster = executor_step(observed.workload, observed.strategy, observed.workers, observed.servers, steps,
                                   device, server_device=server)
    return category_seconds(compute_times(graph), cluster, steps)


def relative_lstsq(columns: np.ndarray, target: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """Least squares of ``columns @ x = target`` on errors relative to ``scale`` (default the target), x >= 0:
    a term whose best value is negative (too small to see) is set to 0 and the others refitted."""
    weight = target if scale is None else scale
    keep = np.ones(columns.shape[1], dtype=bool)
    x = np.zeros(columns.shape[1])
    while keep.any():
        x[:] = 0.0
        x[keep], *_ = np.linalg.lstsq(columns[:, keep] / weight[:, None], target / weight, rcond=None)
        if (x >= 0).all():
            break
        keep &= x > 0
    return np.clip(x, 0.0, None)


def comm_categories(breakdown: pd.Series) -> pd.Series:
    """The categories of a breakdown that are communication (what ``own_categories`` leaves out)."""
    return breakdown.drop(own_categories(breakdown).index)


def _predicted_comm(observed: Observed, device: Device, server: Device, profile: CalibrationProfile,
                    cores: int | None) -> pd.Series:
    """Seconds per step by communication category the simulator predicts for ``observed``'s configuration with
    ``profile``'s per-call costs and jitter (the call ops priced, the bytes moved over the nominal loopback)."""
    return comm_categories(predict(observed.workload, observed.strategy, observed.workers, observed.servers,
                                   min(observed.steps, WARMUP_STEPS + 1), device, profile, server, cores).breakdown)


def fit_collectives_in_step(observed: list[Observed], device: Device, server: Device,
                            initial: dict[str, dict[str, float]],
                            cores: int | None = None) -> tuple[dict[str, dict[str, float]], pd.DataFrame]:
    """Each collective op's per-call cost (``call_us``, ``ns_per_byte``; ops of ``IN_STEP_OPS``) fitted to the
    executor steps' own collectives (``Observed.unwaited``: without the skew between ranks), on top of the
    bytes' time over the nominal loopback: the calls as a step makes them, between its compute, cost more than
    back to back in a microbenchmark (an idle communication thread wakes, caches are cold). An op the steps
    never call keeps its ``initial`` (microbenchmark) cost. PS configurations are left out: a worker's calls
    there wait on its servers' work and queue, not only on the call. ``cores``: the measuring machine's
    (``validation.machine_cores``).

    The predicted time of a (configuration, category) is linear in the costs: the fit is least squares on
    errors relative to the configuration's step, like ``fit_device``'s. Returns the costs and one row per
    fitted (configuration, category) with measured_s and predicted_s."""
    zero = {op: CollectiveCost() for op in IN_STEP_OPS}
    rows, columns = [], []
    for o in observed:
        if o.unwaited is None or o.servers:
            continue
        base = _predicted_comm(o, device, server, CalibrationProfile(collectives=zero), cores)
        design = {}
        for op in IN_STEP_OPS:
            for field in ("call_us", "ns_per_byte"):
                unit = _predicted_comm(o, device, server,
                                       CalibrationProfile(collectives={**zero, op: CollectiveCost(**{field: 1.0})}),
                                       cores)
                design[(op, field)] = unit.sub(base, fill_value=0.0)
        for category in base.index:
            if any(d.get(category, 0.0) > 0 for d in design.values()):
                rows.append({"model": o.workload.model, "strategy": o.strategy, "workers": o.workers,
                             "batch": o.workload.batch_per_worker, "category": category,
                             "measured_s": float(o.unwaited.get(category, 0.0)), "network_s": float(base[category]),
                             "step_s": o.step_s})
                columns.append([design[key].get(category, 0.0) for key in design])
    costs = {op: dict(c) for op, c in initial.items()}
    if not rows:
        return costs, pd.DataFrame(rows)
    table, matrix = pd.DataFrame(rows), np.array(columns)
    used = matrix.any(axis=0)
    x = np.zeros(matrix.shape[1])
    x[used] = relative_lstsq(matrix[:, used], (table.measured_s - table.network_s).clip(lower=0.0).to_numpy(),
                             table.step_s.to_numpy())
    keys = [(op, field) for op in IN_STEP_OPS for field in ("call_us", "ns_per_byte")]
    for op in {op for (op, _), u in zip(keys, used, strict=True) if u}:
        costs[op] = {field: float(x[keys.index((op, field))]) for field in ("call_us", "ns_per_byte")}
    return costs, table.assign(predicted_s=table.network_s + matrix @ x).drop(columns=["network_s", "step_s"])


def _comm_s(observed: list[Observed], device: Device, server: Device, costs: dict[str, dict[str, float]],
            sigma: float, cores: int | None) -> float:
    """Seconds per step the workers of ``observed`` spend in collectives, summed over the runs, as the
    simulator predicts with compute jitter ``sigma``."""
    profile = CalibrationProfile(collectives=costs, jitter_sigma=sigma or None)
    return sum(float(_predicted_comm(o, device, server, profile, cores).sum()) for o in observed)


def fit_jitter(observed: list[Observed], device: Device, server: Device, costs: dict[str, dict[str, float]],
               cores: int | None = None, iterations: int = 3) -> float:
    """The compute jitter (``CalibrationProfile.jitter_sigma``: each rank's compute per step takes exp(sigma Z)
    times as long, independently across ranks and steps) under which the simulator's ranks wait in their
    collectives as long as the executor's did: measured, a collective's time on each worker over the last
    arrival's (``Measurement.breakdown`` - ``Measurement.unwaited``), summed over the non-PS runs on 2 or
    more workers; predicted, the collectives' time with the jitter over that without. The wait grows about
    linearly in sigma (two ranks: sigma / sqrt(pi) of the compute between calls), so a few secant steps from
    sigma = 0.2 find it; 0 when nothing waits. A synchronous program waits for its slowest rank on real
    hardware too (OS noise, clocks, interference), the more so the more ranks."""
    runs = [o for o in observed if o.unwaited is not None and not o.servers and o.workers >= 2]
    measured = sum(float(comm_categories(o.breakdown).sub(o.unwaited, fill_value=0.0).clip(lower=0.0).sum())
                   for o in runs)
    if not runs or measured <= 0:
        return 0.0
    unjittered = _comm_s(runs, device, server, costs, 0.0, cores)

    def gap(sigma: float) -> float:  # predicted wait - measured wait (s per step, over the runs)
        return _comm_s(runs, device, server, costs, sigma, cores) - unjittered - measured

    low, high = (0.0, -measured), (0.2, gap(0.2))
    for _ in range(iterations):
        if high[1] == low[1]:
            break
        sigma = min(max(high[0] - high[1] * (high[0] - low[0]) / (high[1] - low[1]), 0.0), MAX_JITTER)
        low, high = high, (sigma, gap(sigma))
    return high[0]


def _fields(names: tuple[str, ...], x: np.ndarray) -> dict[str, float]:
    return {n: min(float(math.exp(v)), 1.0) if n in FRACTIONS else float(math.exp(v))
            for n, v in zip(names, x, strict=True)}


def _devices(device: Device, x: np.ndarray) -> tuple[Device, Device]:
    worker = device.model_copy(update=_fields(FITTED, x[:len(FITTED)]))
    return worker, worker.model_copy(update=_fields(FITTED_SERVER, x[len(FITTED):]))


def _predictor(observed: list[Observed], keys: list[pd.Index],
               device: Device) -> Callable[[np.ndarray], np.ndarray]:
    """``fit_device``'s model: from the fitted fields' logarithms x (``_devices``), every configuration's
    ``predicted_breakdown`` on its (own) categories ``keys``, 0 where it has none, concatenated (seconds per
    step). A configuration is priced once per distinct value of the fields it reads: the worker's, and the
    server's only where its strategy has servers (no other strategy reads the server device); so the Jacobian's
    server columns of the others, and a fraction's column once it is capped at 1, cost no lowering."""
    serves = [needs_servers(simulator_strategy(o.strategy)[0]) for o in observed]
    positions = [{c: j for j, c in enumerate(k)} for k in keys]
    known: dict[tuple, np.ndarray] = {}  # (configuration, worker fields, server fields or None) -> seconds

    def predicted(x: np.ndarray) -> np.ndarray:
        worker_fields = tuple(_fields(FITTED, x[:len(FITTED)]).values())
        server_fields = tuple(_fields(FITTED_SERVER, x[len(FITTED):]).values())
        devices = None
        for i, (o, k) in enumerate(zip(observed, keys, strict=True)):
            key = (i, worker_fields, server_fields if serves[i] else None)
            if key not in known:
                devices = devices or _devices(device, x)
                known[key] = np.zeros(len(k))
                for category, seconds in zip(*_compute_seconds(o, *devices), strict=True):
                    if category in positions[i]:
                        known[key][positions[i][category]] = seconds
        return np.concatenate([known[(i, worker_fields, server_fields if serves[i] else None)]
                               for i in range(len(observed))])

    return predicted


def fit_device(observed: list[Observed], device: Device,
               iterations: int = 40) -> tuple[Device, dict[str, float], pd.DataFrame]:
    """The Device fields of ``FITTED`` (workers) and ``FITTED_SERVER`` (PS servers, over the workers' device)
    that best predict the observed per-op times, starting from ``device``'s (a microbenchmark fit, or a
    preset); and one row per (configuration, category) with the measured and the fitted seconds per step."""
    keys = [own_categories(o.breakdown).index.union(predicted_breakdown(o, device).index) for o in observed]
    measured = np.concatenate([own_categories(o.breakdown).reindex(k, fill_value=0.0).to_numpy()
                               for o, k in zip(observed, keys, strict=True)])
    scale = np.concatenate([np.full(len(k), o.step_s) for o, k in zip(observed, keys, strict=True)])

    predicted = _predictor(observed, keys, device)
    names = FITTED + FITTED_SERVER
    low, high = math.log(SMALLEST), np.array([0.0 if f in FRACTIONS else math.log(LARGEST) for f in names])
    x = np.clip(np.log([max(float(getattr(device, f)), SMALLEST) for f in names]), low, high)

    def residuals(x: np.ndarray) -> np.ndarray:
        return (predicted(x) - measured) / scale

    r = residuals(x)
    cost, damping, h = float(r @ r), 1e-3, 1e-4
    for _ in range(iterations):
        jacobian = np.column_stack([(residuals(x + h * e) - r) / h for e in np.eye(len(x))])
        normal, gradient = jacobian.T @ jacobian, jacobian.T @ r
        previous = cost
        while damping < 1e12:
            step = np.linalg.solve(normal + damping * np.diag(np.diag(normal) + 1e-12), -gradient)
            trial = np.clip(x + step, low, high)
            r_trial = residuals(trial)
            if float(r_trial @ r_trial) < cost:
                x, r, cost = trial, r_trial, float(r_trial @ r_trial)
                damping = max(damping / 10, 1e-9)
                break
            damping *= 10
        if previous - cost <= 1e-6 * previous:  # converged: a further step buys nothing measurable
            break
    worker = _devices(device, x)[0]
    rows = pd.DataFrame([{"model": o.workload.model, "strategy": o.strategy, "workers": o.workers,
                          "batch": o.workload.batch_per_worker, "category": c, "measured_s": m}
                         for o, k in zip(observed, keys, strict=True)
                         for c, m in own_categories(o.breakdown).reindex(k, fill_value=0.0).items()])
    return worker, _fields(FITTED_SERVER, x[len(FITTED):]), rows.assign(predicted_s=predicted(x))
