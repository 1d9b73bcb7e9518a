"""Plotly figures of simulation results: plain functions from result tables (pandas) to ``go.Figure``.

- ``timeline``: per-rank Gantt of compute and communication ops, coloured by category;
- ``link_heatmap``: each link's utilization over time (``StepReport.link_timeline``), grouped by tier;
- ``traffic_by_category``: bytes on the wire per strategy, stacked by category;
- ``step_breakdown``: step time per strategy as compute, compute overlapped with communication, and
  exposed communication;
- ``scaling``: step time, samples/s and bytes per worker against workers, one line per strategy, with
  the crossover of two strategies marked;
- ``sensitivity``: several metrics against one what-if input (a straggler's slowdown, a link's
  bandwidth kept), one line per variant;
- ``topology``: a drawing of a small cluster, nodes placed by tier.

Times are shown in ms, bytes in MB; every figure has titled axes with units and a legend.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import networkx as nx
import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from simulator.results.tables import StepSummary, node_tier

PALETTE = px.colors.qualitative.Plotly + px.colors.qualitative.Dark24
DASHES = ("solid", "dash", "dot", "dashdot", "longdash")
MAX_TIMELINE_RANKS = 64
MAX_TOPOLOGY_NODES = 512


def category_colors(categories: Iterable[str]) -> dict[str, str]:
    """A stable colour per category (sorted), shared by every figure of a report."""
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(sorted(set(categories)))}


def timeline(trace: pd.DataFrame, title: str = "Per-rank timeline", ranks: Sequence[int] | None = None,
             colors: dict[str, str] | None = None) -> go.Figure:
    """Gantt of a trace (``StepReport.trace``): one row per (rank, stream), one bar per op coloured by
    category (``colors``; grey for a category it lacks); hover shows the op, its duration and bytes.
    ``ranks``: which ranks (default: the first ``MAX_TIMELINE_RANKS``)."""
    shown = sorted(trace["rank"].unique())[:MAX_TIMELINE_RANKS] if ranks is None else list(ranks)
    rows = trace[trace["rank"].isin(shown)].copy()
    rows["lane"] = "rank " + rows["rank"].astype(str) + " · " + rows["stream"].astype(str)
    rows["start_ms"], rows["duration_ms"] = rows.start_s * 1e3, (rows.end_s - rows.start_s) * 1e3
    colors = colors or category_colors(rows.category.astype(str))
    lanes = sorted(rows.lane.unique(), key=lambda lane: (int(lane.split()[1]), lane))
    fig = go.Figure()
    for category, group in rows.groupby("category", observed=True):
        fig.add_trace(go.Bar(
            y=group.lane, x=group.duration_ms, base=group.start_ms, orientation="h", name=str(category),
            marker_color=colors.get(str(category), "#999999"),
            customdata=np.column_stack([group.op.astype(str), group.bytes_sent / 1e6, group.bytes_received / 1e6]),
            hovertemplate="%{customdata[0]}<br>start %{base:.4f} ms, %{x:.4f} ms<br>sent %{customdata[1]:.3f} MB, "
                          "received %{customdata[2]:.3f} MB<extra>%{fullData.name}</extra>"))
    fig.update_layout(title=title, barmode="overlay", xaxis_title="time (ms)", legend_title="category",
                      height=max(300, 22 * len(lanes) + 120))
    fig.update_yaxes(categoryorder="array", categoryarray=lanes[::-1], title="rank · stream")
    return fig


def link_heatmap(link_timeline: pd.DataFrame, title: str = "Link utilization over time") -> go.Figure:
    """Utilization of every used link per time bin (``StepReport.link_timeline``), one panel per tier
    (``h->leaf``, ``leaf->spine``, ...), links labelled with their capacity; 1.0 = the link is full."""
    tiers = sorted(link_timeline.tier.unique())
    counts = [link_timeline[link_timeline.tier == t].link.nunique() for t in tiers]
    fig = make_subplots(rows=len(tiers), cols=1, shared_xaxes=True, subplot_titles=tiers, vertical_spacing=0.04,
                        row_heights=counts)
    for row, tier in enumerate(tiers, start=1):
        part = link_timeline[link_timeline.tier == tier].copy()
        part["label"] = part.src + "→" + part.dst + " (" + part.capacity_gbps.map("{:g}G".format) + ")"
        grid = part.pivot_table(index="label", columns="t_start_s", values="util")
        grid = grid.loc[sorted(grid.index, key=_natural, reverse=True)]  # h0 at the top, h10 after h9
        fig.add_trace(go.Heatmap(
            z=grid.to_numpy(), x=grid.columns.to_numpy() * 1e3, y=grid.index, zmin=0, zmax=1,
            colorscale="Inferno", colorbar={"title": "utilization"}, showscale=row == 1,
            hovertemplate="%{y}<br>t = %{x:.4f} ms<br>utilization %{z:.2f}<extra></extra>"), row=row, col=1)
    fig.update_layout(title=title, height=max(400, 14 * sum(counts) + 60 * len(tiers) + 120))
    fig.update_xaxes(title_text="time (ms)", row=len(tiers), col=1)
    return fig


def traffic_by_category(summaries: Sequence[StepSummary | dict], title: str = "Bytes on the wire per step, by category",
                        colors: dict[str, str] | None = None) -> go.Figure:
    """Stacked bars: per strategy (a step summary each), the bytes every rank sent, by category (MB)."""
    rows = pd.DataFrame([{"strategy": s["strategy"], "category": c, "MB": v / 1e6}
                         for s in summaries for c, v in s["bytes_by_category"].items()],
                        columns=["strategy", "category", "MB"])
    fig = px.bar(rows, x="strategy", y="MB", color="category", title=title,
                 color_discrete_map=colors or category_colors(rows.category),
                 category_orders={"strategy": [s["strategy"] for s in summaries]})
    fig.update_layout(yaxis_title="MB sent per step (all ranks)", legend_title="category", barmode="stack")
    return fig


def step_breakdown(summaries: Sequence[StepSummary | dict],
                   title: str = "Step time breakdown (critical worker)") -> go.Figure:
    """Stacked bars per strategy: compute alone, compute overlapped with communication, and exposed
    communication (the compute stream idle); they add up to the step time (ms)."""
    parts = {"compute": [], "compute overlapped with comm": [], "exposed communication": []}
    for s in summaries:
        overlap = min(s["overlap_s"], s["compute_s"])
        parts["compute"].append((s["compute_s"] - overlap) * 1e3)
        parts["compute overlapped with comm"].append(overlap * 1e3)
        parts["exposed communication"].append(s["exposed_comm_s"] * 1e3)
    names = [s["strategy"] for s in summaries]
    fig = go.Figure([go.Bar(x=names, y=values, name=part, marker_color=color,
                            hovertemplate="%{x}: %{y:.4f} ms<extra>" + part + "</extra>")
                     for (part, values), color in zip(parts.items(), ("#4C78A8", "#72B7B2", "#E45756"), strict=True)])
    fig.update_layout(title=title, barmode="stack", yaxis_title="time per step (ms)", xaxis_title="strategy",
                      legend_title="part")
    return fig


SCALING_METRICS = {"step_time_s": ("step time (ms)", 1e3), "samples_per_s": ("samples/s", 1.0),
                   "bytes_per_worker_max": ("MB per worker per step", 1e-6)}


def crossover(frame: pd.DataFrame, first: str, second: str, x: str = "workers",
              metric: str = "step_time_s") -> tuple[float, str, str] | None:
    """Where the faster (lower ``metric``) of two strategies changes as ``x`` grows: (x at which the
    log-ratio of their metrics crosses 0, interpolated on log x; the faster one before; the faster one
    after), or None if one is faster everywhere in the data."""
    a = frame[frame.strategy == first].set_index(x)[metric]
    b = frame[frame.strategy == second].set_index(x)[metric]
    xs = sorted(set(a.index) & set(b.index))
    ratio = [math.log(b[v] / a[v]) for v in xs]
    for i in range(len(xs) - 1):
        (x0, r0), (x1, r1) = (xs[i], ratio[i]), (xs[i + 1], ratio[i + 1])
        if r0 * r1 < 0 or (r1 == 0 and r0 != 0):
            lx0, lx1 = math.log(x0), math.log(x1)
            at = math.exp(lx0 + (lx1 - lx0) * r0 / (r0 - r1))
            return (at, second, first) if r0 < 0 else (at, first, second)
    return None


def scaling(frame: pd.DataFrame, x: str = "workers", marked: tuple[str, str] | None = ("ps", "des"),
            title: str = "Scaling with the number of workers") -> go.Figure:
    """Step time, samples/s and bytes per worker (``flat_summary`` columns) against ``x`` (log scales), one
    line per strategy; a dashed line where the faster of the ``marked`` pair changes (``crossover``).
    Several rows of one (strategy, x), as a sweep over other inputs gives, are drawn as their median;
    rows without a step time (invalid runs) are left out. Rows with only the mean bytes per worker (the
    closed form's) show that instead of the max."""
    metrics = dict(SCALING_METRICS)
    if "bytes_per_worker_max" not in frame or frame.bytes_per_worker_max.isna().all():
        del metrics["bytes_per_worker_max"]
        metrics["bytes_per_worker_mean"] = ("MB per worker per step (mean)", 1e-6)
    frame = (frame.dropna(subset=["step_time_s"]).groupby(["strategy", x], as_index=False, sort=False)
             [list(metrics)].median())
    fig = make_subplots(rows=1, cols=len(metrics), horizontal_spacing=0.09)
    colors = category_colors(frame.strategy)
    values = sorted(frame[x].unique())
    for col, (metric, (label, scale)) in enumerate(metrics.items(), start=1):
        for strategy, group in frame.sort_values(x).groupby("strategy", sort=False):
            fig.add_trace(go.Scatter(x=group[x], y=group[metric] * scale, name=strategy, mode="lines+markers",
                                     line_color=colors[strategy], legendgroup=strategy, showlegend=col == 1,
                                     hovertemplate=f"{strategy}: %{{y:.4g}} at {x} = %{{x}}<extra></extra>"),
                          row=1, col=col)
        fig.update_xaxes(type="log", title_text=x, tickvals=values, row=1, col=col)
        fig.update_yaxes(type="log", title_text=label, dtick="D2", row=1, col=col)
    found = crossover(frame, *marked, x=x) if marked and set(marked) <= set(frame.strategy) else None
    if found is not None:
        at, before, after = found
        for col in range(1, len(metrics) + 1):
            fig.add_vline(x=at, line_dash="dash", line_color="gray", row=1, col=col)
        fig.add_annotation(x=0.5, y=1.02, xref="paper", yref="paper", showarrow=False, yanchor="bottom",
                           text=f"crossover at {x} ≈ {at:.3g}: {before} is faster below, {after} above")
    fig.update_layout(title=title, legend_title="strategy", height=460, margin={"t": 110})
    return fig


def sensitivity(frame: pd.DataFrame, x: str, metrics: dict[str, tuple[str, float]], color: str = "variant",
                title: str = "Sensitivity", x_title: str | None = None, dash: str | None = None) -> go.Figure:
    """One panel per metric (column -> (axis label with unit, scale applied to the values)) against ``x``,
    one line per value of ``color`` (and of ``dash``, drawn dashed differently); linear axes, as what-if
    inputs are small ranges."""
    fig = make_subplots(rows=1, cols=len(metrics), horizontal_spacing=0.08)
    colors = category_colors(frame[color])
    styles = dict(zip(frame[dash].unique(), DASHES, strict=False)) if dash else {}
    keys = [color, dash] if dash else [color]
    for col, (metric, (label, scale)) in enumerate(metrics.items(), start=1):
        for key, group in frame.sort_values(x).groupby(keys, sort=False):
            name = ", ".join(map(str, key))
            fig.add_trace(go.Scatter(x=group[x], y=group[metric] * scale, name=name, mode="lines+markers",
                                     line={"color": colors[key[0]], "dash": styles.get(key[-1], "solid")},
                                     legendgroup=name, showlegend=col == 1,
                                     hovertemplate=f"{name}: %{{y:.4g}} at {x} = %{{x}}<extra></extra>"),
                          row=1, col=col)
        fig.update_xaxes(title_text=x_title or x, row=1, col=col)
        fig.update_yaxes(title_text=label, rangemode="tozero", row=1, col=col)
    fig.update_layout(title=title, legend_title=color, height=420)
    return fig


def topology(graph: nx.Graph, title: str = "Topology") -> go.Figure:
    """A small cluster drawn by tier (hosts at the bottom, each switch tier above); edge hover shows the
    link rate. Refuses graphs over ``MAX_TOPOLOGY_NODES`` nodes (unreadable)."""
    if graph.number_of_nodes() > MAX_TOPOLOGY_NODES:
        raise ValueError(f"topology drawing: {graph.number_of_nodes()} nodes; allowed: <= {MAX_TOPOLOGY_NODES}")
    tier = {n: "host" if graph.nodes[n].get("kind") == "host" else node_tier(str(n)) for n in graph.nodes}
    distance = nx.multi_source_dijkstra_path_length(graph, set(_hosts(graph)))  # hops to the nearest host
    nearest = {t: min(distance.get(n, math.inf) for n in graph.nodes if tier[n] == t) for t in set(tier.values())}
    levels = {t: i for i, t in enumerate(sorted(nearest, key=lambda t: (nearest[t], t)))}
    position = {}
    for t, level in levels.items():
        members = [n for n in graph.nodes if tier[n] == t]
        for i, n in enumerate(members):
            position[n] = ((i + 0.5) / len(members), level)
    edge_x, edge_y = [], []
    for a, b in graph.edges:
        edge_x += [position[a][0], position[b][0], None]
        edge_y += [position[a][1], position[b][1], None]
    fig = go.Figure(go.Scatter(x=edge_x, y=edge_y, mode="lines", line={"color": "#bbb", "width": 1},
                               hoverinfo="skip", showlegend=False))
    colors = category_colors(levels)
    for t in levels:
        members = [n for n in graph.nodes if tier[n] == t]
        rates = [", ".join(sorted({f"{d.get('link_gbps', '?'):g} Gb/s" for _, _, d in graph.edges(n, data=True)}))
                 for n in members]
        fig.add_trace(go.Scatter(x=[position[n][0] for n in members], y=[position[n][1] for n in members],
                                 mode="markers", name=f"{t} ({len(members)})", marker={"size": 9, "color": colors[t]},
                                 text=[f"{n}: {r}" for n, r in zip(members, rates, strict=True)],
                                 hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(title=title, legend_title="tier", xaxis={"visible": False},
                      yaxis={"tickvals": list(levels.values()), "ticktext": list(levels), "title": "tier"})
    return fig


def _natural(text: str) -> list:
    """Sort key that orders embedded numbers by value: ``h2`` before ``h10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _hosts(graph: nx.Graph) -> list:
    return [n for n in graph.nodes if graph.nodes[n].get("kind") == "host"]
