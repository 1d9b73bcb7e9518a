"""Scale benchmark of the network core: collectives at 64 to 4,096 ranks, both fidelities.

Each case runs in its own process (so peak memory is that case's) with a wall-clock budget, and
prints: case, ranks, flows (messages simulated), events (windows / rate solves for flow level),
simulated time, wall seconds, peak RSS. Results go to stdout as a table and, with --json, to a file.

    .venv/bin/python benchmarks/scale.py                 # everything (about 10 minutes on 2 cores)
    .venv/bin/python benchmarks/scale.py --ranks 64 256  # a subset
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from simulator.network.fluid import DEFAULT_RATE_TOLERANCE

TOPOLOGIES = {
    ("fattree", 64): "fattree:k=8,pods=4,link_gbps=400,latency_us=1",
    ("fattree", 256): "fattree:k=16,pods=4,link_gbps=400,latency_us=1",
    ("fattree", 1024): "fattree:k=16,link_gbps=400,latency_us=1",
    ("fattree", 4096): "fattree:k=32,pods=16,link_gbps=400,latency_us=1",
    ("rail", 64): "dgx:nodes=8,gpus_per_node=8,nvlink_gbps=3600,nic_gbps=400,rails=true",
    ("rail", 256): "dgx:nodes=32,gpus_per_node=8,nvlink_gbps=3600,nic_gbps=400,rails=true",
    ("rail", 1024): "dgx:nodes=128,gpus_per_node=8,nvlink_gbps=3600,nic_gbps=400,rails=true",
    ("rail", 4096): "dgx:nodes=512,gpus_per_node=8,nvlink_gbps=3600,nic_gbps=400,rails=true",
}
CASES = [("allreduce", "ring", "64MiB"), ("alltoall", "direct", "64MiB"), ("pushpull", "direct", "64MiB")]


def run_case(op: str, algo: str, size: str, topology: str, fidelity: str, rate_tolerance: float) -> dict:
    """Run one case in this process and return its measurements."""
    from simulator.collectives.algorithms import build_schedule
    from simulator.collectives.tuner import profiled
    from simulator.network import make_network
    from simulator.network.fabric import Fabric
    from simulator.units import parse_size_bytes
    from topologies import load_topology

    started = time.perf_counter()
    fabric = Fabric(load_topology(topology))
    n = fabric.n_hosts
    servers = n // 8 if op == "pushpull" else 0
    size_bytes = parse_size_bytes(size)
    setup_s = time.perf_counter() - started
    network = make_network(fabric, fidelity, rate_tolerance=rate_tolerance)
    t0 = time.perf_counter()
    if fidelity == "flow":
        schedule = build_schedule(op, algo, size_bytes, n, servers)
        flows = schedule.n_messages()
        done = network.start(schedule)
        network.env.run(until=done)
        sim_s = done.value.time_s
        run_s = time.perf_counter() - t0
        events = f"{network.core.n_windows} windows / {network.core.n_rate_solves} solves"
    else:  # cold: first profile (routing included); warm: the same collective at another size, as a sweep
        entry = profiled(fabric, op, algo, size_bytes, servers)
        sim_s = entry.time_s(size_bytes)
        run_s = time.perf_counter() - t0
        flows = entry.messages
        t1 = time.perf_counter()
        profiled(fabric, op, algo, size_bytes / 2, servers).time_s(size_bytes / 2)
        events = f"warm {1e3 * (time.perf_counter() - t1):.3f} ms"
    return {"op": op, "algo": algo, "size": size, "topology": topology, "fidelity": fidelity, "ranks": n,
            "rate_tolerance": rate_tolerance if fidelity == "flow" else None,
            "servers": servers, "flows": flows, "events": events, "sim_time_s": sim_s,
            "setup_s": round(setup_s, 3), "wall_s": round(run_s, 4),
            "peak_rss_MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="*", default=[64, 256, 1024, 4096])
    parser.add_argument("--families", nargs="*", default=["fattree", "rail"])
    parser.add_argument("--fidelities", nargs="*", default=["flow", "analytical"])
    parser.add_argument("--ops", nargs="*", default=[c[0] for c in CASES])
    parser.add_argument("--budget-s", type=float, default=600.0, help="wall-clock limit per case")
    parser.add_argument("--rate-tolerance", type=float, default=DEFAULT_RATE_TOLERANCE,
                        help="flow backend's completion batching (0 = exact event order)")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(*json.loads(args.case))))
        return
    rows = []
    print(f"{'op':10} {'family':8} {'fid':10} {'ranks':>6} {'flows':>10} {'sim ms':>10} {'wall s':>8} "
          f"{'MiB':>7}  events")
    for op, algo, size in CASES:
        if op not in args.ops:
            continue
        for family in args.families:
            for ranks in args.ranks:
                for fidelity in args.fidelities:
                    case = [op, algo, size, TOPOLOGIES[(family, ranks)], fidelity, args.rate_tolerance]
                    try:
                        out = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], text=True,
                                             capture_output=True, timeout=args.budget_s, check=True)
                        row = json.loads(out.stdout)
                    except subprocess.TimeoutExpired:
                        row = {"op": op, "topology": case[3], "fidelity": fidelity, "ranks": ranks,
                               "wall_s": f">{args.budget_s:.0f} (stopped)"}
                    except subprocess.CalledProcessError as error:
                        row = {"op": op, "topology": case[3], "fidelity": fidelity, "ranks": ranks,
                               "error": error.stderr.strip().splitlines()[-1]}
                    row["family"] = family
                    rows.append(row)
                    print(f"{op:10} {family:8} {fidelity:10} {ranks:>6} {row.get('flows', ''):>10} "
                          f"{row.get('sim_time_s', 0) * 1e3:>10.4f} {row.get('wall_s', '')!s:>8} "
                          f"{row.get('peak_rss_MiB', '')!s:>7}  {row.get('events', row.get('error', ''))}", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
