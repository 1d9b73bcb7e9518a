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


def step_summary(rows: dict[str, np.ndarray], graph: StepGraph, makespan_s: float) -> dict:
    """Per-step figures of a run's (op, rank) rows (see ``EngineResult``), divided by the graph's step count.

    ``bytes_on_wire`` counts bytes sent by every rank; ``bytes_per_worker`` a worker's bytes sent plus
    received. ``exposed_comm_s`` is the time the critical worker (the one ending last) spends with its
    compute stream idle; ``overlap_s`` the time it communicates while computing.
    """
    steps, n_ranks = graph.steps, graph.n_ranks
    op, rank, start, end = rows["op"], rows["rank"], rows["start_s"], rows["end_s"]
    sent = rows["bytes_sent"]
    categories = sorted({o.category for o in graph.ops if o.kind != "compute"})
    category_of = np.array([categories.index(o.category) if o.kind != "compute" else -1 for o in graph.ops],
                           dtype=np.int64)[op]
    comm = category_of >= 0
    by_category = np.bincount(category_of[comm], weights=sent[comm], minlength=len(categories)) / steps
    traffic = np.bincount(rank, weights=sent + rows["bytes_received"], minlength=n_ranks)[graph.workers] / steps
    ends = np.full(n_ranks, -np.inf)
    np.maximum.at(ends, rank, end)
    critical = int(graph.workers[np.argmax(ends[graph.workers])])
    mine = rank == critical
    busy = _union_s(start[mine & ~comm], end[mine & ~comm])
    compute_s = sum(b - a for a, b in busy)
    return {
        "step_time_s": makespan_s / steps,
        "bytes_on_wire": float(sent[comm].sum()) / steps,
        "bytes_per_worker": {"max": float(traffic.max()), "mean": float(traffic.mean())},
        "bytes_by_category": {c: float(v) for c, v in zip(categories, by_category, strict=True) if v > 0},
        "compute_s": compute_s / steps,
        "exposed_comm_s": (float(ends[critical]) - compute_s) / steps,
        "overlap_s": _overlap_s(busy, _union_s(start[mine & comm], end[mine & comm])) / steps,
        "critical_worker": critical,
    }
