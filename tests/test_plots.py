"""Every figure builds from a real simulation and holds exactly the result's numbers."""


import numpy as np
import pandas as pd
import pytest

from simulator.compute.roofline import load_device
from simulator.network.fabric import Fabric
from simulator.results import plots
from simulator.results.tables import flat_summary
from simulator.run.training import make_cluster, simulate_step
from topologies import load_topology
from workloads import load_workload

TOPOLOGY = "leafspine16-oversub"


def step(strategy: str, record_rates: bool = False, topology: str = TOPOLOGY, workers: int | None = None,
         fidelity: str = "flow"):
    cluster = make_cluster(Fabric(load_topology(topology)), strategy, load_device("h100"), load_device("cpu-server"),
                           workers=workers)
    return simulate_step(load_workload("dlrm-small"), cluster, strategy, fidelity, record_rates=record_rates)


@pytest.fixture(scope="module")
def reports() -> dict:
    return {s: step(s, record_rates=s == "ps") for s in ("ps", "des", "dp")}


def test_timeline_has_every_op_of_the_shown_ranks(reports) -> None:
    trace = reports["des"].trace
    fig = plots.timeline(trace, ranks=[0, 3])
    shown = trace[trace["rank"].isin([0, 3])]
    assert {t.name for t in fig.data} == set(shown.category.astype(str))
    assert sum(len(t.x) for t in fig.data) == len(shown)
    bars = pd.concat([pd.DataFrame({"lane": t.y, "start": t.base, "ms": t.x}) for t in fig.data])
    assert set(bars.lane) == {f"rank {r} · {s}" for r in (0, 3) for s in ("compute", "comm")}
    assert sorted(bars.start) == pytest.approx(sorted(shown.start_s * 1e3))
    assert bars.ms.sum() == pytest.approx(((shown.end_s - shown.start_s) * 1e3).sum())
    assert fig.layout.xaxis.title.text == "time (ms)"


def test_link_heatmap_shows_the_timeline_by_tier(reports) -> None:
    timeline = reports["ps"].link_timeline(bins=20)
    fig = plots.link_heatmap(timeline)
    assert [a.text for a in fig.layout.annotations] == sorted(timeline.tier.unique())
    z = np.concatenate([np.asarray(t.z).ravel() for t in fig.data])
    assert np.sort(z) == pytest.approx(np.sort(timeline.util.to_numpy()))
    uplinks = next(t for t, name in zip(fig.data, fig.layout.annotations, strict=True) if name.text == "leaf->spine")
    assert np.asarray(uplinks.z).max() == pytest.approx(1.0)  # 4:1 oversubscribed: the uplinks saturate
    assert list(uplinks.y)[-1].startswith("leaf0→spine0")  # natural order, first at the top


def test_traffic_by_category_stacks_each_strategys_bytes(reports) -> None:
    summaries = [r.summary for r in reports.values()]
    fig = plots.traffic_by_category(summaries)
    for summary in summaries:
        total = sum(y for t in fig.data for x, y in zip(t.x, t.y, strict=True) if x == summary["strategy"])
        assert total == pytest.approx(summary["bytes_on_wire"] / 1e6)
    assert {t.name for t in fig.data} == {c for s in summaries for c in s["bytes_by_category"]}


def test_step_breakdown_adds_up_to_the_step_time(reports) -> None:
    summaries = [r.summary for r in reports.values()]
    fig = plots.step_breakdown(summaries)
    assert [t.name for t in fig.data] == ["compute", "compute overlapped with comm", "exposed communication"]
    for i, summary in enumerate(summaries):
        assert sum(t.y[i] for t in fig.data) == pytest.approx(summary["step_time_s"] * 1e3)


def test_scaling_marks_the_crossover_computed_here() -> None:
    frame = pd.DataFrame([{"strategy": s, "workers": n, "step_time_s": t, "samples_per_s": 1.0 / t,
                           "bytes_per_worker_max": 1.0} for s, n, t in
                          [("ps", 4, 4.0), ("ps", 16, 4.0), ("des", 4, 1.0), ("des", 16, 16.0)]])
    # log(des / ps) goes from log(1/4) to log(4): zero half way on log workers, at sqrt(4 x 16) = 8
    assert plots.crossover(frame, "ps", "des") == (pytest.approx(8.0), "des", "ps")
    fig = plots.scaling(frame)
    assert len(fig.data) == 2 * len(plots.SCALING_METRICS)
    assert "crossover at workers ≈ 8: des is faster below, ps above" in fig.layout.annotations[0].text
    assert [s.x0 for s in fig.layout.shapes] == pytest.approx([8.0] * 3)
    assert plots.crossover(frame[frame.workers == 4], "ps", "des") is None


def test_scaling_from_real_runs() -> None:
    rows = [flat_summary(step(s, topology="leafspine16", workers=n, fidelity="analytical").summary)
            for n in (2, 4, 8, 16) for s in ("ps", "des")]
    fig = plots.scaling(pd.DataFrame(rows))
    des = next(t for t in fig.data if t.name == "des")
    assert list(des.x) == [2, 4, 8, 16]
    assert list(des.y) == pytest.approx([r["step_time_s"] * 1e3 for r in rows if r["strategy"] == "des"])


def test_topology_draws_every_node_by_tier() -> None:
    graph = load_topology("dgx-h100-4node")
    fig = plots.topology(graph)
    nodes = {t.name: len(t.x) for t in fig.data[1:]}
    assert nodes == {"host (32)": 32, "nic (32)": 32, "nvswitch (4)": 4, "rail (8)": 8, "spine (8)": 8}
    assert len(fig.data[0].x) == 3 * graph.number_of_edges()  # a segment and a gap per edge
    assert list(fig.layout.yaxis.ticktext) == ["host", "nic", "nvswitch", "rail", "spine"]
    with pytest.raises(ValueError, match="allowed: <= 512"):
        plots.topology(load_topology("fattree-k16-400g"))


def test_category_colors_are_stable() -> None:
    assert plots.category_colors(["b", "a"]) == plots.category_colors(["a", "b", "a"])
    assert len(set(plots.category_colors(map(str, range(20))).values())) == 20


def test_sensitivity_draws_each_variant_and_dash_with_the_scaled_values() -> None:
    frame = pd.DataFrame({"variant": ["ps", "ps", "des", "des"] * 2, "link": ["nic"] * 4 + ["uplink"] * 4,
                          "kept": [1.0, 0.5] * 4, "step_time_s": np.arange(8) * 1e-3 + 1e-3})
    fig = plots.sensitivity(frame, "kept", {"step_time_s": ("step time (ms)", 1e3)}, dash="link")
    traces = {t.name: t for t in fig.data}
    assert set(traces) == {"ps, nic", "des, nic", "ps, uplink", "des, uplink"}
    assert list(traces["des, uplink"].y) == pytest.approx([8.0, 7.0])  # sorted by kept: 0.5 then 1.0
    assert traces["ps, nic"].line.dash == "solid" and traces["ps, uplink"].line.dash == "dash"
    assert traces["ps, nic"].line.color == traces["ps, uplink"].line.color != traces["des, nic"].line.color
