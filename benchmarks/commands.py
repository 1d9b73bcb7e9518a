"""The default commands at 64, 256, 1,024 and 4,096 ranks: CPU time and peak memory of each whole process.

Each command runs as its own process (``dessim ... --json``) on a fat-tree of that many hosts (400 Gb/s, 1 us
links; the topologies of ``benchmarks/scale.py``), with every other option at its default: ``compare`` (the
default workload, ps and des, ``--fidelity auto`` with its 60 s budget per strategy), ``run`` (des) and
``collective`` (64 MiB ring all-reduce). Prints a Markdown table: CPU seconds (user + system), wall seconds,
peak RSS, and the fidelity each strategy ran at.

    .venv/bin/python benchmarks/commands.py                  # about 10 minutes on 2 cores
    .venv/bin/python benchmarks/commands.py --ranks 64 256   # a subset
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

TOPOLOGIES = {64: "fattree:k=8,pods=4,link_gbps=400,latency_us=1",
              256: "fattree:k=16,pods=4,link_gbps=400,latency_us=1",
              1024: "fattree:k=16,link_gbps=400,latency_us=1",
              4096: "fattree:k=32,pods=16,link_gbps=400,latency_us=1"}
COMMANDS = {"compare": ["compare"], "run": ["run"], "collective": ["collective"]}


def measure(args: list[str], timeout_s: float) -> dict:
    """Run ``dessim ARGS --json`` in a child process; its CPU seconds, wall seconds, peak RSS and document."""
    before = os.times()
    started = time.perf_counter()
    script = ("import resource, sys; from simulator.cli import main\n"
              "try:\n    main(sys.argv[1:])\nfinally:\n"
              "    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
    try:
        done = subprocess.run([sys.executable, "-c", script, *args, "--json"], capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"> {timeout_s:g} s (stopped)"}
    after = os.times()
    cpu_s = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-2] if done.stderr.strip() else f"exit {done.returncode}"}
    return {"cpu_s": cpu_s, "wall_s": time.perf_counter() - started,
            "rss_mib": int(done.stderr.strip().splitlines()[-1]) / 1024, "document": json.loads(done.stdout)}


def fidelities(document: dict) -> str:
    if "strategies" in document:
        return ", ".join(f"{s['strategy']} {s['fidelity']}" for s in document["strategies"])
    return document.get("fidelity", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="*", default=list(TOPOLOGIES))
    parser.add_argument("--commands", nargs="*", default=list(COMMANDS))
    parser.add_argument("--timeout-s", type=float, default=900)
    options = parser.parse_args()
    print("| command | ranks | CPU s | wall s | peak MiB | ran at |")
    print("|---|---|---|---|---|---|")
    for command in options.commands:
        for ranks in options.ranks:
            got = measure([*COMMANDS[command], "--topology", TOPOLOGIES[ranks]], options.timeout_s)
            if "error" in got:
                print(f"| {command} | {ranks:,} | | | | {got['error']} |", flush=True)
                continue
            print(f"| {command} | {ranks:,} | {got['cpu_s']:.1f} | {got['wall_s']:.1f} | {got['rss_mib']:,.0f} | "
                  f"{fidelities(got['document'])} |", flush=True)


if __name__ == "__main__":
    main()
