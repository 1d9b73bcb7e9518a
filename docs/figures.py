"""Regenerate the static images of the docs (docs/img/*.png and .svg) from real simulations; the README's headline
figure is docs/headline.py's.

Needs the images extra and a Chromium (``pip install -e '.[images]'``; ``apt-get install -y chromium``)::

    .venv/bin/python docs/figures.py            # about 20 s
"""

from __future__ import annotations

from pathlib import Path

from simulator.compute.roofline import load_device
from simulator.network.fabric import Fabric
from simulator.results import plots
from simulator.run.training import StepReport, make_cluster, simulate_step
from topologies import load_topology
from workloads import load_workload

HERE = Path(__file__).parent
OUT = HERE / "img"
SMALL = "leafspine16-oversub"  # 16 hosts on 4 leaves, one 100G spine uplink per leaf (4:1)
COMPARED = ["ps", "des", "des-rs", "des-a2a", "dp", "tw", "rw"]


def step(workload: str, topology: str, strategy: str, record_rates: bool = False) -> StepReport:
    """One flow-level step of ``strategy`` on every host of ``topology`` (H100 workers, co-located CPU servers)."""
    cluster = make_cluster(Fabric(load_topology(topology)), strategy, load_device("h100"), load_device("cpu-server"))
    return simulate_step(load_workload(workload), cluster, strategy, "flow", record_rates=record_rates)


def figures() -> dict[str, object]:
    des = step("dlrm-small", SMALL, "des", record_rates=True)
    ps = step("dlrm-small", SMALL, "ps", record_rates=True)
    compared = [step("dlrm-small", SMALL, s).summary for s in COMPARED]
    colors = plots.category_colors([*des.trace.category.astype(str), *(c for s in compared
                                                                        for c in s["bytes_by_category"])])
    return {
        "timeline": plots.timeline(des.trace, "DES step of dlrm-small, 16 GPUs, 4:1 oversubscribed leaf-spine",
                                   ranks=range(4), colors=colors),
        "link_heatmap": plots.link_heatmap(ps.link_timeline(bins=80), "PS step of dlrm-small: link utilization "
                                                                      "(4:1 oversubscribed uplinks)"),
        "traffic": plots.traffic_by_category(compared, "dlrm-small on 16 GPUs: bytes per step by category",
                                             colors=colors),
        "breakdown": plots.step_breakdown(compared, "dlrm-small on 16 GPUs: where the step time goes"),
        "topology": plots.topology(load_topology(SMALL), "leafspine16-oversub: 16 hosts, 4 leaves, 1 spine"),
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, fig in figures().items():
        fig.write_image(OUT / f"{name}.png", width=1100, height=max(500, fig.layout.height or 0), scale=1)
        fig.write_image(OUT / f"{name}.svg", width=1100, height=max(500, fig.layout.height or 0))
        print(OUT / f"{name}.png")


if __name__ == "__main__":
    main()
