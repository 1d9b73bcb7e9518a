"""Whole-process time of short commands (issue 18 item 5: a 64-host collective in < 0.3 s at either fidelity).

Each case runs ``python -m simulator.cli ARGS`` (what the ``dessim`` script runs) as its own process, output to a
pipe, once to warm the caches and then ``--runs`` times; it prints the median wall seconds and the median CPU
seconds (user + system of the child, all its threads) as a Markdown table. Cases: a 64 MiB ring all-reduce on the
64-host fat-tree of ``benchmarks/commands.py`` and on the 64-host preset ``torus-4x4x4``, at flow level and
analytically; ``dessim --help``; ``dessim compare`` on its defaults; and, as the floor of a collective on this
machine, a process that only imports the libraries it needs (``libraries``).

Python's compiled modules are cached in a temporary folder (``PYTHONPYCACHEPREFIX``), as an installed package
caches them; ``--no-bytecode-cache`` compiles every module in every run instead (``PYTHONDONTWRITEBYTECODE=1``).

    .venv/bin/python benchmarks/startup.py             # about a minute on 2 cores
    .venv/bin/python benchmarks/startup.py --runs 9 --cases help
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

FATTREE_64 = "fattree:k=8,pods=4,link_gbps=400,latency_us=1"
DESSIM = ["-m", "simulator.cli"]
CASES = {  # python's arguments
    "libraries": ["-c", "import numpy, pydantic, rich.console, rich.table, simpy, typer, yaml"],
    "fattree-flow": [*DESSIM, "collective", "--topology", FATTREE_64, "--fidelity", "flow"],
    "fattree-analytical": [*DESSIM, "collective", "--topology", FATTREE_64, "--fidelity", "analytical"],
    "torus-flow": [*DESSIM, "collective", "--topology", "torus-4x4x4", "--fidelity", "flow"],
    "torus-analytical": [*DESSIM, "collective", "--topology", "torus-4x4x4", "--fidelity", "analytical"],
    "help": [*DESSIM, "--help"],
    "compare": [*DESSIM, "compare"],
}


def measure(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s) of one ``python ARGS`` process."""
    before = os.times()
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, capture_output=True, check=True)
    wall_s = time.perf_counter() - started
    after = os.times()
    return wall_s, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--no-bytecode-cache", action="store_true")
    options = parser.parse_args()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as cache:
        env.update({"PYTHONDONTWRITEBYTECODE": "1"} if options.no_bytecode_cache else {"PYTHONPYCACHEPREFIX": cache})
        print(f"| case | command | wall s (median of {options.runs}) | CPU s (median) |")
        print("|---|---|---|---|")
        for name in options.cases:
            measure(CASES[name], env)
            walls, cpus = zip(*(measure(CASES[name], env) for _ in range(options.runs)), strict=True)
            args = CASES[name]
            shown = f'python -c "{args[1]}"' if args[0] == "-c" else " ".join(["dessim", *args[len(DESSIM):]])
            print(f"| {name} | `{shown}` | {statistics.median(walls):.3f} | "
                  f"{statistics.median(cpus):.3f} |", flush=True)


if __name__ == "__main__":
    main()
