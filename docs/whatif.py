"""What-if study, DES vs PS under stragglers and link faults: writes docs/WHATIF.md, docs/whatif.html and,
with the images extra and a Chromium, docs/img/whatif_*.png.

MLPerf's DLRM (``dlrm-criteo-tb``) on 16 H100s (two DGX nodes, 400G rail-optimized NICs), flow fidelity,
several steps so that asynchronous PS settles:

1. one straggler GPU at 1x to 4x compute time;
2. random stragglers: every GPU slowed 3x in a step with probability p;
3. one GPU's NIC cable, then one rail-to-spine cable, degraded to a fraction of its bandwidth or failed.

    .venv/bin/python docs/whatif.py            # about three minutes on 2 cores
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from simulator.compute.roofline import load_device
from simulator.network.fabric import Fabric
from simulator.results import plots
from simulator.results.tables import flat_summary, markdown
from simulator.run.training import make_cluster, simulate_step
from simulator.strategies import StrategyOptions
from simulator.strategies.ps import PSOptions
from topologies import load_topology
from topologies.faults import apply_faults
from workloads import load_workload

HERE = Path(__file__).parent
WORKLOAD = "dlrm-criteo-tb"
TOPOLOGY = "dgx:nodes=2,gpus_per_node=8,nic_gbps=400,rails=true"
STEPS = 8
SLOW_RANK = 3
FACTORS = [1.0, 1.25, 1.5, 2.0, 3.0, 4.0]
PROBABILITIES = [0.0, 0.02, 0.05, 0.1, 0.2]
KEPT = [1.0, 0.5, 0.25, 0.1]
LINKS = {"NIC n0/gpu0": "n0/nic0-rail0", "uplink rail0-spine0": "rail0-spine0"}


def _ps(mode: str, staleness: int = 1) -> StrategyOptions:
    options = StrategyOptions.default()
    options.ps = PSOptions(mode=mode, staleness=staleness)
    return options


VARIANTS = {"ps BSP": ("ps", _ps("sync")), "ps SSP s=2": ("ps", _ps("ssp", 2)), "ps ASP": ("ps", _ps("async")),
            "des": ("des", None)}
SYNC_VARIANTS = ("ps BSP", "ps ASP", "des")
METRICS = {"worker_step_time_s_mean": ("mean step time per worker (ms)", 1e3),
           "worker_samples_per_s": ("samples/s, all workers (M)", 1e-6),
           "staleness_mean": ("mean staleness (updates)", 1.0)}


def run(variant: str, steps: int = STEPS, faults: tuple[str, ...] = (), **vary: tuple[str, ...]) -> dict:
    strategy, options = VARIANTS[variant]
    fabric = Fabric(apply_faults(load_topology(TOPOLOGY), faults))
    cluster = make_cluster(fabric, strategy, load_device("h100"), load_device("cpu-server"))
    summary = simulate_step(load_workload(WORKLOAD), cluster, strategy, "flow", steps, options, **vary).summary
    return {"variant": variant, **flat_summary(summary)}


def stragglers() -> pd.DataFrame:
    rows = [{"slowdown": f, **run(v, stragglers=(f"{SLOW_RANK}={f}",) if f != 1 else ())}
            for v in VARIANTS for f in FACTORS]
    return pd.DataFrame(rows)


def random_stragglers() -> pd.DataFrame:
    rows = [{"p": p, **run(v, steps=16, stragglers=(f"bernoulli:p={p},factor=3,seed=1",) if p else ())}
            for v in SYNC_VARIANTS for p in PROBABILITIES]
    return pd.DataFrame(rows)


def link_faults() -> pd.DataFrame:
    rows = []
    for where, link in LINKS.items():
        kept = [*KEPT, 0.0] if where.startswith("uplink") else KEPT  # a GPU's only NIC cannot fail: no path
        for factor in kept:
            faults = (f"{link}={factor:g}",) if factor != 1 else ()
            rows += [{"link": where, "kept": factor, **run(v, steps=2, faults=faults)} for v in SYNC_VARIANTS]
    return pd.DataFrame(rows)


def relative(frame: pd.DataFrame, x: str, healthy: float, by: tuple[str, ...] = ("variant",)) -> pd.DataFrame:
    """Step time and throughput against each variant's healthy run (x == healthy)."""
    out = frame.copy()
    base = out[out[x] == healthy].set_index(list(by))
    key = out[list(by)].apply(tuple, axis=1) if len(by) > 1 else out[by[0]]
    out["step_time_x"] = out["worker_step_time_s_mean"] / key.map(base["worker_step_time_s_mean"]).to_numpy()
    out["throughput_x"] = out["worker_samples_per_s"] / key.map(base["worker_samples_per_s"]).to_numpy()
    return out


def main() -> None:
    one, many, links = stragglers(), random_stragglers(), link_faults()
    one_rel = relative(one, "slowdown", 1.0)
    many_rel = relative(many, "p", 0.0)
    links_rel = pd.concat([relative(part, "kept", 1.0) for _, part in links.groupby("link", sort=False)])
    figures = {
        "whatif_straggler": plots.sensitivity(one, "slowdown", METRICS, title="One straggler GPU (rank 3), "
                                              f"{WORKLOAD} on 16 H100s", x_title="straggler's compute time (x)"),
        "whatif_random": plots.sensitivity(many, "p", METRICS, title="Random stragglers: each GPU 3x slower in a "
                                           "step with probability p", x_title="p"),
        "whatif_links": plots.sensitivity(links_rel, "kept", {"step_time_x": ("step time vs healthy (x)", 1.0)},
                                          title="One cable degraded (0: failed, rerouted)",
                                          x_title="bandwidth kept", dash="link"),
    }
    with open(HERE / "whatif.html", "w") as page:
        page.write("<html><head><meta charset='utf-8'><title>dessim what-if</title></head><body>")
        for fig in figures.values():
            page.write(fig.to_html(full_html=False, include_plotlyjs="cdn"))
        page.write("</body></html>")
    try:
        for name, fig in figures.items():
            fig.write_image(HERE / "img" / f"{name}.png", width=1200, height=420)
    except Exception as error:  # kaleido or Chromium missing: the HTML page has the same figures
        print(f"no PNG images ({error.__class__.__name__}); see docs/whatif.html")

    cols = ["variant", "slowdown", "worker_step_time_s_min", "worker_step_time_s_max", "step_time_x",
            "throughput_x", "staleness_mean", "staleness_max"]
    rand_cols = ["variant", "p", "worker_step_time_s_mean", "step_time_x", "throughput_x", "staleness_mean"]
    link_cols = ["link", "kept", "variant", "step_time_s", "step_time_x", "exposed_comm_s"]
    text = (HERE / "WHATIF.md").read_text() if (HERE / "WHATIF.md").exists() else ""
    intro = text.split("<!-- tables -->")[0] or "# What if\n"  # the hand-written part is kept
    (HERE / "WHATIF.md").write_text("\n".join([
        intro.rstrip(), "", "<!-- tables -->", "",
        "## One straggler", "", markdown(one_rel[cols]), "",
        "## Random stragglers (factor 3, 16 steps, seed 1)", "", markdown(many_rel[rand_cols]), "",
        "## One cable degraded or failed", "", markdown(links_rel[link_cols]), ""]))
    print(one_rel[cols].to_string(), many_rel[rand_cols].to_string(), links_rel[link_cols].to_string(), sep="\n\n")


if __name__ == "__main__":
    main()
