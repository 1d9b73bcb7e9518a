"""Extreme classification at 1e8 classes on 256 GPUs: writes docs/CLASSIFICATION.md.

Per strategy (``dp-fc``, ``ps-fc``, ``mp-fc``, ``mp-fc-knn``) and per technique added one at a time to the
hybrid-parallel ``mp-fc`` (KNN softmax, overlap, top-k sparsification, fp16 communication), and per
precision (fp32, bf16 mixed precision): step time, samples/s, bytes per worker, exposed communication and
memory per GPU, at analytical fidelity, on 32 DGX H100 nodes (8 GPUs each, NVLink inside, 400G InfiniBand
rails between) and on 25G Ethernet.

    .venv/bin/python docs/classification.py      # a few seconds
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from simulator.compute.roofline import load_device
from simulator.network.fabric import Fabric
from simulator.results.tables import markdown
from simulator.run.training import make_cluster, simulate_step
from simulator.strategies import StrategyOptions
from simulator.strategies.fc import FCOptions
from topologies import load_topology
from workloads import load_workload

WORKLOAD, WORKERS, SERVERS = "xc-1e8", 256, 32
NETWORKS = {  # name -> topology: 256 GPUs (and the ps-fc servers) on each
    "DGX H100, NVLink + 400G InfiniBand": "dgx-h100-128node",
    "25G Ethernet, one GPU per host": "leafspine:leaves=18,hosts_per_leaf=16,spines=4,host_gbps=25,uplink_gbps=100,"
                                      "latency_us=2",
}
KNN = {"knn_k": 10, "knn_rebuild_steps": 1000, "knn_candidates": 4096}
TECHNIQUES = [  # (label, strategy, options): each adds one technique to the one before
    ("mp-fc (hybrid parallel)", "mp-fc", {}),
    ("+ KNN softmax", "mp-fc-knn", KNN),
    ("+ overlap", "mp-fc-knn", {**KNN, "overlap": True}),
    ("+ top-k 0.1%", "mp-fc-knn", {**KNN, "overlap": True, "topk_ratio": 0.001}),
    ("+ fp16 communication", "mp-fc-knn", {**KNN, "overlap": True, "topk_ratio": 0.001, "fp16_comm": True}),
]
TUNED = {**KNN, "overlap": True, "topk_ratio": 0.001}
PRECISIONS = [  # (label, strategy, options, workload overrides)
    ("mp-fc, fp32", "mp-fc", {}, []),
    ("mp-fc, bf16", "mp-fc", {}, ["precision=bf16"]),
    ("mp-fc-knn + overlap + top-k, fp32, fp16 communication", "mp-fc-knn", {**TUNED, "fp16_comm": True}, []),
    ("mp-fc-knn + overlap + top-k, bf16", "mp-fc-knn", TUNED, ["precision=bf16"]),
]
STRATEGIES = [("dp-fc", "dp-fc", {}), ("ps-fc", "ps-fc", {}), ("mp-fc", "mp-fc", {}),
              ("mp-fc-knn (brute-force rebuild)", "mp-fc-knn", {"knn_k": 10, "knn_rebuild_steps": 1000}),
              ("mp-fc-knn (4,096-candidate index)", "mp-fc-knn", KNN)]
HERE = Path(__file__).parent


def study(rows: list[tuple], topology: str, workers: int = WORKERS) -> pd.DataFrame:
    """One row per (label, strategy, FC options[, workload overrides]): the step's summary figures on
    ``topology``."""
    fabric = Fabric(load_topology(topology))
    out = []
    for label, strategy, fc, *overrides in rows:
        workload = load_workload(WORKLOAD, overrides[0] if overrides else [])
        options = StrategyOptions.default()
        options.fc = FCOptions(**fc)
        cluster = make_cluster(fabric, strategy, load_device("h100"), load_device("cpu-server"), workers=workers,
                               servers=SERVERS if strategy == "ps-fc" else None,
                               placement="dedicated" if strategy == "ps-fc" else "colocated")
        s = simulate_step(workload, cluster, strategy, "analytical", options=options).summary
        out.append({"configuration": label, "step_ms": s["step_time_s"] * 1e3, "samples_per_s": s["samples_per_s"],
                    "MB_per_worker": s["bytes_per_worker"]["max"] / 1e6, "exposed_comm_ms": s["exposed_comm_s"] * 1e3,
                    "GPU_GB": s["memory_per_device_bytes"]["worker"] / 1e9, "fits": s["fits_memory"]})
    frame = pd.DataFrame(out)
    frame["throughput_gain"] = frame.samples_per_s / frame.samples_per_s.iloc[0]
    return frame


def _markdown(frame: pd.DataFrame) -> str:
    formats = {"step_ms": "{:,.1f}", "samples_per_s": "{:,.0f}", "MB_per_worker": "{:,.1f}",
               "exposed_comm_ms": "{:,.2f}", "GPU_GB": "{:,.1f}", "throughput_gain": "{:.2f}x"}
    shown = frame.assign(**{c: frame[c].map(f.format) for c, f in formats.items()},
                         fits=frame.fits.map({True: "yes", False: "**no**"}))
    return markdown(shown) + "\n"


def main() -> None:
    tables = []
    for network, topology in NETWORKS.items():
        strategies, techniques = study(STRATEGIES, topology), study(TECHNIQUES, topology)
        precisions = study(PRECISIONS, topology)
        tables.append(f"### {network}\n\nStrategies (gain against `dp-fc`):\n\n{_markdown(strategies)}\n"
                      f"Techniques, added one at a time to `mp-fc`:\n\n{_markdown(techniques)}\n"
                      f"Precision (`--precision bf16`: bf16 GEMMs, activations and communication, fp32 master "
                      f"weights; gain against fp32 `mp-fc`):\n\n{_markdown(precisions)}")
        print(network, strategies.to_string(), techniques.to_string(), precisions.to_string(), sep="\n\n")
    page = (HERE / "CLASSIFICATION.md").read_text().split("<!-- tables -->")[0]
    (HERE / "CLASSIFICATION.md").write_text(page + "<!-- tables -->\n\n" + "\n".join(tables))


if __name__ == "__main__":
    main()
