"""Run one collective on a fabric with either backend and report it as nccl-tests would."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from simulator.collectives.algorithms import DEFAULT_ALGO, OPS, build_schedule, busbw_factor, check_request
from simulator.collectives.tuner import choose_algorithm, profiled
from simulator.errors import SpecError, check_choice
from simulator.network import (
    DEFAULT_NETWORK_MODEL,
    DEFAULT_RATE_TOLERANCE,
    FIDELITIES,
    AnalyticalNetwork,
    make_network,
)
from simulator.network.alone import ordered_routes
from simulator.network.fabric import Fabric
from simulator.network.flow import FlowBudgetExceeded
from simulator.network.models import network_model as network_model_named
from simulator.options import DEFAULT_BUDGET_S
from simulator.run.fidelity import choose, over_budget_reason
from simulator.units import parse_size_bytes
from topologies import load_cables

if TYPE_CHECKING:
    import pandas as pd

# --size per rank: at least one byte (a message), at most 1 PiB (thousands of times any device's memory: larger
# sizes are typos, and their times, in years, mean nothing)
MAX_SIZE_BYTES = 2**50
ORDERED_REASON = ("auto: no two messages ever share a link, so every message moves alone: flow level, exact and "
                  "without events")


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
    rate_tolerance: float | None = None
    network_model: str = DEFAULT_NETWORK_MODEL
    auto_times_s: dict[str, float] | None = None
    fidelity_reason: str = "requested"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CollectiveLinks:
    """What each directed link of ``fabric`` (by link id) carried in one collective: ``bytes``, ``busy_s`` (s) and
    ``peak_util`` (NaN at analytical fidelity) over ``horizon_s`` (s, the collective's time); ``table()`` makes
    them the link table (pandas, loaded only then)."""

    fabric: Fabric
    bytes: np.ndarray
    busy_s: np.ndarray
    peak_util: np.ndarray
    horizon_s: float

    def table(self) -> pd.DataFrame:
        from simulator.results.tables import link_table

        return link_table(self.fabric, self.bytes, self.busy_s, self.peak_util, self.horizon_s)


def run_collective(op: str, algo: str | None, size: str | float, topology: str, faults: list[str] | None = None,
                   ecmp: str = "hash", fidelity: str = "auto", servers: int = 0,
                   rate_tolerance: float = DEFAULT_RATE_TOLERANCE, network_model: str = DEFAULT_NETWORK_MODEL,
                   budget_s: float = DEFAULT_BUDGET_S) -> tuple[CollectiveReport, CollectiveLinks]:
    """What ``dessim collective`` runs, from what a user types: ``op`` by ``algo`` (default: the op's usual one)
    at ``size`` (``64MiB``, ``1e9``: bytes per rank as nccl-tests counts them) over every host of ``topology``
    with link ``faults``; each input is checked and named as the command line names it."""
    check_choice("op", op, OPS)
    size_bytes = parse_size_bytes(size, "--size")
    if not 1 <= size_bytes <= MAX_SIZE_BYTES:
        raise SpecError("--size", size, "allowed: 1 B to 1 PiB per rank (1 PiB: thousands of times any device's "
                                        "memory)")
    network_model_named(network_model, "--network-model")
    fabric = Fabric(load_cables(topology, faults or []), ecmp=ecmp)
    return simulate_collective(op, algo or DEFAULT_ALGO[op], size_bytes, fabric, fidelity, servers, rate_tolerance,
                               network_model, budget_s)


def simulate_collective(op: str, algo: str, size_bytes: float, fabric: Fabric, fidelity: str = "flow",
                        servers: int = 0, rate_tolerance: float = DEFAULT_RATE_TOLERANCE,
                        network_model: str = DEFAULT_NETWORK_MODEL,
                        budget_s: float = DEFAULT_BUDGET_S) -> tuple[CollectiveReport, CollectiveLinks]:
    """Simulate ``op`` over all hosts of ``fabric``, links shared by ``network_model``; returns the report
    and what the links carried. ``fidelity``: flow, analytical or auto (flow level if it fits ``budget_s`` wall
    seconds: ``run.fidelity``).

    ``rate_tolerance`` is the flow backend's (see ``make_network``); the report records it.
    """
    started = time.perf_counter()
    n = fabric.n_hosts
    per_node = fabric.ranks_per_node
    check_request(op, algo, n, servers, per_node)
    check_choice("fidelity", fidelity, ("auto", *FIDELITIES))
    auto_times = None
    if algo == "auto":
        algo, auto_times = choose_algorithm(op, size_bytes, fabric, servers)
    schedule = build_schedule(op, algo, size_bytes, n, servers, per_node) if fidelity != "analytical" else None
    reason = "requested"
    deadline = None
    network = make_network(fabric, "analytical" if fidelity == "analytical" else "flow",
                           rate_tolerance=rate_tolerance, model=network_model)
    if fidelity == "auto":
        if ordered_routes(network.routes, schedule, np.arange(n)) is not None:
            fidelity, reason = "flow", ORDERED_REASON
        else:
            choice = choose([schedule], budget_s, maxmin=network_model == "maxmin", alone=True,
                            spread=fabric.ecmp == "dmodk", rate_tolerance=rate_tolerance)  # kept: the network has it
            fidelity, reason = choice.fidelity, choice.reason
            deadline = started + budget_s
            if fidelity == "analytical":
                network = make_network(fabric, fidelity, model=network_model)
    if fidelity == "flow":
        network.deadline = deadline
        try:
            result = network.run_alone(schedule)
        except FlowBudgetExceeded:
            fidelity, reason = "analytical", over_budget_reason(budget_s, choice.estimate_s)
            network = make_network(fabric, fidelity, model=network_model)
    analytical = isinstance(network, AnalyticalNetwork)
    if analytical:
        entry = profiled(fabric, op, algo, size_bytes, servers, per_node, model=network.model)
        time_s, link_bytes = entry.time_s(size_bytes), entry.link_bytes(size_bytes, fabric.n_links)
        wire_bytes = entry.total_bytes * size_bytes / entry.size_bytes
        steps, messages = entry.steps, entry.messages
        busy_s, peak_util = link_bytes / fabric.capacity_Bps, np.full(fabric.n_links, np.nan)
    else:
        time_s, wire_bytes = result.time_s, float(result.sent_bytes.sum())
        steps, messages = schedule.n_steps, schedule.n_messages()
        link_bytes, (busy_s, peak_util) = network.link_bytes(), network.link_stats()
    algbw = size_bytes / time_s / 1e9
    report = CollectiveReport(
        op=op, algo=algo, ranks=n, size_bytes=float(size_bytes), time_s=time_s, bytes_on_wire=wire_bytes,
        algbw_GBps=algbw, busbw_GBps=algbw * busbw_factor(op, n, servers), fidelity=fidelity,
        topology=str(fabric.graph.graph.get("spec", "custom")), servers=servers, steps=steps,
        messages=messages, max_link_bytes=float(link_bytes.max(initial=0.0)),
        wall_s=time.perf_counter() - started, auto_times_s=auto_times, network_model=network_model,
        fidelity_reason=reason,
        rate_tolerance=None if analytical else rate_tolerance)
    return report, CollectiveLinks(fabric, link_bytes, busy_s, peak_util, time_s)
