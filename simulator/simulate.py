"""Run one collective on a fabric with either backend and report it as nccl-tests would."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from simulator.collectives import SUPPORTED, build_schedule, busbw_factor, check_request
from simulator.fabric import Fabric
from simulator.network import AnalyticalNetwork, make_network
from simulator.results import link_table


@dataclass
class CollectiveReport:
    """One collective run. Sizes in bytes, times in seconds, bandwidths in GB/s (1e9 bytes/s)."""

    op: str
    algo: str
    ranks: int
    size_bytes: float
    time_s: float
    bytes_on_wire: float
    algbw_GBps: float
    busbw_GBps: float
    fidelity: str
    topology: str
    servers: int
    steps: int
    messages: int
    max_link_bytes: float
    wall_s: float
    auto_times_s: dict[str, float] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def ranks_per_node(fabric: Fabric) -> int | None:
    """GPUs per node when the topology has nodes (dgx builder), else None."""
    value = fabric.graph.graph.get("gpus_per_node")
    return int(value) if value else None


def choose_algorithm(op: str, size_bytes: float, fabric: Fabric, servers: int = 0) -> tuple[str, dict[str, float]]:
    """The fastest supported algorithm for ``op`` at this size on this fabric (analytical model)."""
    network = AnalyticalNetwork(fabric)
    per_node = ranks_per_node(fabric)
    times: dict[str, float] = {}
    for algo in SUPPORTED[op]:
        if algo == "hierarchical" and not (per_node and per_node > 1 and fabric.n_hosts % per_node == 0):
            continue
        schedule = build_schedule(op, algo, size_bytes, fabric.n_hosts, servers, per_node)
        times[algo] = network.schedule_time_s(schedule)[0]
    return min(times, key=times.__getitem__), times


def simulate_collective(op: str, algo: str, size_bytes: float, fabric: Fabric, fidelity: str = "flow",
                        servers: int = 0) -> tuple[CollectiveReport, pd.DataFrame]:
    """Simulate ``op`` over all hosts of ``fabric``; returns the report and the per-link table."""
    started = time.perf_counter()
    n = fabric.n_hosts
    per_node = ranks_per_node(fabric)
    check_request(op, algo, n, servers, per_node)
    auto_times = None
    if algo == "auto":
        algo, auto_times = choose_algorithm(op, size_bytes, fabric, servers)
    schedule = build_schedule(op, algo, size_bytes, n, servers, per_node)
    network = make_network(fabric, fidelity)
    done = network.start(schedule)
    network.env.run(until=done)
    result = done.value
    link_bytes = network.link_bytes()
    if isinstance(network, AnalyticalNetwork):
        busy_s, peak = link_bytes / fabric.capacity_Bps, np.full(fabric.n_links, np.nan)
    else:
        busy_s, peak = network.core.link_busy_s, network.core.link_peak_util
    links = link_table(fabric, link_bytes, busy_s, peak, result.time_s)
    algbw = size_bytes / result.time_s / 1e9
    report = CollectiveReport(
        op=op, algo=algo, ranks=n, size_bytes=float(size_bytes), time_s=result.time_s,
        bytes_on_wire=float(result.sent_bytes.sum()), algbw_GBps=algbw,
        busbw_GBps=algbw * busbw_factor(op, n, servers), fidelity=fidelity,
        topology=str(fabric.graph.graph.get("spec", "custom")), servers=servers, steps=schedule.n_steps,
        messages=schedule.n_messages(), max_link_bytes=float(link_bytes.max(initial=0.0)),
        wall_s=time.perf_counter() - started, auto_times_s=auto_times)
    return report, links
