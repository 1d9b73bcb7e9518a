"""Training-step benchmark: a DLRM step on 1,024 GPUs under des and ps, and analytical sweep throughput.

Each case runs in its own process (peak memory is that case's) and prints strategy, fidelity, workers,
ops in the step graph, simulated step time, wall seconds and peak RSS. The throughput case times
analytical step simulations of varied batch sizes on one topology, as a sweep runs them (``--configs``
at 64 GPUs, proportionally fewer on larger clusters).

    .venv/bin/python benchmarks/step.py                       # the issue's cases
    .venv/bin/python benchmarks/step.py --gpus 128 --configs 200
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def topology_for(gpus: int) -> str:
    """A rail-optimized cluster of 8-GPU nodes with 400G NICs."""
    return f"dgx:nodes={gpus // 8},gpus_per_node=8,nvlink_gbps=3600,nic_gbps=400,rails=true"


def run_case(strategy: str, fidelity: str, gpus: int, workload: str) -> dict:
    from simulator.compute.roofline import load_device
    from simulator.network.fabric import Fabric
    from simulator.run.training import make_cluster, simulate_step
    from simulator.strategies import lower
    from topologies import load_topology
    from workloads import load_workload

    fabric = Fabric(load_topology(topology_for(gpus)))
    spec = load_workload(workload)
    cluster = make_cluster(fabric, strategy, load_device("h100"), load_device("cpu-server"))
    started = time.perf_counter()
    report = simulate_step(spec, cluster, strategy, fidelity)
    wall_s = time.perf_counter() - started
    ops = len(lower(strategy, spec, cluster).graph.ops)
    return {"strategy": strategy, "fidelity": fidelity, "workers": cluster.n_workers, "ops": ops,
            "step_time_s": report.summary["step_time_s"], "wall_s": round(wall_s, 3),
            "peak_rss_MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def run_throughput(gpus: int, workload: str, configs: int) -> dict:
    """Analytical steps per minute over ``configs`` configurations (batch sizes x strategies)."""
    from simulator.compute.roofline import load_device
    from simulator.network.fabric import Fabric
    from simulator.run.training import make_cluster, simulate_step
    from topologies import load_topology
    from workloads import load_workload

    fabric = Fabric(load_topology(topology_for(gpus)))
    device, server = load_device("h100"), load_device("cpu-server")
    strategies = ("ps", "des", "des-rs")
    started = time.perf_counter()
    for i in range(configs):
        strategy = strategies[i % len(strategies)]
        spec = load_workload(workload, [f"batch_per_worker={256 + 64 * (i // len(strategies))}"])
        simulate_step(spec, make_cluster(fabric, strategy, device, server), strategy, "analytical")
    wall_s = time.perf_counter() - started
    return {"strategy": "+".join(strategies), "fidelity": "analytical", "workers": gpus, "configs": configs,
            "wall_s": round(wall_s, 3), "configs_per_min": round(configs / wall_s * 60),
            "peak_rss_MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=1024)
    parser.add_argument("--workload", default="dlrm-criteo-tb")
    parser.add_argument("--strategies", nargs="*", default=["des", "ps"])
    parser.add_argument("--fidelities", nargs="*", default=["flow", "analytical"])
    parser.add_argument("--configs", type=int, default=300, help="configurations per throughput case")
    parser.add_argument("--throughput-gpus", type=int, nargs="*", default=[64, 256, 1024])
    parser.add_argument("--budget-s", type=float, default=600.0)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        kind, *rest = json.loads(args.case)
        print(json.dumps(run_case(*rest) if kind == "step" else run_throughput(*rest)))
        return
    cases = [["step", s, f, args.gpus, args.workload] for s in args.strategies for f in args.fidelities]
    cases += [["throughput", gpus, args.workload, max(3, args.configs * 64 // gpus)] for gpus in args.throughput_gpus]
    rows = []
    for case in cases:
        try:
            out = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], text=True,
                                 capture_output=True, timeout=args.budget_s, check=True)
            row = json.loads(out.stdout)
        except subprocess.TimeoutExpired:
            row = {"case": case, "wall_s": f">{args.budget_s:.0f} (stopped)"}
        except subprocess.CalledProcessError as error:
            row = {"case": case, "error": error.stderr.strip().splitlines()[-1]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
