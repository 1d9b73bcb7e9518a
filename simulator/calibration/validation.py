"""``dessim validate``: the simulator's predictions next to what the real executor measured.

For each (model, strategy, world) of a grid, the executor (``simulator.executor``) trains the model's small
workload on local ranks, and the simulator runs the same workload, the same sampled IDs and steps, on a star
fabric of as many hosts (the loopback between local ranks), with the ring algorithm the communicator's bus
bytes assume. One row each: predicted and measured bytes per step, their error (sum over (category, rank)
of the absolute differences over the predicted total: 0 when every count matches), predicted and measured
step time, the relative error, how much the measured steps varied (``measured_spread``: interquartile
range / median), and where the step's time went by op category, predicted and measured (``breakdown``:
category -> [predicted s, measured s] per step; ``breakdown_table`` makes it a table). A calibration
profile (``dessim calibrate``) sets the device, the collectives' per-call costs and the ranks' compute
jitter (per worker count); CPU ranks share the machine's cores (processor sharing, ``machine_cores``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from simulator.compute.roofline import CalibrationProfile, Device, apply_calibration, load_device
from simulator.core.engine import Engine
from simulator.core.stepgraph import StepGraph
from simulator.core.stragglers import slow_down
from simulator.executor import EXECUTOR_KNN
from simulator.network import make_network
from simulator.network.fabric import Fabric
from simulator.run.training import make_cluster
from simulator.strategies import StrategyOptions, lower
from simulator.strategies.base import Cluster
from simulator.strategies.ps import PSOptions
from topologies.builders import star
from workloads import AnyWorkload

LOOPBACK_GBPS = 100.0  # nominal rate of the local fabric; calibration scales it (link_efficiency)
LOOPBACK_LATENCY_US = 1.0  # nominal latency per hop; calibration adds latency_us_extra
WARMUP_STEPS = 1
JITTER_DRAWS = 8  # seeded draws of the ranks' compute jitter a prediction pools its steps over
COLUMNS = ["model", "strategy", "workers", "servers", "predicted_bytes", "measured_bytes", "bytes_error",
           "predicted_step_s", "measured_step_s", "step_time_error", "measured_spread", "breakdown"]


def local_fabric(hosts: int, profile: CalibrationProfile | None = None) -> Fabric:
    """A star of ``hosts`` hosts: the local ranks and the loopback between them, calibrated if given."""
    efficiency = profile.link_efficiency if profile and profile.link_efficiency else 1.0
    extra_us = profile.latency_us_extra if profile and profile.latency_us_extra else 0.0
    # a star path has two hops: half the extra per-message latency on each
    return _star(hosts, LOOPBACK_GBPS * efficiency, LOOPBACK_LATENCY_US + extra_us / 2)


@functools.lru_cache(maxsize=16)
def _star(hosts: int, link_gbps: float, latency_us: float) -> Fabric:
    """The star fabric, built once per process for its (hosts, Gb/s, us): nothing changes a Fabric once built but
    its own caches of routes and profiles, so every prediction shares it (a calibration fit makes thousands)."""
    return Fabric(star(hosts=hosts, link_gbps=link_gbps, latency_us=latency_us))


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


@dataclass
class Prediction:
    """The simulator's view of an executor run: bytes sent per step per (category, rank), the step time (s,
    the median over steps after warm-up, as measured) and seconds per step by category (``breakdown``)."""

    bytes_sent: pd.Series
    step_s: float
    breakdown: pd.Series


def machine_cores(backend: str) -> int | None:
    """The cores this machine's local CPU ranks share (those this process may run on), or None for GPU ranks
    (``nccl``: a device each)."""
    return len(os.sched_getaffinity(0)) if backend == "gloo" else None


def modelled_devices(preset: Device, profile: CalibrationProfile | None) -> tuple[Device, Device]:
    """The executor's worker device and PS server device as a profile (one worker count's) calibrated them:
    the preset with the profile's overrides, and for the servers its ``server`` overrides on top."""
    if profile is None:
        return preset, preset
    worker = apply_calibration(preset, profile)
    server = worker.model_copy(update=profile.server.model_dump(exclude_none=True)) if profile.server else worker
    return worker, server


def executor_step(workload: AnyWorkload, strategy: str, workers: int, servers: int, steps: int, device: Device,
                  profile: CalibrationProfile | None = None, server_device: Device | None = None,
                  cores: int | None = None, seed: int = 0) -> tuple[StepGraph, Cluster]:
    """The step graph of an executor run, as the executor runs it: on the loopback star, ring collectives (the
    communicator counts ring bytes), the profile's per-call collective costs, and its ranks serial
    (``StepGraph.serial``: synchronous programs whose blocking collectives never overlap their compute; every
    worker, and the single-threaded BSP servers; ``ps-async``'s server serves its workers first come first
    served instead). ``cores``: the ranks share one machine of that many cores (CPU ranks, one thread each),
    whose compute ops then share them (``StepGraph.cores``); None: a device each (GPUs). With the profile's
    ``jitter_sigma``, each rank's compute ops of each step take exp(sigma Z) times as long (Z standard
    normal, drawn with ``seed``), so a synchronous step waits for its slowest rank."""
    fabric = local_fabric(workers + servers, profile)
    name, options = simulator_strategy(strategy)
    cluster = make_cluster(fabric, name, device, server_device or device, workers=workers, servers=servers or None,
                           placement="dedicated" if servers else "colocated")
    cluster.collective_algorithm = "ring"
    cluster.collective_costs = dict(profile.collectives) if profile else {}
    graph = lower(name, workload, cluster, steps, options).graph
    graph.serial = cluster.workers if strategy == "ps-async" else np.concatenate([cluster.workers, graph.servers])
    graph.cores = cores
    if profile and profile.jitter_sigma:
        jitter(graph, profile.jitter_sigma, steps, seed)
    return graph, cluster


def jitter(graph: StepGraph, sigma: float, steps: int, seed: int) -> None:
    """Each rank's compute ops of each of ``steps`` steps take exp(sigma Z) times as long (Z standard normal,
    drawn with ``seed``): ``executor_step``'s compute jitter."""
    rng = np.random.default_rng(seed)
    slow_down(graph, np.exp(sigma * rng.standard_normal((graph.n_ranks, steps))))


def predict(workload: AnyWorkload, strategy: str, workers: int, servers: int, steps: int, device: Device,
            profile: CalibrationProfile | None = None, server_device: Device | None = None,
            cores: int | None = None) -> Prediction:
    """What the simulator predicts for an executor run of ``steps`` steps (``executor_step``), on the
    analytical backend. A step's time is from the end of the previous one on the slowest worker to its own
    end there (each worker's own, for ``ps-async``, whose workers never wait for each other), the median
    over steps after warm-up, as measured. With compute jitter (the profile's ``jitter_sigma``), over the
    steps of ``JITTER_DRAWS`` seeded draws, the breakdown their mean (the step is lowered once: a draw only
    scales its compute ops' durations)."""
    sigma = profile.jitter_sigma if profile else None
    graph, cluster = executor_step(workload, strategy, workers, servers, steps, device,
                                   profile.model_copy(update={"jitter_sigma": None}) if sigma else profile,
                                   server_device, cores)
    durations = [op.duration_s for op in graph.ops]
    worker = np.full(graph.n_ranks, -1)  # rank -> index among the workers
    worker[cluster.workers] = np.arange(cluster.n_workers)
    step_s, breakdowns = [], []
    for seed in range(JITTER_DRAWS if sigma else 1):
        if sigma:
            for op, duration_s in zip(graph.ops, durations, strict=True):
                op.duration_s = duration_s
            jitter(graph, sigma, steps, seed)
        result = Engine(graph, make_network(cluster.fabric, "analytical")).run()
        rows = result.rows
        times = op_times(graph, rows["op"], rows["rank"], rows["end_s"] - rows["start_s"])
        on = worker[times.rank] >= 0
        ends = np.full((cluster.n_workers, steps), -np.inf)  # each worker's last end in each step
        np.maximum.at(ends, (worker[times.rank[on]], times.step[on]), rows["end_s"][on])
        if strategy == "ps-async":
            step_s.append(np.diff(ends, axis=1, prepend=0.0)[:, WARMUP_STEPS:].ravel())
        else:
            step_s.append(np.diff(ends.max(axis=0), prepend=0.0)[WARMUP_STEPS:])
        breakdowns.append(per_step(times, cluster, steps))
    trace = result.trace
    comm = trace[trace.kind != "compute"]  # bytes do not depend on the draw
    sent = comm.groupby(["category", "rank"], observed=True).bytes_sent.sum() / steps
    breakdown = pd.concat(breakdowns, axis=1).fillna(0.0).mean(axis=1)
    return Prediction(sent[sent > 0], float(np.median(np.concatenate(step_s))), breakdown)


@dataclass
class OpTimes:
    """Seconds ops took on ranks, one entry per (op, rank): the ``rank``, the op's ``step`` and category
    (``category``: an index into ``categories``), and the seconds (``time_s``)."""

    rank: np.ndarray
    step: np.ndarray
    category: np.ndarray
    categories: list[str]
    time_s: np.ndarray


def op_times(graph: StepGraph, op: np.ndarray, rank: np.ndarray, time_s: np.ndarray) -> OpTimes:
    """The ``OpTimes`` of entries given as arrays of (op: an index into ``graph.ops``, rank, seconds)."""
    categories = list(dict.fromkeys(o.category for o in graph.ops))
    code = {c: i for i, c in enumerate(categories)}
    category = np.array([code[o.category] for o in graph.ops], dtype=np.int64)
    step = np.array([o.step for o in graph.ops], dtype=np.int64)
    return OpTimes(rank, step[op], category[op], categories, time_s)


def compute_times(graph: StepGraph) -> OpTimes:
    """Every compute op's seconds on each of its ranks: what the engine's trace would time them, without running
    it (a calibration fit evaluates many devices)."""
    ops = [op for op in graph.ops if op.kind == "compute"]
    return op_times(graph, np.repeat([op.index for op in ops], [len(op.ranks) for op in ops]),
                    np.concatenate([op.ranks for op in ops]), np.concatenate([op.duration_s for op in ops]))


def per_step(times: OpTimes, cluster: Cluster, steps: int) -> pd.Series:
    """Seconds per step after warm-up by category (sorted), as ``Measurement.breakdown`` measures them, from
    ops' times: a worker's (summed over its ops, averaged over workers) and a server's own categories
    (``server.*``)."""
    categories, seconds = category_seconds(times, cluster, steps)
    return pd.Series(seconds, index=categories, dtype=np.float64)


def category_seconds(times: OpTimes, cluster: Cluster, steps: int) -> tuple[list[str], list[float]]:
    """``per_step``'s categories (sorted) and seconds per step, as lists (a calibration fit makes thousands)."""
    after = times.step >= WARMUP_STEPS
    per = steps - WARMUP_STEPS
    n = len(times.categories)
    own = np.array([c.startswith("server.") for c in times.categories], dtype=bool)[times.category]
    names, values = [], []
    for keep, ranks in ((after & np.isin(times.rank, cluster.workers), cluster.n_workers),
                        (after & own & np.isin(times.rank, cluster.servers), max(len(cluster.servers), 1))):
        total, count = group_sums(times.category[keep], times.time_s[keep], n)
        present = np.nonzero(count)[0]
        names += [times.categories[i] for i in present]
        values += (total[present] / per / ranks).tolist()
    order = sorted(range(len(names)), key=names.__getitem__)
    return [names[i] for i in order], [values[i] for i in order]


def group_sums(groups: np.ndarray, values: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group (0 .. n_groups - 1), the sum of its ``values`` in their order with Kahan's compensation (what
    pandas' groupby sums do where groups interleave, as a step's categories do), and how many there are. One
    pass per position within a group, vectorized over the groups."""
    count = np.bincount(groups, minlength=n_groups)
    order = np.argsort(groups, kind="stable")
    nth = np.empty(len(groups), dtype=np.int64)  # each entry's position among its group's
    nth[order] = np.arange(len(groups)) - np.repeat(np.cumsum(count) - count, count)
    total, compensation = np.zeros(n_groups), np.zeros(n_groups)
    for k in range(count.max(initial=0)):
        at = nth == k
        group = groups[at]
        y = values[at] - compensation[group]
        t = total[group] + y
        compensation[group] = t - total[group] - y
        total[group] = t
    return total, count


def bytes_error(predicted: pd.Series, measured: pd.Series) -> float:
    """Sum over (category, rank) of |predicted - measured| / the predicted total (0: every count equal)."""
    both = pd.concat([predicted.rename("p"), measured.rename("m")], axis=1).fillna(0.0)
    total = float(both.p.sum())
    return float((both.p - both.m).abs().sum() / total) if total else float(both.m.sum() > 0)


def validate(models: Iterable[str], strategies: Iterable[str], worlds: Iterable[int], steps: int = 6,
             profile: CalibrationProfile | None = None, device: str = "cpu-server", batch_per_worker: int = 1024,
             timeout_s: float = 60.0, backend: str = "gloo",
             progress: Callable[[dict], None] | None = None, repeats: int = 5) -> pd.DataFrame:
    """Run the grid on the executor (local ranks on ``backend``) and the simulator; one row per configuration
    (a strategy that does not train a model is skipped for it: ``xc`` runs only ``mp-fc`` and ``mp-fc-knn``).

    Every world size starts its ranks once for all non-PS configurations, and once (with the servers) for
    the PS ones, and runs its configurations ``repeats`` times over, keeping each one's quietest pass
    (``executor.run.quietest``). ``progress`` is called with each row as it is done.
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
            measurements = execute_many(configs, world, steps, backend=backend, timeout_s=timeout_s,
                                        repeats=repeats)
            for (workload, strategy), measured in zip(configs, measurements, strict=True):
                ranks = profile.for_ranks(world) if profile else None
                worker, server = modelled_devices(preset, ranks)
                predicted = predict(workload, strategy, world, measured.servers, steps, worker, ranks, server,
                                    machine_cores(backend))
                measured_bytes = measured.bytes_per_step()
                measured_s = measured.median_step_s(WARMUP_STEPS)
                both = pd.concat([predicted.breakdown.rename("predicted_s"),
                                  measured.breakdown(WARMUP_STEPS).rename("measured_s")], axis=1).fillna(0.0)
                row = {"model": model_name(workload), "strategy": strategy, "workers": world,
                       "servers": measured.servers,
                       "predicted_bytes": float(predicted.bytes_sent.sum()),
                       "measured_bytes": float(measured_bytes.sum()),
                       "bytes_error": bytes_error(predicted.bytes_sent, measured_bytes),
                       "predicted_step_s": predicted.step_s, "measured_step_s": measured_s,
                       "step_time_error": predicted.step_s / measured_s - 1,
                       "measured_spread": measured.step_spread(WARMUP_STEPS),
                       "breakdown": {str(c): [float(p), float(m)] for c, (p, m) in both.iterrows()}}
                rows.append(row)
                if progress:
                    progress(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def breakdown_table(rows: pd.DataFrame) -> pd.DataFrame:
    """``validate``'s rows as one row per (model, strategy, workers, category): predicted_s and measured_s,
    seconds per step (a worker's; a server's for ``server.*``; ``other`` is the executor's time outside
    every timed phase, which the simulator has no op for)."""
    return pd.DataFrame([{"model": r.model, "strategy": r.strategy, "workers": r.workers, "category": category,
                          "predicted_s": pm[0], "measured_s": pm[1]}
                         for r in rows.itertuples() for category, pm in r.breakdown.items()],
                        columns=["model", "strategy", "workers", "category", "predicted_s", "measured_s"])
