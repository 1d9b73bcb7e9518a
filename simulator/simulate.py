"""Run one collective on a fabric with either backend and report it as nccl-tests would."""

from __future__ import annotations

import time
import weakref
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from simulator.collectives import SUPPORTED, build_schedule, busbw_factor, check_request, pipeline_chunks
from simulator.fabric import Fabric
from simulator.network import DEFAULT_NETWORK_MODEL, DEFAULT_RATE_TOLERANCE, AnalyticalNetwork, make_network
from simulator.network.analytical import StepProfile, profile_link_bytes, profile_time_s
from simulator.results import link_table, network_links


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

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Profiled:
    """A collective's analytical step profiles at a reference size, reusable at any size of the same shape."""

    size_bytes: float
    profile: list[tuple[int, StepProfile]]
    total_bytes: float
    steps: int
    messages: int


DIRECT_MAX_RANKS = 64


def analytical_collective(network: AnalyticalNetwork, op: str, algo: str, size_bytes: float, servers: int = 0,
                          ranks_per_node: int | None = None, hosts: np.ndarray | None = None,
                          ) -> tuple[float, np.ndarray, _Profiled]:
    """(time s, bytes per link, profile) of a collective over ``hosts`` (default: every host) on the
    analytical backend, memoized per shape.

    Sizes in a collective's patterns are proportional to S, so the profile built at one size serves all
    sizes with the same pipeline shape: a size sweep builds and routes each schedule once.
    """
    hosts = np.arange(network.fabric.n_hosts) if hosts is None else np.asarray(hosts, dtype=np.int64)
    n = len(hosts)
    key = (op, algo, hosts.tobytes(), servers, ranks_per_node, pipeline_chunks(op, algo, size_bytes))
    entry = network.memo.get(key)
    if entry is None:
        schedule = build_schedule(op, algo, size_bytes, n, servers, ranks_per_node)
        entry = _Profiled(size_bytes, network.schedule_profile(schedule, hosts), schedule.total_bytes(),
                          schedule.n_steps, schedule.n_messages())
        network.memo[key] = entry
    scale = size_bytes / entry.size_bytes
    return (profile_time_s(entry.profile, scale), profile_link_bytes(entry.profile, network.fabric.n_links, scale),
            entry)


def choose_algorithm(op: str, size_bytes: float, fabric: Fabric, servers: int = 0,
                     network: AnalyticalNetwork | None = None, hosts: np.ndarray | None = None,
                     ranks_per_node: int | None = None) -> tuple[str, dict[str, float]]:
    """The fastest supported algorithm for ``op`` at this size over ``hosts`` (default: every host, with the
    fabric's nodes) by the analytical model, as NCCL's tuner picks one; returns it and every candidate's time.
    All-pairs ``direct`` reductions and gathers are candidates up to ``DIRECT_MAX_RANKS`` ranks.
    """
    network = network or _chooser(fabric)
    if hosts is None:
        per_node = fabric.ranks_per_node
        n = fabric.n_hosts
    else:
        per_node, n = ranks_per_node, len(hosts)
    times = {algo: analytical_collective(network, op, algo, size_bytes, servers, per_node, hosts)[0]
             for algo in candidate_algorithms(op, n, per_node)}
    return min(times, key=times.__getitem__), times


def candidate_algorithms(op: str, n: int, ranks_per_node: int | None) -> list[str]:
    """The algorithms ``choose_algorithm`` tries for ``op`` on ``n`` ranks, in order (ties go to the first)."""
    out = []
    for algo in SUPPORTED[op]:
        if algo == "hierarchical" and not (ranks_per_node and 1 < ranks_per_node < n and n % ranks_per_node == 0):
            continue
        if algo == "direct" and op not in ("alltoall", "incast", "pushpull") and n > DIRECT_MAX_RANKS:
            continue  # all pairs: N^2 messages to route, and never the fastest at this scale
        out.append(algo)
    return out


_CHOOSERS: weakref.WeakKeyDictionary[Fabric, AnalyticalNetwork] = weakref.WeakKeyDictionary()


def _chooser(fabric: Fabric) -> AnalyticalNetwork:
    """One analytical network per fabric whose memo serves every algorithm choice on it."""
    network = _CHOOSERS.get(fabric)
    if network is None:
        network = _CHOOSERS[fabric] = AnalyticalNetwork(fabric)
    return network


def simulate_collective(op: str, algo: str, size_bytes: float, fabric: Fabric, fidelity: str = "flow",
                        servers: int = 0, rate_tolerance: float = DEFAULT_RATE_TOLERANCE,
                        network_model: str = DEFAULT_NETWORK_MODEL) -> tuple[CollectiveReport, pd.DataFrame]:
    """Simulate ``op`` over all hosts of ``fabric``, links shared by ``network_model``; returns the report
    and the per-link table.

    ``rate_tolerance`` is the flow backend's (see ``make_network``); the report records it.
    """
    started = time.perf_counter()
    n = fabric.n_hosts
    per_node = fabric.ranks_per_node
    check_request(op, algo, n, servers, per_node)
    network = make_network(fabric, fidelity, rate_tolerance=rate_tolerance, model=network_model)
    analytical = network if isinstance(network, AnalyticalNetwork) else None
    auto_times = None
    if algo == "auto":
        algo, auto_times = choose_algorithm(op, size_bytes, fabric, servers, analytical)
    if analytical is not None:
        time_s, link_bytes, entry = analytical_collective(analytical, op, algo, size_bytes, servers, per_node)
        wire_bytes = entry.total_bytes * size_bytes / entry.size_bytes
        steps, messages = entry.steps, entry.messages
        links = link_table(fabric, link_bytes, link_bytes / fabric.capacity_Bps, np.full(fabric.n_links, np.nan),
                           time_s)
    else:
        schedule = build_schedule(op, algo, size_bytes, n, servers, per_node)
        done = network.start(schedule)
        network.env.run(until=done)
        time_s, wire_bytes = done.value.time_s, float(done.value.sent_bytes.sum())
        steps, messages = schedule.n_steps, schedule.n_messages()
        links = network_links(network, time_s)
        link_bytes = links["bytes"].to_numpy()
    algbw = size_bytes / time_s / 1e9
    report = CollectiveReport(
        op=op, algo=algo, ranks=n, size_bytes=float(size_bytes), time_s=time_s, bytes_on_wire=wire_bytes,
        algbw_GBps=algbw, busbw_GBps=algbw * busbw_factor(op, n, servers), fidelity=fidelity,
        topology=str(fabric.graph.graph.get("spec", "custom")), servers=servers, steps=steps,
        messages=messages, max_link_bytes=float(link_bytes.max(initial=0.0)),
        wall_s=time.perf_counter() - started, auto_times_s=auto_times, network_model=network_model,
        rate_tolerance=None if analytical is not None else rate_tolerance)
    return report, links
