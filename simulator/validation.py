"""``dessim validate``: the simulator's predictions next to what the real executor measured.

For each (model, strategy, world) of a grid, the executor (``simulator.executor``) trains the model's small
workload on local ranks, and the simulator runs the same workload, the same sampled IDs and steps, on a star
fabric of as many hosts (the loopback between local ranks), with the ring algorithm the communicator's bus
bytes assume. One row each: predicted and measured bytes per step, their error (sum over (category, rank)
of the absolute differences over the predicted total: 0 when every count matches), predicted and measured
step time, the relative error, and how much the measured steps varied (``measured_spread``: interquartile
range / median). A calibration profile (``dessim calibrate``) sets the device and the
fabric's link efficiency and extra latency.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pandas as pd

from simulator.compute import CalibrationProfile, Device, apply_calibration, load_device
from simulator.fabric import Fabric
from simulator.strategies import StrategyOptions
from simulator.strategies.fc import FCOptions
from simulator.strategies.ps import PSOptions
from simulator.training import make_cluster, simulate_step
from topologies.builders import star
from workloads import AnyWorkload

LOOPBACK_GBPS = 100.0  # nominal rate of the local fabric; calibration scales it (link_efficiency)
LOOPBACK_LATENCY_US = 1.0  # nominal latency per hop; calibration adds latency_us_extra
WARMUP_STEPS = 1
EXECUTOR_KNN = FCOptions(knn_k=5, knn_rebuild_steps=2)  # what the executor's mp-fc-knn runs (K, T)
COLUMNS = ["model", "strategy", "workers", "servers", "predicted_bytes", "measured_bytes", "bytes_error",
           "predicted_step_s", "measured_step_s", "step_time_error", "measured_spread"]


def local_fabric(hosts: int, profile: CalibrationProfile | None = None) -> Fabric:
    """A star of ``hosts`` hosts: the local ranks and the loopback between them, calibrated if given."""
    efficiency = profile.link_efficiency if profile and profile.link_efficiency else 1.0
    extra_us = profile.latency_us_extra if profile and profile.latency_us_extra else 0.0
    # a star path has two hops: half the extra per-message latency on each
    return Fabric(star(hosts=hosts, link_gbps=LOOPBACK_GBPS * efficiency,
                       latency_us=LOOPBACK_LATENCY_US + extra_us / 2))


def simulator_strategy(strategy: str) -> tuple[str, StrategyOptions]:
    """The simulator's strategy and options of an executor strategy (PS: dense all-reduced when
    synchronous, on the servers when asynchronous, each server one thread; mp-fc-knn: the executor's K
    and T)."""
    options = StrategyOptions.default()
    options.fc = EXECUTOR_KNN
    if strategy == "ps":
        options.ps = PSOptions(dense="allreduce")
    elif strategy == "ps-async":
        options.ps = PSOptions(mode="async", dense="ps", server_threads=1)  # the executor's server: one process
        return "ps", options
    return strategy, options


def predict(workload: AnyWorkload, strategy: str, workers: int, servers: int, steps: int, device: Device,
            profile: CalibrationProfile | None = None) -> tuple[pd.Series, float]:
    """The simulator's bytes sent per step per (category, rank) and its step time (s) for an executor run."""
    fabric = local_fabric(workers + servers, profile)
    name, options = simulator_strategy(strategy)
    cluster = make_cluster(fabric, name, device, device, workers=workers, servers=servers or None,
                           placement="dedicated" if servers else "colocated")
    cluster.collective_algorithm = "ring"  # the communicator counts ring (bus) bytes
    report = simulate_step(workload, cluster, name, "analytical", steps=steps, options=options)
    trace = report.trace
    comm = trace[trace.kind != "compute"]
    sent = comm.groupby(["category", "rank"], observed=True).bytes_sent.sum() / steps
    return sent[sent > 0], report.summary["step_time_s"]


def bytes_error(predicted: pd.Series, measured: pd.Series) -> float:
    """Sum over (category, rank) of |predicted - measured| / the predicted total (0: every count equal)."""
    both = pd.concat([predicted.rename("p"), measured.rename("m")], axis=1).fillna(0.0)
    total = float(both.p.sum())
    return float((both.p - both.m).abs().sum() / total) if total else float(both.m.sum() > 0)


def validate(models: Iterable[str], strategies: Iterable[str], worlds: Iterable[int], steps: int = 6,
             profile: CalibrationProfile | None = None, device: str = "cpu-server", batch_per_worker: int = 1024,
             timeout_s: float = 60.0, backend: str = "gloo",
             progress: Callable[[dict], None] | None = None) -> pd.DataFrame:
    """Run the grid on the executor (local ranks on ``backend``) and the simulator; one row per configuration
    (a strategy that does not train a model is skipped for it: ``xc`` runs only ``mp-fc`` and ``mp-fc-knn``).

    Every world size starts its ranks once for all non-PS configurations, and once (with the servers) for
    the PS ones. ``progress`` is called with each row as it is done.
    """
    from simulator.executor.run import execute_many, model_name, small_workload, strategies_for

    models, strategies = list(models), list(strategies)
    preset = load_device(device)
    families = [[s for s in strategies if not s.startswith("ps")], [s for s in strategies if s.startswith("ps")]]
    rows = []
    for world in worlds:
        for family in families:
            configs = [(small_workload(m, batch_per_worker), s) for m in models for s in family
                       if s in strategies_for(m)]
            if not configs:
                continue
            measurements = execute_many(configs, world, steps, backend=backend, timeout_s=timeout_s)
            for (workload, strategy), measured in zip(configs, measurements, strict=True):
                ranks = profile.for_ranks(world + measured.servers) if profile else None
                modelled = apply_calibration(preset, ranks) if ranks else preset
                predicted, predicted_s = predict(workload, strategy, world, measured.servers, steps, modelled, ranks)
                measured_bytes = measured.bytes_per_step()
                measured_s = measured.median_step_s(WARMUP_STEPS)
                row = {"model": model_name(workload), "strategy": strategy, "workers": world,
                       "servers": measured.servers,
                       "predicted_bytes": float(predicted.sum()), "measured_bytes": float(measured_bytes.sum()),
                       "bytes_error": bytes_error(predicted, measured_bytes), "predicted_step_s": predicted_s,
                       "measured_step_s": measured_s, "step_time_error": predicted_s / measured_s - 1,
                       "measured_spread": measured.step_spread(WARMUP_STEPS)}
                rows.append(row)
                if progress:
                    progress(row)
    return pd.DataFrame(rows, columns=COLUMNS)
