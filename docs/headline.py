"""The README's headline figure, when DES beats PS and when it loses: docs/img/ps_vs_des.png (and .svg).

Every point is a closed-form sweep point (``simulator.run.sweep.sweep`` with ``closed_form: true``, as
``dessim sweep`` runs it): analytical fidelity, H100 workers, PS servers co-located (one per worker), each
preset's batch per worker, uniform IDs. N workers sit on the main job's leaf-spine (``leafspine16``: 4 hosts
of 100G per leaf, 2 spines, 200G uplinks, non-blocking) grown to N/4 leaves, so 16 workers run the main job.

- left: PS's step time over DES's against N for four workloads, each crossover marked;
- right: the N below which DES is faster, against the IDs per field (hotness), for each Criteo preset,
  DES all-gathering the IDs (its default ``--des-input gathered``).

tests/test_readme_figure.py reruns the numbers the README's caption states.

    .venv/bin/python docs/headline.py     # about 30 s; the PNG needs the images extra and a Chromium
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from simulator.results import plots
from simulator.run.sweep import sweep

HERE = Path(__file__).parent
WIDTH, HEIGHT = 1500, 560  # px
WORKERS = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
HOTNESS = (1, 2, 4, 8, 16, 32, 64)
PRESETS = ("dlrm-criteo-tb", "dcn-criteo", "dnn-criteo", "deepfm-criteo", "widedeep-criteo", "fm-criteo",
           "lr-criteo")
MAIN = "dlrm-criteo-tb"  # the main job's workload (``dessim compare``)
#: The left panel's workloads: label (as ``dessim compare`` options) -> sweep keys.
CASES: dict[str, dict[str, Any]] = {
    MAIN: {"workload": MAIN},
    "fm-criteo": {"workload": "fm-criteo"},
    "dcn-criteo --set hotness=32": {"workload": "dcn-criteo", "workload.hotness": 32},
    "lr-criteo --des-input replicated": {"workload": "lr-criteo", "des_input": "replicated"},
}


def topology(workers: int) -> str:
    """The main job's leaf-spine with ``workers`` / 4 leaves of 4 hosts (below 4: one leaf of ``workers``)."""
    if workers > 4 and workers % 4:
        raise ValueError(f"workers: got {workers}; allowed: 1 to 4, or a multiple of 4 (whole leaves)")
    return (f"leafspine:leaves={max(1, workers // 4)},hosts_per_leaf={min(4, workers)},spines=2,host_gbps=100,"
            "uplink_gbps=200,latency_us=1")


def ratios(keys: dict[str, Any], workers: Sequence[int] = WORKERS,
           grid: dict[str, Sequence[Any]] | None = None) -> pd.DataFrame:
    """PS's step time over DES's (``ps_over_des``: > 1 where DES is faster) at each worker count of
    ``workers``, for the sweep keys ``keys`` (and every point of ``grid``), with both step times (s) and DES's
    partial width (values per sample)."""
    spec = {"base": {"fidelity": "analytical", **keys}, "closed_form": True,
            "grid": {"topology": [topology(n) for n in workers], "strategy": ["ps", "des"], **(grid or {})}}
    table = sweep(spec, jobs=1)
    failed = table[(table.error != "") | (table.evaluation != "closed form")]
    if len(failed):
        raise ValueError(f"{len(failed)} points did not run in closed form: {failed.error.iloc[0]}")
    axes = ["workers", *(grid or {})]
    ps, des = (table[table.strategy == s].set_index(axes) for s in ("ps", "des"))
    return pd.DataFrame({"ps_over_des": ps.step_time_s / des.step_time_s, "step_time_s_ps": ps.step_time_s,
                         "step_time_s_des": des.step_time_s, "partial_width": des.partial_width}).reset_index()


def crossover(frame: pd.DataFrame) -> float | None:
    """The worker count below which DES is faster (``plots.crossover`` of a ``ratios`` frame, interpolated on
    log N), or None where one strategy is faster at every count of the frame."""
    steps = pd.concat([frame.assign(strategy="ps", step_time_s=frame.step_time_s_ps),
                       frame.assign(strategy="des", step_time_s=frame.step_time_s_des)])
    found = plots.crossover(steps, "ps", "des")
    if found and found[1] != "des":
        raise ValueError(f"PS is faster below {found[0]:.3g} workers and DES above: not a crossover this figure draws")
    return found[0] if found else None


def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The left panel's ``ratios`` (``case`` added) and the right panel's crossovers (``workload``, ``hotness``,
    ``crossover``: None where PS is faster from 2 workers on)."""
    cases = pd.concat([ratios(keys).assign(case=label) for label, keys in CASES.items()], ignore_index=True)
    by_hotness = ratios({}, grid={"workload": PRESETS, "workload.hotness": HOTNESS})
    crossovers = pd.DataFrame([{"workload": w, "hotness": h, "crossover": crossover(g)}
                               for (w, h), g in by_hotness.groupby(["workload", "workload.hotness"], sort=False)])
    return cases, crossovers


def figure(cases: pd.DataFrame, crossovers: pd.DataFrame) -> go.Figure:
    """The headline figure from ``data()``."""
    colors = plots.category_colors(PRESETS)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        "PS step time / DES step time (above 1: DES faster)",
        "DES is faster below this many workers (IDs all-gathered)"))
    for label, group in cases.groupby("case", sort=False):
        at = crossover(group)
        color = colors[CASES[label]["workload"]]
        name = label + (" (the main job)" if label == MAIN else "") + (
            f": DES faster below {at:.0f} workers" if at else ": PS faster at every N")
        fig.add_trace(go.Scatter(x=group.workers, y=group.ps_over_des, name=name, mode="lines+markers",
                                 line_color=color, legendgroup="cases", legendgrouptitle_text="left: workload",
                                 hovertemplate="%{y:.3g} at %{x} workers<extra></extra>"), row=1, col=1)
        if at:
            fig.add_trace(go.Scatter(x=[at], y=[1.0], mode="markers", showlegend=False, hoverinfo="skip",
                                     marker={"symbol": "x", "size": 12, "color": color}), row=1, col=1)
    main = cases[(cases.case == MAIN) & (cases.workers == 16)].ps_over_des.item()
    fig.add_annotation(x=math.log10(16), y=math.log10(main), text=f"the main job: PS {1 / main:.0f}x faster",
                       ax=-20, ay=45, row=1, col=1)
    fig.add_hline(y=1.0, line_dash="dash", line_color="gray", row=1, col=1)
    for text, shift in (("DES faster ↑", 10), ("PS faster ↓", -10)):
        fig.add_annotation(x=math.log10(WORKERS[-1]), y=0.0, yshift=shift, text=text, showarrow=False,
                           xanchor="right", font_color="gray", row=1, col=1)
    for workload, group in crossovers.dropna().groupby("workload", sort=False):
        fig.add_trace(go.Scatter(x=group.hotness, y=group.crossover, name=workload, mode="lines+markers",
                                 line={"color": colors[workload], "dash": "dot"}, legendgroup="presets",
                                 legendgrouptitle_text="right: preset, hotness varied",
                                 hovertemplate="DES faster below %{y:.3g} workers at %{x} IDs per field"
                                               "<extra></extra>"), row=1, col=2)
    fig.update_xaxes(type="log", title_text="workers (N)", tickvals=list(WORKERS), row=1, col=1)
    fig.update_yaxes(type="log", dtick=1, range=[-3.3, 1.1], title_text="PS step time / DES step time", row=1, col=1)
    fig.update_xaxes(type="log", title_text="IDs per field per sample (hotness)", tickvals=list(HOTNESS), row=1, col=2)
    fig.update_yaxes(type="log", tickvals=[2, 4, 8, 16, 32, 64], row=1, col=2,
                     title_text="crossover workers (none plotted: PS faster from N = 2)")
    fig.update_layout(title="PS vs DES: analytical steps of H100s on the main job's 100G leaf-spine, grown to N hosts",
                      legend={"tracegroupgap": 24}, height=HEIGHT)
    return fig


def main() -> None:
    """Print the figure's numbers and write it to docs/img/ps_vs_des.png and .svg."""
    cases, crossovers = data()
    fig = figure(cases, crossovers)
    print(cases.pivot_table(index="workers", columns="case", values="ps_over_des").round(4).to_string())
    print(crossovers.pivot_table(index="hotness", columns="workload", values="crossover").round(1).to_string())
    for suffix in ("png", "svg"):
        fig.write_image(HERE / "img" / f"ps_vs_des.{suffix}", width=WIDTH, height=HEIGHT)
        print(HERE / "img" / f"ps_vs_des.{suffix}")


if __name__ == "__main__":
    main()
