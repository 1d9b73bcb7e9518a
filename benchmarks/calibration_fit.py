"""CPU time of ``dessim calibrate``'s fits (docs/BENCHMARKS.md, "Calibration fit time").

The measurements (microbenchmarks and real executor steps on 2 gloo ranks, about half a minute) are taken once
and can be saved with ``--save``; ``--load`` replays the fits on saved measurements, so that two versions of the
code are timed on the same points. Each fit of ``calibrate.calibrate_ranks`` is timed in CPU seconds
(``time.process_time``); ``--out`` pickles what they fitted, to compare two versions bit for bit.

    .venv/bin/python benchmarks/calibration_fit.py --save /tmp/lr.pkl                 # the test's command's runs
    .venv/bin/python benchmarks/calibration_fit.py --models dlrm --batches 64,512 --steps 3 --save /tmp/dlrm.pkl
    .venv/bin/python benchmarks/calibration_fit.py --load /tmp/lr.pkl --out /tmp/fitted.pkl
"""

from __future__ import annotations

import argparse
import pickle
import time
from collections.abc import Callable
from typing import TypeVar

from simulator.calibration.calibrate import executor_points, fit_collectives, fit_compute, measure
from simulator.calibration.stepfit import FITTED, fit_collectives_in_step, fit_device, fit_jitter
from simulator.compute.roofline import load_device

T = TypeVar("T")
CORES = 2  # the ranks' machine, as the fits assume it (validation.machine_cores on a 2-core machine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lr", help="executor models (comma-separated)")
    parser.add_argument("--batches", default="16,32", help="samples per worker of the fitted steps")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--save", help="pickle the measurements here")
    parser.add_argument("--load", help="replay the fits on these saved measurements")
    parser.add_argument("--out", help="pickle the fitted fields here")
    args = parser.parse_args()
    if args.load:
        with open(args.load, "rb") as f:
            data = pickle.load(f)
    else:
        data = {"points": measure(2), "observed": executor_points(2, args.models.split(","),
                                                                   [int(b) for b in args.batches.split(",")],
                                                                   args.steps, repeats=1)}
    if args.save:
        with open(args.save, "wb") as f:
            pickle.dump(data, f)
    points, observed = data["points"], data["observed"]
    device = load_device("cpu-server")
    cpu_s: dict[str, float] = {}

    def timed(name: str, fit: Callable[..., T], *fit_args: object) -> T:
        start = time.process_time()
        result = fit(*fit_args)
        cpu_s[name] = time.process_time() - start
        return result

    guess, _ = timed("fit_compute", fit_compute, points[points.group != "collective"], device)
    collectives, _ = timed("fit_collectives", fit_collectives, points[points.group == "collective"])
    fitted, server, _ = timed("fit_device", fit_device, observed, device.model_copy(update=guess))
    server_device = fitted.model_copy(update=server)
    collectives, _ = timed("fit_collectives_in_step", fit_collectives_in_step, observed, fitted, server_device,
                           collectives, CORES)
    sigma = timed("fit_jitter", fit_jitter, observed, fitted, server_device, collectives, CORES)
    print("| fit | CPU s |\n|---|---|")
    for name, seconds in {**cpu_s, "all fits": sum(cpu_s.values())}.items():
        print(f"| {name} | {seconds:.2f} |")
    if args.out:
        with open(args.out, "wb") as f:
            pickle.dump({"device": {k: getattr(fitted, k) for k in FITTED}, "server": server,
                         "collectives": collectives, "jitter_sigma": sigma}, f)


if __name__ == "__main__":
    main()
