"""Result tables (pandas) of ARCHITECTURE.md: the per-link table and a training step's summary."""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.fabric import Fabric
from simulator.stepgraph import StepGraph


def link_table(fabric: Fabric, link_bytes: np.ndarray, busy_s: np.ndarray, peak_util: np.ndarray,
               horizon_s: float) -> pd.DataFrame:
    """One row per directed link: bytes carried, busy time, peak and mean utilization over ``horizon_s``."""
    names = fabric.node_names
    capacity_Bps = fabric.capacity_Bps
    mean_util = link_bytes / (capacity_Bps * horizon_s) if horizon_s > 0 else np.zeros(fabric.n_links)
    return pd.DataFrame({
        "src": [names[i] for i in fabric.link_src],
        "dst": [names[i] for i in fabric.link_dst],
        "capacity_gbps": capacity_Bps * 8 / 1e9,
        "latency_us": fabric.latency_s * 1e6,
        "bytes": link_bytes,
        "busy_s": busy_s,
        "peak_util": peak_util,
        "mean_util": mean_util,
    })


def network_links(network: object, horizon_s: float) -> pd.DataFrame:
    """The link table of a network backend after a run: the flow backend measures busy time and peak
    utilization; the analytical one reports busy time as bytes / capacity and no peak (NaN)."""
    fabric = network.fabric  # type: ignore[attr-defined]
    link_bytes = network.link_bytes()  # type: ignore[attr-defined]
    core = getattr(network, "core", None)
    if core is not None:
        busy_s, peak = core.link_busy_s, core.link_peak_util
    else:
        busy_s, peak = link_bytes / fabric.capacity_Bps, np.full(fabric.n_links, np.nan)
    return link_table(fabric, link_bytes, busy_s, peak, horizon_s)


def _union_s(start: np.ndarray, end: np.ndarray) -> list[tuple[float, float]]:
    """Disjoint intervals covering the given ones (sorted)."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(zip(start.tolist(), end.tolist(), strict=True)):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        elif b > a:
            out.append((a, b))
    return out


def _overlap_s(one: list[tuple[float, float]], other: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(b, d) - max(a, c)) for a, b in one for c, d in other)


def step_summary(trace: pd.DataFrame, graph: StepGraph, makespan_s: float) -> dict:
    """Per-step figures of a trace (divided by the graph's step count): time, bytes, compute, exposure.

    ``exposed_comm_s`` is the time the critical worker (the one ending last) spends with its compute
    stream idle; ``overlap_s`` the time it communicates while computing.
    """
    steps = graph.steps
    comm = trace[trace.kind != "compute"]
    on_workers = trace[trace["rank"].isin(graph.workers)]
    traffic = (on_workers.bytes_sent + on_workers.bytes_received).groupby(on_workers["rank"]).sum()
    traffic = traffic.reindex(graph.workers, fill_value=0.0) / steps
    by_category = comm.groupby("category", observed=True).bytes_sent.sum() / steps
    ends = on_workers.groupby("rank").end_s.max()
    critical = int(ends.idxmax())
    mine = on_workers[on_workers["rank"] == critical]
    busy = mine[mine.kind == "compute"]
    talk = mine[mine.kind != "compute"]
    compute_union = _union_s(busy.start_s.to_numpy(), busy.end_s.to_numpy())
    compute_s = sum(b - a for a, b in compute_union)
    return {
        "step_time_s": makespan_s / steps,
        "bytes_on_wire": float(comm.bytes_sent.sum()) / steps,
        "bytes_per_worker": {"max": float(traffic.max()), "mean": float(traffic.mean())},
        "bytes_by_category": {str(k): float(v) for k, v in by_category.items() if v > 0},
        "compute_s": compute_s / steps,
        "exposed_comm_s": (float(ends.max()) - compute_s) / steps,
        "overlap_s": _overlap_s(compute_union, _union_s(talk.start_s.to_numpy(), talk.end_s.to_numpy())) / steps,
        "critical_worker": critical,
    }
