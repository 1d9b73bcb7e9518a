"""Result tables (pandas): the per-link table and a training step's summary (docs/ARCHITECTURE.md, "The result
contract")."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from simulator.core.stepgraph import StepGraph
from simulator.errors import SpecError
from simulator.network.fabric import Fabric
from simulator.network.result import Network


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


def network_links(network: Network, horizon_s: float) -> pd.DataFrame:
    """The link table of a network backend after a run (``Network.link_stats``: the flow backend measures
    busy time and peak utilization; the analytical one reports busy time as bytes / capacity, no peak)."""
    busy_s, peak = network.link_stats()
    return link_table(network.fabric, network.link_bytes(), busy_s, peak, horizon_s)


def write_table(frame: pd.DataFrame, path: str | Path, field: str = "out") -> None:
    """Write ``frame`` to ``path`` (``.parquet``, or ``.csv``) atomically: into ``<path>.partial``, then renamed
    into place, so a crash never leaves half a table. A SpecError naming ``field`` for another suffix."""
    path = Path(path)
    if path.suffix not in (".parquet", ".csv"):
        raise SpecError(field, str(path), "must end in .csv or .parquet")
    partial = path.with_name(path.name + ".partial")
    if path.suffix == ".parquet":
        frame.to_parquet(partial, index=False)
    else:
        frame.to_csv(partial, index=False)
    partial.replace(path)


def node_tier(name: str) -> str:
    """A node's tier for grouping links: its name without digits (``leaf3`` -> ``leaf``, ``n0/nvswitch`` ->
    ``nvswitch``, ``h12`` -> ``h``)."""
    return re.sub(r"\d+", "", name.rsplit("/", 1)[-1]) or name


def link_timeline(fabric: Fabric, segments: dict[str, np.ndarray], horizon_s: float, bins: int = 100) -> pd.DataFrame:
    """Utilization of every link that carried traffic, over ``bins`` equal time bins of [0, ``horizon_s``].

    ``segments``: what each link carried, as constant-rate pieces (``FluidCore.link_segments``). One row per
    (link, bin): link index, src, dst, ``tier`` (``leaf->spine``), capacity, bin start and end (s), bytes in
    the bin and utilization (bytes / (capacity x bin width)).
    """
    if bins < 1 or not horizon_s > 0:
        raise ValueError("bins must be >= 1 and the horizon > 0 s")
    edges = np.linspace(0.0, horizon_s, bins + 1)
    link = np.concatenate([segments["link"], segments["link"]]).astype(np.int64)
    # per link, the bytes carried up to t are piecewise linear in t: interpolate them at the bin edges
    times = np.concatenate([segments["t0"], segments["t1"]])
    deltas = np.concatenate([segments["rate"], -segments["rate"]])
    order = np.lexsort((times, link))
    link_sorted, times, deltas = link[order], times[order], deltas[order]
    names, capacity, width = fabric.node_names, fabric.capacity_Bps, np.diff(edges)
    rows = []
    for lk, first in zip(*np.unique(link_sorted, return_index=True), strict=True):
        last = np.searchsorted(link_sorted, lk, side="right")
        t, rate_after = times[first:last], np.cumsum(deltas[first:last])
        carried = np.concatenate([[0.0], np.cumsum(rate_after[:-1] * np.diff(t))])
        in_bin = np.diff(np.interp(edges, t, carried, left=0.0, right=carried[-1]))
        src, dst = names[fabric.link_src[lk]], names[fabric.link_dst[lk]]
        rows.append(pd.DataFrame({"link": lk, "src": src, "dst": dst, "tier": f"{node_tier(src)}->{node_tier(dst)}",
                                  "capacity_gbps": capacity[lk] * 8 / 1e9, "t_start_s": edges[:-1],
                                  "t_end_s": edges[1:], "bytes": in_bin, "util": in_bin / (capacity[lk] * width)}))
    columns = ["link", "src", "dst", "tier", "capacity_gbps", "t_start_s", "t_end_s", "bytes", "util"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)


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


class Spread(BaseModel):
    """Over the workers: the least, the mean and the greatest."""

    min: float
    mean: float
    max: float


class WorkerBytes(BaseModel):
    """Bytes a worker sends plus receives per step: the busiest worker's and the mean."""

    max: float
    mean: float


class MemoryUse(BaseModel):
    """A device role's memory (``worker``, ``server``): total ``bytes``, ``parts`` (component -> bytes), the
    ``device`` it must fit and whether it does (``reason`` says why not)."""

    bytes: float
    parts: dict[str, float]
    device: str
    fits: bool
    reason: str


class StepSummary(BaseModel):
    """One training step's figures (per step, over the run's steps), as ``dessim run --json`` prints them
    (``document()``); each field's description (``descriptions()``) says what it means and in what unit, as
    docs/ARCHITECTURE.md's "The result contract" does. Units are in the names: ``_s`` seconds, bytes for every
    ``bytes`` field, ``samples_per_s`` samples per second."""

    model_config = ConfigDict(extra="forbid")
    strategy: str = Field(description="the strategy that ran")
    workload: str = Field(description="the workload as given (preset, file or builder string)")
    model: str = Field(description="the workload's model family")
    topology: str = Field(description="the canonical string that rebuilds the topology (or its file)")
    faults: str = Field(description="the link faults applied, '; '-joined (empty: none)")
    fidelity: str = Field(description="the fidelity the step ran at: flow or analytical")
    fidelity_reason: str = Field("requested", description="why: requested, or what --fidelity auto estimated")
    analytical_difference: float | None = Field(
        None, description="fraction: auto, when flow level was cheap: (analytical - flow) / flow step time")
    network_model: str = Field(description="how flows shared links: maxmin, cm02 or lv08")
    workers: int = Field(description="ranks that train")
    servers: int = Field(description="PS servers (0 for other strategies)")
    batch_per_worker: int = Field(description="samples per worker per step")
    precision: str = Field(description="the GEMMs' dtype")
    steps: int = Field(description="steps simulated; every figure is per step")
    step_time_s: float = Field(description="s: wall-clock time of one step of the whole job (the makespan / steps)")
    bytes_on_wire: float = Field(description="bytes per step sent by every rank (workers and servers), each message "
                                             "counted once, at its sender, not once per link it crosses (the link "
                                             "table's bytes count every hop: compare's bytes_on_links)")
    bytes_per_worker: WorkerBytes = Field(description="bytes per step a worker's host sends plus receives (a "
                                                      "co-located server's traffic included): max, the busiest "
                                                      "worker's; mean, over workers")
    bytes_by_category: dict[str, float] = Field(description="bytes per step sent, per op category")
    compute_s: float = Field(description="s per step: the critical worker's time computing")
    exposed_comm_s: float = Field(description="s per step: the critical worker's time with its compute stream idle")
    overlap_s: float = Field(description="s per step: the critical worker's time communicating while computing")
    critical_worker: int = Field(description="host index of the worker that ends last")
    worker_step_time_s: Spread = Field(description="s: each worker's own time per step (min, mean, max over workers)")
    worker_samples_per_s: float = Field(description="samples/s: all workers together at their own paces")
    staleness_mean: float = Field(description="updates (each one other worker's step, applied) between a gradient's "
                                              "read and its apply, mean over gradients (PS async/ssp; 0 when "
                                              "synchronous)")
    staleness_max: float = Field(description="updates: the most between a gradient's read and its apply")
    clock_gap_max: float = Field(description="steps a read runs ahead of the slowest worker, the most (SSP bounds "
                                             "it)")
    memory_per_device_bytes: dict[str, float] = Field(description="bytes per device of each role (worker, server)")
    fits_memory: bool = Field(description="every role fits its device's memory")
    memory: dict[str, MemoryUse] = Field(description="per role: bytes, parts (component: bytes), device, fits, reason")
    wall_s: float = Field(description="s: the simulator's own run time (not simulated time)")
    samples_per_s: float = Field(description="samples/s: every worker's batch per step of the whole job")
    stragglers: str = Field("", description="the straggler specs applied, '; '-joined")
    rank_devices: str = Field("", description="the mixed-device specs applied, '; '-joined")
    des_partial: str | None = Field(None, description="DES: what owners summed (fields or first-layer)")
    partial_width: int | None = Field(None, description="DES: values summed per sample")

    @classmethod
    def descriptions(cls) -> dict[str, str]:
        """Each figure's name and what it means, with its unit."""
        return {name: field.description or "" for name, field in cls.model_fields.items()}

    def document(self) -> dict[str, Any]:
        """The summary as ``--json`` prints it (DES's two fields only for DES)."""
        return self.model_dump(exclude_none=True)

    def __getitem__(self, key: str) -> Any:
        """Read a figure as the JSON document has it (``summary["bytes_per_worker"]["max"]``)."""
        if key not in type(self).model_fields or getattr(self, key) is None:
            raise KeyError(key)
        value = getattr(self, key)
        return self.document()[key] if isinstance(value, BaseModel | dict) else value

    def __contains__(self, key: str) -> bool:
        return key in type(self).model_fields and getattr(self, key) is not None


def step_summary(rows: dict[str, np.ndarray], graph: StepGraph, makespan_s: float, batch_per_worker: float = 1.0,
                 ) -> dict:
    """Per-step figures of a run's (op, rank) rows (see ``EngineResult``), divided by the graph's step count.

    ``bytes_on_wire`` counts bytes sent by every rank; ``bytes_per_worker`` a worker's bytes sent plus
    received. ``exposed_comm_s`` is the time the critical worker (the one ending last) spends with its
    compute stream idle; ``overlap_s`` the time it communicates while computing. ``worker_step_time_s``
    is each worker's own time per step (min, mean, max over workers) and ``worker_samples_per_s`` the sum of
    their paces (samples/s): the aggregate rate of asynchronous training, where fast workers need not wait
    for slow ones (for synchronous training, close to ``samples_per_s``).
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
    t0 = float(start.min()) if len(start) else 0.0
    own = np.maximum(_own_ends(rows, graph)[graph.workers] - t0, 1e-300) / steps  # each worker's time per step
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
        "worker_step_time_s": {"min": float(own.min()), "mean": float(own.mean()), "max": float(own.max())},
        "worker_samples_per_s": float((batch_per_worker / own).sum()),
        **staleness(rows, graph),
    }


def _own_ends(rows: dict[str, np.ndarray], graph: StepGraph) -> np.ndarray:
    """Per rank, when its own work ended: a PS server's ops (``Op.role`` ``server``) and ops of other workers'
    request streams (``Op.worker``, async PS) do not count, so a co-located server's work for a slow worker
    does not stretch a fast worker's pace."""
    server = np.array([o.role == "server" for o in graph.ops], dtype=bool)
    worker = np.array([-1 if o.worker is None else o.worker for o in graph.ops], dtype=np.int64)
    owner = np.where(worker >= 0, graph.workers[np.maximum(worker, 0)], -1)  # the request stream's worker's host
    op, rank = rows["op"], rows["rank"]
    mine = ~server[op] & ((owner[op] < 0) | (owner[op] == rank))
    ends = np.full(graph.n_ranks, -np.inf)
    np.maximum.at(ends, rank[mine], rows["end_s"][mine])
    return ends


def staleness(rows: dict[str, np.ndarray], graph: StepGraph) -> dict[str, float]:
    """Staleness of the gradients applied by per-worker PS streams (``ps`` async or ssp), in two units.

    A worker's step-k gradient is computed on rows its servers read (``server.lookup`` ends) and applied
    when its ``server.update`` ends on the last server.
    - ``staleness_mean`` / ``staleness_max``: updates by other workers applied in between (Zhang et al.
      2016's tau). Under SSP with bound s it is at most (n - 1)(2s + 1) for n workers: another worker may
      apply its steps k - s to k + s meanwhile; it is not bounded by s.
    - ``clock_gap_max``: steps (of the same worker) by which a read runs ahead of the slowest worker, k minus
      the fewest steps any worker has applied when the read ends: what SSP's bound s limits (by
      construction: a step-k read waits for every worker's step k - 1 - s), and 0 under BSP.
    Synchronous strategies apply one merged update per step after every read of that step: both are 0.
    """
    op, end = rows["op"], rows["end_s"]
    last_end = np.full(len(graph.ops), -np.inf)
    np.maximum.at(last_end, op, end)
    read: dict[tuple[int, int], float] = {}
    applied: dict[tuple[int, int], float] = {}
    for o in graph.ops:
        if o.name in ("server.lookup", "server.update") and o.worker is not None:  # a worker's own request
            (read if o.name == "server.lookup" else applied)[(o.worker, o.step)] = float(last_end[o.index])
    keys = [k for k in applied if k in read]
    if not keys:
        return {"staleness_mean": 0.0, "staleness_max": 0.0, "clock_gap_max": 0.0}
    times = np.sort([applied[k] for k in keys])
    tau = np.array([np.searchsorted(times, applied[k], side="left") - np.searchsorted(times, read[k], side="right")
                    for k in keys])
    # step j is applied by every worker once the slowest has made j + 1 applies: a read at t runs
    # k - (number of steps applied by all at t) steps ahead
    workers = sorted({w for w, _ in applied})
    row = {w: i for i, w in enumerate(workers)}
    by_worker = np.full((len(workers), max(k for _, k in applied) + 1), np.inf)
    for (w, k), t in applied.items():
        by_worker[row[w], k] = t
    all_applied = np.sort(by_worker, axis=1).max(axis=0)
    read_steps = np.array([k for _, k in read])
    read_s = np.array(list(read.values()))
    gap = int((read_steps - np.searchsorted(all_applied, read_s, side="right")).max())
    return {"staleness_mean": float(tau.mean()), "staleness_max": float(tau.max()), "clock_gap_max": float(gap)}


def flat_summary(summary: StepSummary | dict) -> dict:
    """The summary's scalars (a StepSummary, or its JSON document), with ``bytes_per_worker`` and memory
    flattened to ``*_max``/``*_mean``/per role."""
    summary = summary.document() if isinstance(summary, StepSummary) else summary
    flat = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    flat["bytes_per_worker_max"] = summary["bytes_per_worker"]["max"]
    flat["bytes_per_worker_mean"] = summary["bytes_per_worker"]["mean"]
    for stat, value in summary.get("worker_step_time_s", {}).items():
        flat[f"worker_step_time_s_{stat}"] = value
    for role, used in summary["memory_per_device_bytes"].items():
        flat[f"memory_{role}_bytes"] = used
    return flat


def markdown(frame: pd.DataFrame) -> str:
    """``frame`` as a Markdown pipe table (pandas' ``to_markdown`` needs the tabulate package): floats to 4
    significant digits, NaN as ``-`` (not run), anything else as ``str`` with its pipes escaped; no trailing
    newline."""
    def cell(value: object) -> str:
        if isinstance(value, float):
            return "-" if value != value else f"{value:.4g}"
        return str(value).replace("|", "\\|")
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    return "\n".join([head, rule, *("| " + " | ".join(map(cell, row)) + " |" for row in frame.itertuples(index=False))])

