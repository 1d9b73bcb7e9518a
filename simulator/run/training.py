"""One training step of a workload on a cluster under a strategy: lower, run, summarize.

This is what ``dessim run`` and ``dessim compare`` call; notebooks call it too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd

from simulator.compute.roofline import Device, fits, load_device
from simulator.core.engine import Engine, EngineResult
from simulator.core.stragglers import device_of_rank, mix_devices, slow_down, slowdown_factors
from simulator.errors import SpecError, check_choice
from simulator.network import DEFAULT_NETWORK_MODEL, DEFAULT_RATE_TOLERANCE, Network, make_network
from simulator.network.fabric import Fabric
from simulator.network.flow import FlowBudgetExceeded
from simulator.options import MAX_STEPS
from simulator.results.tables import StepSummary, flat_summary, link_timeline, network_links, step_summary
from simulator.run.fidelity import (
    DEFAULT_BUDGET_S,
    SAMPLE_FRACTION,
    choose,
    flow_cost_s,
    long_run_note,
    over_budget_reason,
)
from simulator.strategies import StrategyOptions, lower, needs_servers
from simulator.strategies.base import Cluster, Lowered
from workloads import AnyWorkload

PLACEMENTS = ("colocated", "dedicated")


@dataclass
class StepReport:
    """A simulated training step: its summary (``results.StepSummary``), and on demand its trace and link table."""

    summary: StepSummary
    result: EngineResult = field(repr=False)
    network: Network = field(repr=False)

    @property
    def trace(self) -> pd.DataFrame:
        """One row per op per rank: rank, op, kind, category, step, start_s, end_s, bytes sent/received."""
        return self.result.trace

    @cached_property
    def links(self) -> pd.DataFrame:
        """One row per directed link: bytes carried, busy time, peak and mean utilization."""
        return network_links(self.network, self.result.makespan_s)

    @property
    def bytes_on_links(self) -> float:
        """Bytes per step summed over every link (the link table's ``bytes`` / steps): a message counts once per
        hop, where ``bytes_on_wire`` counts it once, at its sender."""
        return float(self.network.link_bytes().sum()) / self.summary.steps

    def link_timeline(self, bins: int = 100) -> pd.DataFrame:
        """Each used link's utilization over ``bins`` time bins of the run (``results.link_timeline``); needs a
        flow-level run with ``record_rates=True``."""
        segments = self.network.link_segments()
        if segments is None:
            raise SpecError("link_timeline", self.summary["fidelity"],
                            "needs fidelity flow, simulated with record_rates=True")
        return link_timeline(self.network.fabric, segments, self.result.makespan_s, bins)


def make_cluster(fabric: Fabric, strategy: str, device: Device, server_device: Device,
                 workers: int | None = None, servers: int | None = None, placement: str = "colocated") -> Cluster:
    """Workers and PS servers on the fabric's hosts (in host order).

    ``colocated``: workers on the first ``workers`` hosts (default all), servers on the first ``servers`` of
    them (default one per worker). ``dedicated``: servers on the last ``servers`` hosts (default one per
    eight hosts), workers on the first ``workers`` of the rest (default all of them).
    """
    hosts = fabric.n_hosts
    check_choice("placement", placement, PLACEMENTS)
    p = 0
    if needs_servers(strategy):
        default = max(1, hosts // 8) if placement == "dedicated" else (workers or hosts)
        p = servers if servers is not None else default
        limit = hosts - 1 if placement == "dedicated" else (workers or hosts)
        if not 1 <= p <= limit:
            raise SpecError("servers", p, f"allowed: 1 to {limit} ({placement} servers on {hosts} hosts)")
    free = hosts - p if placement == "dedicated" else hosts
    n = workers if workers is not None else free
    if not 1 <= n <= free:
        raise SpecError("workers", n, f"allowed: 1 to {free} on this topology")
    worker_hosts = np.arange(n)
    server_hosts = np.arange(hosts - p, hosts) if placement == "dedicated" else np.arange(p)
    return Cluster(fabric, worker_hosts, device, server_hosts, server_device)


def simulate_step(workload: AnyWorkload, cluster: Cluster, strategy: str, fidelity: str = "flow", steps: int = 1,
                  options: StrategyOptions | None = None, rate_tolerance: float | None = None,
                  record_rates: bool = False, progress: Callable[[int, int], None] | None = None,
                  stragglers: Sequence[str] = (), rank_devices: Sequence[str] = (),
                  network_model: str = DEFAULT_NETWORK_MODEL, budget_s: float = DEFAULT_BUDGET_S,
                  notice: Callable[[str], None] | None = None) -> StepReport:
    """Simulate ``steps`` training steps, links shared by ``network_model``; the summary is per step.
    ``fidelity``: flow, analytical or auto (flow level if it fits ``budget_s`` wall seconds: ``run.fidelity``).
    ``rate_tolerance``: flow level's completion batching; None: the default, or the coarse one where ``auto``
    needs it to fit the budget.
    ``record_rates`` (flow fidelity) keeps every link's rate over time for ``StepReport.link_timeline``;
    ``progress(done, total)`` follows the engine's (op, rank) pairs; ``notice(text)`` hears, before a flow-level
    run estimated to be long, its estimate and the faster option (``run.fidelity.long_run_note``).
    ``stragglers`` (``3=2``, ``bernoulli:p=0.05,factor=3,seed=1``) and ``rank_devices`` (``0-7=a100``) vary
    compute speed per rank (``simulator.core.stragglers``)."""
    if not 1 <= steps <= MAX_STEPS:
        raise SpecError("steps", steps, f"allowed: 1 to {MAX_STEPS:,}")
    started = time.perf_counter()
    lowered = lower(strategy, workload, cluster, steps, options)
    placed = device_of_rank(rank_devices, cluster.fabric.n_hosts)
    devices = {name: load_device(name) for name in placed}
    for name, ranks in placed.items():  # the same step lowered for their device
        mix_devices(lowered.graph, ranks, lower(strategy, workload, replace(cluster, device=devices[name]), steps,
                                                options).graph)
    if stragglers:
        slow_down(lowered.graph, slowdown_factors(stragglers, cluster.fabric.n_hosts, steps))

    def run(at: str, deadline: float | None = None, follow: bool = True) -> tuple[EngineResult, Network]:
        network = make_network(cluster.fabric, at, rate_tolerance=tolerance,
                               record_rates=record_rates and at == "flow", model=network_model)
        if deadline is not None:
            network.deadline = deadline  # type: ignore[union-attr]  (flow level only)
        return Engine(lowered.graph, network).run(progress if follow else None), network

    reason, difference = "requested", None
    schedules = [op.schedule for op in lowered.graph.ops if op.schedule is not None]
    cost = {"maxmin": network_model == "maxmin", "spread": cluster.fabric.ecmp == "dmodk"}
    choice = choose(schedules, budget_s, rate_tolerance=rate_tolerance, **cost) if fidelity == "auto" else None
    tolerance = (choice.rate_tolerance if choice else rate_tolerance if rate_tolerance is not None
                 else DEFAULT_RATE_TOLERANCE)
    if notice is not None and (choice.fidelity if choice else fidelity) == "flow":
        note = long_run_note(choice.estimate_s if choice else flow_cost_s(schedules, rate_tolerance=tolerance, **cost),
                             fidelity, budget_s)
        if note:
            notice(f"{strategy}: {note}")
    if choice is not None:
        fidelity, reason = choice.fidelity, choice.reason
        try:
            result, network = run(fidelity, started + budget_s if fidelity == "flow" else None)
        except FlowBudgetExceeded:
            fidelity, reason = "analytical", over_budget_reason(budget_s, choice.estimate_s)
            result, network = run(fidelity)
        if fidelity == "flow" and time.perf_counter() - started <= SAMPLE_FRACTION * budget_s:
            analytical_s = run("analytical", follow=False)[0].makespan_s / steps
            flow_s = result.makespan_s / steps
            difference = (analytical_s - flow_s) / flow_s if flow_s > 0 else 0.0
    else:
        result, network = run(fidelity)
    report = step_report(workload, cluster, strategy, fidelity, steps, lowered, result, network, started, devices)
    report.summary.stragglers, report.summary.rank_devices = "; ".join(stragglers), "; ".join(rank_devices)
    report.summary.fidelity_reason, report.summary.analytical_difference = reason, difference
    return report


def step_report(workload: AnyWorkload, cluster: Cluster, strategy: str, fidelity: str, steps: int, lowered: Lowered,
                result: EngineResult, network: Network, started: float,
                devices: dict[str, Device] | None = None) -> StepReport:
    """The StepReport of a lowered step graph that ran on ``network`` (``started``: ``time.perf_counter()``
    when the simulation began, for ``wall_s``; ``devices``: other worker devices, of mixed-device runs)."""
    memory = {}
    worker_devices = [cluster.device, *(devices or {}).values()]
    for role, parts in lowered.memory.items():
        if role == "server" and cluster.server_device:
            device = cluster.server_device
        else:  # with mixed devices, the one with the least memory
            device = min(worker_devices, key=lambda d: d.mem_capacity_bytes)
        ok, reason = fits(device, parts)
        memory[role] = {"bytes": float(sum(parts.values())), "parts": parts, "device": device.name,
                        "fits": ok, "reason": reason}
    figures = step_summary(result.rows, lowered.graph, result.makespan_s, workload.batch_per_worker)
    summary = StepSummary(
        strategy=strategy, workload=workload.name, model=workload.model,
        topology=str(cluster.fabric.graph.graph.get("spec", "custom")),
        faults="; ".join(cluster.fabric.graph.graph.get("faults", [])), fidelity=fidelity,
        network_model=network.model.name, workers=cluster.n_workers,
        servers=len(cluster.servers) if needs_servers(strategy) else 0, batch_per_worker=workload.batch_per_worker,
        precision=workload.precision, steps=steps, **figures,
        memory_per_device_bytes={role: m["bytes"] for role, m in memory.items()},
        fits_memory=all(m["fits"] for m in memory.values()), memory=memory, **lowered.details,
        wall_s=time.perf_counter() - started,
        samples_per_s=cluster.n_workers * workload.batch_per_worker / figures["step_time_s"])
    return StepReport(summary, result, network)


#: What compare adds to each strategy's summary (``dessim compare --json``): name -> meaning, with its unit.
COMPARISON_FIELDS = {
    "bytes_on_links": "bytes per step summed over every link each message crosses (the link table's bytes / steps); "
                      "bytes_on_wire counts a message once, at its sender",
    "speedup_x": "the baseline's step time / this strategy's (x; above 1: faster than the baseline)",
    "step_time_change_pct": "100 x (step_time_s / the baseline's - 1), in % (negative: faster than the baseline)",
    "bytes_on_wire_change_pct": "100 x (bytes_on_wire / the baseline's - 1), in % (negative: fewer bytes; null where "
                                "the baseline's is 0)",
    "bytes_per_worker_max_change_pct": "100 x (bytes_per_worker.max / the baseline's - 1), in % (null where the "
                                       "baseline's is 0)",
    "bytes_on_links_change_pct": "100 x (bytes_on_links / the baseline's - 1), in % (null where the baseline's is 0)",
}
CHANGED = ("step_time_s", "bytes_on_wire", "bytes_per_worker_max", "bytes_on_links")  # *_change_pct


def comparison_table(reports: list[StepReport]) -> pd.DataFrame:
    """One row per strategy: the scalar summary figures, ``bytes_on_links``, and against the first strategy
    ``speedup_x`` and ``<figure>_change_pct`` (``COMPARISON_FIELDS``; NaN where the first's figure is 0)."""
    rows = pd.DataFrame([{**flat_summary(r.summary), "bytes_on_links": r.bytes_on_links} for r in reports])
    base = rows.iloc[0]
    rows["speedup_x"] = base["step_time_s"] / rows["step_time_s"]
    for key in CHANGED:
        change = f"{key.removesuffix('_s')}_change_pct"
        rows[change] = 100 * (rows[key] / base[key] - 1) if base[key] > 0 else np.nan
    return rows


def comparison_document(reports: list[StepReport]) -> dict:
    """``dessim compare --json``: the ``baseline`` (the first strategy), every strategy's summary, and per strategy
    ``bytes_on_links`` and ``versus_baseline`` (``speedup_x``, ``*_change_pct``), with ``descriptions`` of every
    figure (``StepSummary.descriptions`` and ``COMPARISON_FIELDS``)."""
    rows = comparison_table(reports).set_index("strategy")
    versus = [name for name in COMPARISON_FIELDS if name != "bytes_on_links"]
    return {
        "baseline": reports[0].summary.strategy,
        "strategies": [r.summary.document() for r in reports],
        "bytes_on_links": rows["bytes_on_links"].astype(float).to_dict(),
        "versus_baseline": {name: {key: None if np.isnan(value) else float(value) for key, value in row.items()}
                            for name, row in rows[versus].astype(float).iterrows()},
        "descriptions": {**StepSummary.descriptions(), **COMPARISON_FIELDS},
    }
