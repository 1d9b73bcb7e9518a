"""How well the executor's measured step time reproduces: the floor under any model's validation error.

    .venv/bin/python benchmarks/reproducibility.py [--worlds 1,2] [--passes 8] [--steps 6] [--batch 1024]

Measures the non-PS validation grid (``dessim validate``'s default models x des, des-rs, des-a2a, dp) twice, one run
after the other, each run making ``passes`` passes over the grid (as ``dessim validate --repeats``). For each
way of summarizing a configuration's passes it prints how far the second run's number lies from the first's,
|second / first - 1|: its mean and max over the grid, and the signed mean (a drift of the whole machine
between the runs). A model validated on this machine cannot be judged more finely than this.

Statistics: ``quietest of k``: the smallest per-pass median step among the first k passes (what ``validate
--repeats k`` keeps); ``median all``: the median of every step of every pass; ``least all``: the fastest step.
Numbers are recorded in docs/VALIDATION.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from simulator.calibration.calibrate import MODELS
from simulator.calibration.validation import WARMUP_STEPS
from simulator.executor.run import execute_many, small_workload

STRATEGIES = ("des", "des-rs", "des-a2a", "dp")


def measure(world: int, passes: int, steps: int, batch: int) -> pd.DataFrame:
    """One row per configuration: each statistic of its ``passes`` passes (seconds)."""
    configs = [(small_workload(model, batch), strategy) for model in MODELS for strategy in STRATEGIES]
    runs = execute_many(configs * passes, world, steps)
    rows = []
    for i in range(len(configs)):
        medians = np.array([m.median_step_s(WARMUP_STEPS) for m in runs[i::len(configs)]])
        steps_s = np.concatenate([m.measured_steps_s(WARMUP_STEPS) for m in runs[i::len(configs)]])
        rows.append({**{f"quietest of {k}": medians[:k].min() for k in sorted({1, 3, 5, passes}) if k <= passes},
                     "median all": np.median(steps_s), "least all": steps_s.min()})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worlds", default="1,2")
    parser.add_argument("--passes", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args()
    for world in (int(w) for w in args.worlds.split(",")):
        started = time.perf_counter()
        first, second = (measure(world, args.passes, args.steps, args.batch) for _ in range(2))
        change = second / first - 1
        table = pd.DataFrame({"mean |change| %": change.abs().mean() * 100, "max |change| %": change.abs().max() * 100,
                              "signed mean %": change.mean() * 100}).round(1)
        print(f"{world} worker(s), {args.passes} passes of {args.steps} steps, batch {args.batch} "
              f"({time.perf_counter() - started:.0f} s)")
        print(table.to_string(), flush=True)


if __name__ == "__main__":
    main()
