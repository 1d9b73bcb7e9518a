"""``dessim report``: one self-contained HTML file (plotly.js embedded, works offline) from saved results.

Results are either
- a run or comparison saved by ``dessim run/compare --save DIR``: ``DIR/summary.json`` (what ``--json``
  prints), ``DIR/trace.parquet``, ``DIR/links.parquet`` and, at flow fidelity, ``DIR/link_timeline.parquet``
  (each with a ``strategy`` column); the report has the summary table, bytes by category, the step-time
  breakdown, each strategy's timeline and link heatmap, and the topology when it is small; or
- a sweep: a Parquet or CSV table with one row per run (``strategy``, ``step_time_s``, ``samples_per_s``,
  bytes per worker and the swept inputs, such as ``workers`` or ``topology.host_gbps``); the report has
  the table and the scaling curves against the first swept numeric input.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from simulator.errors import SpecError, read_text
from simulator.results import plots
from simulator.results.tables import flat_summary

SUMMARY_COLUMNS = ["strategy", "fidelity", "step_time_s", "samples_per_s", "bytes_on_wire", "bytes_per_worker_max",
                   "compute_s", "exposed_comm_s", "fits_memory"]
SWEEP_KEYS = ("workers", "batch_per_worker", "link_gbps", "oversubscription", "hotness", "classes")


def save_results(directory: str | Path, document: dict, reports: list) -> None:
    """Save a run or comparison (``document``: its ``--json`` output; ``reports``: its StepReports) for
    ``dessim report``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(document))
    tables = {"trace": [r.trace for r in reports], "links": [r.links for r in reports]}
    if all(r.network.link_segments() is not None for r in reports):
        tables["link_timeline"] = [r.link_timeline() for r in reports]
    for name, frames in tables.items():
        pd.concat([f.assign(strategy=r.summary.strategy) for f, r in zip(frames, reports, strict=True)],
                  ignore_index=True).to_parquet(out / f"{name}.parquet")


def build_report(results: str | Path) -> str:
    """The HTML of the report on ``results`` (a saved run directory or a sweep table)."""
    path = Path(results)
    if path.is_dir():
        return _run_report(path)
    if path.suffix.lower() in (".parquet", ".csv"):
        return _sweep_report(path)
    raise SpecError("results", str(path), "allowed: a directory saved by dessim run/compare --save, or a sweep "
                                          "table (.parquet/.csv)")


def _run_report(directory: Path) -> str:
    try:
        document = json.loads(read_text(directory / "summary.json", "results"))
    except json.JSONDecodeError as exc:
        raise SpecError("results", str(directory / "summary.json"), f"invalid JSON: {exc}") from None
    summaries = document.get("strategies")
    if not isinstance(summaries, list) or not summaries:
        raise SpecError("results", str(directory / "summary.json"), "needs a strategies list (dessim ... --save)")
    trace = _table(directory / "trace.parquet")
    first = summaries[0]
    fidelity = " and ".join(dict.fromkeys(s["fidelity"] for s in summaries))  # auto may run strategies at both
    title = f"{first['workload']} on {first['workers']} workers of {first['topology']} ({fidelity} fidelity)"
    colors = plots.category_colors([*trace.category.astype(str),
                                    *(c for s in summaries for c in s["bytes_by_category"])])
    figures: list[tuple[str, go.Figure]] = [
        ("Bytes by category", plots.traffic_by_category(summaries, colors=colors)),
        ("Step time breakdown", plots.step_breakdown(summaries))]
    timeline = _table(directory / "link_timeline.parquet") if (directory / "link_timeline.parquet").exists() else None
    for summary in summaries:
        name = summary["strategy"]
        mine = trace[trace.strategy == name]
        figures.append((f"{name}: per-rank timeline", plots.timeline(mine, f"{name}: per-rank timeline",
                                                                     colors=colors)))
        if timeline is not None and len(timeline[timeline.strategy == name]):
            figures.append((f"{name}: link utilization", plots.link_heatmap(timeline[timeline.strategy == name],
                                                                             f"{name}: link utilization")))
    topology = _topology_figure(first["topology"])
    if topology is not None:
        figures.append(("Topology", topology))
    table = pd.DataFrame([flat_summary(s) for s in summaries])
    return _page(title, table[SUMMARY_COLUMNS], figures)


def _sweep_report(path: Path) -> str:
    rows = _table(path)
    missing = [c for c in ("strategy", "step_time_s", "samples_per_s") if c not in rows]
    if missing:
        raise SpecError("results", str(path), f"a sweep table needs the column {missing[0]} (one row per run)")
    figures = []
    inputs = [*SWEEP_KEYS, *(c for c in rows.columns if c.startswith(("topology.", "workload.", "device.")))]
    swept = next((k for k in inputs if k in rows and pd.api.types.is_numeric_dtype(rows[k])
                  and rows[k].nunique() > 1), None)
    if swept is not None:
        marked = ("ps", "des") if {"ps", "des"} <= set(rows.strategy) else None
        title = f"Scaling with {swept}" + (" (median over the other swept inputs)" if len(rows) > rows.groupby(
            ["strategy", swept]).ngroups else "")
        figures.append((f"Scaling with {swept}", plots.scaling(rows, x=swept, marked=marked, title=title)))
    return _page(f"Sweep: {len(rows)} runs ({path.name})", rows, figures)


def _table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise SpecError("results", str(path), "file not found")
    return pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)


def _topology_figure(spec: str) -> go.Figure | None:
    """The topology drawing when the spec still loads and is small, else None."""
    from topologies import load_topology

    try:
        return plots.topology(load_topology(spec), f"Topology: {spec}")
    except (SpecError, ValueError):
        return None


def _page(title: str, table: pd.DataFrame, figures: list[tuple[str, go.Figure]]) -> str:
    """One HTML page: the title, the table, then each figure; plotly.js inlined once (no network)."""
    parts = []
    for i, (heading, fig) in enumerate(figures):
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=i == 0, include_mathjax=False,
                                 config={"displaylogo": False}))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}h1{overflow-wrap:anywhere}"
            "</style></head><body>"
            f"<h1>{html.escape(title)}</h1><h2>Summary</h2>{table.to_html(index=False, float_format='{:.6g}'.format)}"
            + "".join(parts) + "</body></html>")
