"""How well ``--fidelity auto`` estimates flow level's cost: estimate against the measured wall time.

The constants were set from the 1,024-host all-to-all, from window counts (``simulator/run/fidelity.py``) and,
for ``dmodk`` routing, from the 1,024-host ps step; the other cases are held out. Each case runs at flow level in
this process, one after the other.

    .venv/bin/python benchmarks/fidelity.py            # about 3 minutes on 2 cores
"""

from __future__ import annotations

import time

from simulator.collectives.algorithms import build_schedule
from simulator.network import make_network
from simulator.network.fabric import Fabric
from simulator.run.fidelity import flow_cost_s
from simulator.run.spec import RunSpec, resolve
from simulator.strategies import lower
from topologies import load_topology

FATTREE = {64: "fattree:k=8,pods=4,link_gbps=400,latency_us=1", 256: "fattree:k=16,pods=4,link_gbps=400,latency_us=1",
           1024: "fattree:k=16,link_gbps=400,latency_us=1"}
COLLECTIVES = [("allreduce", "ring", 256, "hash"), ("allreduce", "ring", 1024, "hash"),
               ("alltoall", "direct", 256, "hash"), ("pushpull", "direct", 1024, "hash"),
               ("alltoall", "direct", 1024, "dmodk")]
STEPS = [("ps", 64, "hash"), ("des", 64, "hash"), ("ps", 256, "hash"), ("des", 256, "hash"), ("dp", 256, "hash"),
         ("ps", 256, "dmodk"), ("des", 256, "dmodk"), ("ps", 1024, "dmodk")]


def collective(op: str, algo: str, hosts: int, ecmp: str) -> tuple[float, float]:
    fabric = Fabric(load_topology(FATTREE[hosts]), ecmp=ecmp)
    schedule = build_schedule(op, algo, 64 * 2**20, hosts, hosts // 8 if op == "pushpull" else 0)
    network = make_network(fabric, "flow")
    started = time.perf_counter()
    network.env.run(until=network.start(schedule))
    return flow_cost_s([schedule], alone=True, spread=ecmp == "dmodk"), time.perf_counter() - started


def step(strategy: str, hosts: int, ecmp: str) -> tuple[float, float]:
    scenario = resolve(RunSpec(topology=FATTREE[hosts], fidelity="flow", ecmp=ecmp))
    lowered = lower(strategy, scenario.workload, scenario.cluster(strategy), 1, scenario.spec.options)
    estimate = flow_cost_s([op.schedule for op in lowered.graph.ops if op.schedule is not None],
                           spread=ecmp == "dmodk")
    started = time.perf_counter()
    scenario.simulate(strategy)
    return estimate, time.perf_counter() - started


def main() -> None:
    print(f"{'case':44} {'estimate s':>11} {'measured s':>11} {'ratio':>7}")
    cases = [(f"{op} {algo} 64 MiB, {n} hosts, {e}", collective, (op, algo, n, e)) for op, algo, n, e in COLLECTIVES]
    cases += [(f"default DLRM step, {s}, {n} hosts, {e}", step, (s, n, e)) for s, n, e in STEPS]
    for name, run, args in cases:
        estimate, measured = run(*args)
        print(f"{name:44} {estimate:11.3g} {measured:11.3g} {estimate / measured:7.2g}", flush=True)


if __name__ == "__main__":
    main()
