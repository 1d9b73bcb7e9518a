"""The default commands at 64, 256, 1,024 and 4,096 ranks: CPU time and peak memory of each whole process.

Each command runs as its own process (``dessim ... --json``) on a fat-tree of that many hosts (400 Gb/s, 1 us
links; the topologies of ``benchmarks/scale.py``), with every other option at its default: ``compare`` (the
default workload, ps and des, ``--fidelity auto`` with its 60 s budget per strategy), ``run`` (des),
``collective`` (64 MiB ring all-reduce), ``trace`` (des, a Perfetto file), ``sweep`` (ps and des at two batch
sizes, 2 processes) and ``jobs`` (two jobs, des and dp, on half the hosts each, ``fidelity: auto`` with its 60 s
budget for every job alone and all together).
Prints a Markdown table: CPU seconds (user + system, the process and its children), wall seconds, peak RSS of
the largest process, and the fidelity each strategy ran at.

    .venv/bin/python benchmarks/commands.py                  # about 10 minutes on 2 cores
    .venv/bin/python benchmarks/commands.py --ranks 64 256   # a subset
    .venv/bin/python benchmarks/commands.py --ecmp dmodk     # static fat-tree routing instead of hashing
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

TOPOLOGIES = {64: "fattree:k=8,pods=4,link_gbps=400,latency_us=1",
              256: "fattree:k=16,pods=4,link_gbps=400,latency_us=1",
              1024: "fattree:k=16,link_gbps=400,latency_us=1",
              4096: "fattree:k=32,pods=16,link_gbps=400,latency_us=1"}
COMMANDS = ("compare", "run", "collective", "trace", "sweep", "jobs")


def command_args(command: str, ranks: int, folder: Path, ecmp: str = "hash") -> list[str]:
    """The ``dessim`` arguments of ``command`` on the ``ranks``-host fat-tree routed by ``ecmp`` (spec files
    written to ``folder``)."""
    topology = TOPOLOGIES[ranks]
    if command == "trace":
        return ["trace", "--topology", topology, "--ecmp", ecmp, "--out", str(folder / "trace.json")]
    if command == "sweep":
        spec = {"base": {"topology": topology, "ecmp": ecmp},
                "grid": {"strategy": ["ps", "des"], "workload.batch_per_worker": [1024, 4096]}}
        (folder / "sweep.yaml").write_text(yaml.safe_dump(spec))
        return ["sweep", str(folder / "sweep.yaml"), "--out", str(folder / "rows.parquet"), "--jobs", "2"]
    if command == "jobs":
        jobs = [{"name": "rec", "workload": "dlrm-criteo-tb", "strategy": "des", "workers": ranks // 2},
                {"name": "ctr", "workload": "dlrm-criteo-tb", "strategy": "dp", "workers": ranks // 2}]
        (folder / "jobs.yaml").write_text(yaml.safe_dump({"topology": topology, "ecmp": ecmp, "jobs": jobs}))
        return ["jobs", str(folder / "jobs.yaml")]
    return [command, "--topology", topology, "--ecmp", ecmp]


def measure(args: list[str], timeout_s: float) -> dict:
    """Run ``dessim ARGS --json`` in a child process; its CPU seconds (with its own children), wall seconds,
    peak RSS and document."""
    before = os.times()
    started = time.perf_counter()
    script = ("import resource, sys; from simulator.cli import main\n"
              "try:\n    main(sys.argv[1:])\nfinally:\n"
              "    print(max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF,"
              " resource.RUSAGE_CHILDREN)), file=sys.stderr)")
    try:
        json_flag = [] if args[0] == "trace" else ["--json"]
        done = subprocess.run([sys.executable, "-c", script, *args, *json_flag], capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"> {timeout_s:g} s (stopped)"}
    after = os.times()
    cpu_s = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-2] if done.stderr.strip() else f"exit {done.returncode}"}
    document = json.loads(done.stdout) if json_flag else {"fidelity": re.findall(r"at (\w+) level", done.stdout)[-1]}
    return {"cpu_s": cpu_s, "wall_s": time.perf_counter() - started,
            "rss_mib": int(done.stderr.strip().splitlines()[-1]) / 1024, "document": document}


def fidelities(document: dict, folder: Path) -> str:
    """The fidelity each strategy (or sweep row) ran at."""
    if "strategies" in document:
        return ", ".join(f"{s['strategy']} {s['fidelity']}" for s in document["strategies"])
    if (folder / "rows.parquet").exists():
        rows = pd.read_parquet(folder / "rows.parquet")
        counts = rows.value_counts(["strategy", "fidelity"]).sort_index()
        return ", ".join(f"{strategy} {fidelity} ({n} rows)" for (strategy, fidelity), n in counts.items())
    return document.get("fidelity", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="*", default=list(TOPOLOGIES))
    parser.add_argument("--commands", nargs="*", default=list(COMMANDS), choices=COMMANDS)
    parser.add_argument("--timeout-s", type=float, default=600)
    parser.add_argument("--ecmp", default="hash", choices=("hash", "dmodk"), help="how fat-tree hops are chosen")
    options = parser.parse_args()
    print("| command | ranks | CPU s | wall s | peak MiB | ran at |")
    print("|---|---|---|---|---|---|")
    for command in options.commands:
        for ranks in options.ranks:
            with tempfile.TemporaryDirectory() as folder:
                got = measure(command_args(command, ranks, Path(folder), options.ecmp), options.timeout_s)
                if "error" in got:
                    print(f"| {command} | {ranks:,} | | | | {got['error']} |", flush=True)
                    continue
                print(f"| {command} | {ranks:,} | {got['cpu_s']:.1f} | {got['wall_s']:.1f} | {got['rss_mib']:,.0f} | "
                      f"{fidelities(got['document'], Path(folder))} |", flush=True)

if __name__ == "__main__":
    main()
