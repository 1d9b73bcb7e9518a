"""How long the real executor takes per configuration: ranks started, steps trained, results back.

    .venv/bin/python benchmarks/executor.py [--batch 1024] [--steps 6]

One row per (model, strategy, workers): wall seconds of one ``execute`` call (spawning the ranks, importing
torch in each, joining the process group, training ``steps`` steps, collecting the counters) and the
measured median step time. Numbers are recorded in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from simulator.executor.run import execute, small_workload

CASES = [("dlrm", "des"), ("dlrm", "des-a2a"), ("dlrm", "dp"), ("dlrm", "ps"), ("dlrm", "ps-async"),
         ("deepfm", "des-rs"), ("lr", "des")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--worlds", default="2,4,8")
    args = parser.parse_args()
    rows = []
    for world in (int(w) for w in args.worlds.split(",")):
        for model, strategy in CASES:
            started = time.perf_counter()
            measured = execute(small_workload(model, args.batch), strategy, world, args.steps)
            rows.append({"model": model, "strategy": strategy, "workers": world, "servers": measured.servers,
                         "wall_s": round(time.perf_counter() - started, 1),
                         "median_step_ms": round(measured.median_step_s() * 1e3, 1)})
            print(rows[-1], flush=True)
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
