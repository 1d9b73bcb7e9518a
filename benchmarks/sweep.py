"""Sweep benchmark: analytical configurations per minute through ``dessim sweep``'s machinery (expansion,
process pool, a row per run, the journal and the final table), on a 64-GPU rail-optimized cluster.

The points vary the strategy, the batch and the NIC rate, as a capacity-planning grid does: ``ps``, ``des``,
``des-rs`` on MLPerf DLRM, or with ``--fc`` ``dp-fc``, ``ps-fc``, ``mp-fc``, ``mp-fc-knn`` on 1e8 classes
(``xc-1e8``); ``--strategies`` names others of the workload's kind. ``--network`` varies the network as well:
strategy (``ps``, ``des``, ``des-rs``, ``dp``) x workers x batch x host rate x uplink rate of MLPerf DLRM on a
256-host leaf-spine, all in closed form (one fabric and one evaluation per strategy and worker count). CPU
time counts this process and its worker processes.

    .venv/bin/python benchmarks/sweep.py                  # 1,200 configurations, 2 processes
    .venv/bin/python benchmarks/sweep.py --configs 300 --jobs 1
    .venv/bin/python benchmarks/sweep.py --configs 48000 --closed-form   # the vectorized path
    .venv/bin/python benchmarks/sweep.py --configs 48000 --closed-form --fc
    .venv/bin/python benchmarks/sweep.py --configs 16000 --closed-form --strategies tw   # one strategy's
    .venv/bin/python benchmarks/sweep.py --configs 12288 --network       # link rates vary too
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from simulator.run.sweep import sweep

RECOMMENDER, FC = ("ps", "des", "des-rs"), ("dp-fc", "ps-fc", "mp-fc", "mp-fc-knn")
RATES_GBPS = [100, 200, 400, 800]


def spec_for(configs: int, closed_form: bool = False, fc: bool = False,
             strategies: tuple[str, ...] | None = None) -> dict:
    strategies = strategies or (FC if fc else RECOMMENDER)
    batches = [(8 if fc else 256) * (k + 1) for k in range(max(1, configs // (len(strategies) * 4)))]
    return {"base": {"workload": "xc-1e8" if fc else "dlrm-criteo-tb", "fidelity": "analytical",
                     "topology": "dgx:nodes=8,gpus_per_node=8,nvlink_gbps=3600,nic_gbps=400,rails=true"},
            "grid": {"strategy": list(strategies), "workload.batch_per_worker": batches,
                     "topology.nic_gbps": RATES_GBPS}, "closed_form": closed_form}


def network_spec_for(configs: int) -> dict:
    """strategy x workers x batch x host rate x uplink rate, in closed form."""
    strategies, workers = ["ps", "des", "des-rs", "dp"], [32, 64, 128, 256]
    per_batch = len(strategies) * len(workers) * len(RATES_GBPS) ** 2
    batches = [256 * (k + 1) for k in range(max(1, configs // per_batch))]
    return {"base": {"workload": "dlrm-criteo-tb", "fidelity": "analytical",
                     "topology": "leafspine:leaves=16,hosts_per_leaf=16,spines=8,host_gbps=100,uplink_gbps=200"},
            "grid": {"strategy": strategies, "workers": workers, "workload.batch_per_worker": batches,
                     "topology.host_gbps": RATES_GBPS, "topology.uplink_gbps": RATES_GBPS}, "closed_form": True}


def cpu_s() -> float:
    """User and system CPU seconds of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=int, default=1200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--backend", default="local")
    parser.add_argument("--closed-form", action="store_true", help="the same points in closed form (vectorized)")
    parser.add_argument("--fc", action="store_true", help="extreme-classification strategies on xc-1e8")
    parser.add_argument("--strategies", help="comma-separated strategies of the workload's kind (default: above)")
    parser.add_argument("--network", action="store_true", help="workers and host and uplink rates vary too")
    args = parser.parse_args()
    spec = network_spec_for(args.configs) if args.network else spec_for(
        args.configs, args.closed_form, args.fc, tuple(args.strategies.split(",")) if args.strategies else None)
    with tempfile.TemporaryDirectory() as tmp:
        started, cpu_started = time.perf_counter(), cpu_s()
        table = sweep(spec, Path(tmp) / "rows.parquet", backend=args.backend, jobs=args.jobs)
        wall_s, used_s = time.perf_counter() - started, cpu_s() - cpu_started
    failed = int((table.error != "").sum())
    print(json.dumps({"configs": len(table), "failed": failed, "jobs": args.jobs, "backend": args.backend,
                      "closed_form": int((table.evaluation == "closed form").sum()),
                      "wall_s": round(wall_s, 2), "cpu_s": round(used_s, 2),
                      "configs_per_minute": round(len(table) / wall_s * 60),
                      "configs_per_cpu_minute": round(len(table) / used_s * 60)}))


if __name__ == "__main__":
    main()
