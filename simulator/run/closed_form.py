"""Analytical steps over arrays of configurations, in closed form: one evaluation for a whole sweep axis.

A configuration is a batch size and, optionally, the fabric's link rates and latencies (a ``LinkGrid`` row:
routes do not depend on them, so one fabric's profiles price every row).

For the strategies whose analytical critical path is a fixed chain (each rank: a compute, a communication
and a PS-server stream, ops in program order; where ranks differ, one chain per rank and the latest one), the
strategy writes that chain out beside its lowering (``Strategy.closed_form``: ``des``, ``des-rs`` and
``des-a2a`` in ``strategies.des``, ``dp`` in ``strategies.dp``, synchronous ``ps`` in ``strategies.ps``,
``tw``, ``cw``, ``rw`` and ``twrw`` in ``strategies.torchrec``, ``dp-fc``, ``ps-fc``, ``mp-fc`` and
``mp-fc-knn`` in ``strategies.fc``), from the terms ``strategies.closed`` shares. This module picks it from
the registry, for one step at analytical fidelity (recommenders: expected IDs).

Bytes on the wire are the workload's ``comm_bytes`` per value (fc: 2 with ``fp16_comm``), as the strategies
send them (stored values ``dtype_bytes``, GEMMs at ``compute_dtype``'s peak: ``workloads.precision``). The
result equals ``simulate_step(..., "analytical")`` per configuration, on the fabric built at its link rates
and latencies (``tests/test_closed_form.py``), at a small fraction of the cost per configuration
(``benchmarks/sweep.py``).
"""

from __future__ import annotations

import numpy as np

from simulator.network.fabric import LinkGrid
from simulator.strategies import REGISTRY, StrategyOptions
from simulator.strategies.base import Cluster
from simulator.strategies.closed import Terms
from workloads import AnyWorkload, ClassificationWorkload, Workload
from workloads.precision import check_device

STRATEGIES = tuple(name for name, strategy in REGISTRY.items() if strategy.closed_form)


def supports(workload: object, strategy: str, fidelity: str, steps: int = 1,
             options: StrategyOptions | None = None) -> bool:
    """Whether ``step_times`` evaluates this run (else it needs the engine): one analytical step of a strategy
    with a closed form, on a workload of its kind (a recommender's with expected IDs)."""
    if strategy not in STRATEGIES or fidelity != "analytical" or steps != 1:
        return False
    if isinstance(workload, ClassificationWorkload):
        return REGISTRY[strategy].kind == "classification"
    return (isinstance(workload, Workload) and workload.ids == "expected" and REGISTRY[strategy].kind == "recommender"
            and (options is None or options.ps.mode == "sync" or strategy != "ps"))


def step_times(workload: AnyWorkload, cluster: Cluster, strategy: str, batches: np.ndarray,
               options: StrategyOptions | None = None, grid: LinkGrid | None = None) -> dict[str, np.ndarray]:
    """Per configuration, batch size ``batches[i]`` (samples per worker) on the cluster's fabric at the link
    rates and latencies of ``grid`` row i (default: as built): step_time_s, samples_per_s, bytes_on_wire,
    bytes_per_worker_mean, compute_s, exposed_comm_s, memory_worker_bytes and fits_memory (ps, ps-fc: and
    memory_server_bytes; des, des-rs and des-a2a: des_partial and partial_width), as the engine's summary
    reports them."""
    opts = options or StrategyOptions.default()
    if not supports(workload, strategy, "analytical", options=opts):
        raise ValueError(f"the closed form covers {', '.join(STRATEGIES)} (ps: sync; recommenders: expected IDs), "
                         f"not {strategy} on {workload.name}")
    if cluster.collective_costs:
        raise ValueError("the closed form does not model per-call collective costs (a calibration's): use the engine")
    if grid is not None and len(grid) != len(batches):
        raise ValueError(f"{len(batches)} batch sizes but {len(grid)} link configurations")
    check_device(workload.precision, cluster.device)
    closed_form = REGISTRY[strategy].closed_form
    assert closed_form is not None
    return closed_form(Terms(workload, cluster, opts, np.asarray(batches, dtype=np.float64), grid))
