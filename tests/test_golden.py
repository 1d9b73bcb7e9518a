"""Golden outputs: every strategy's step summary, through the command line, equal to the stored one.

This pins results across refactors (issue 17's redesign must not move a number). A deliberate model change
regenerates the file and says why in its commit:

    .venv/bin/python tests/test_golden.py --write
"""

from __future__ import annotations

import json
import math
import sys
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import pytest

from simulator.cli import main

GOLDEN = Path(__file__).resolve().parent / "golden" / "steps.json"
SMALL = ["--workload", "dlrm-small", "--topology", "leafspine16", "--workers", "8"]
XC = ["--workload", "classification:classes=1000000,batch_per_worker=64", "--topology",
      "dgx:nodes=2,gpus_per_node=4,nvlink_gbps=3600,nic_gbps=400,rails=true"]
RECOMMENDER = ("ps", "des", "des-rs", "des-a2a", "dp", "tw", "cw", "rw", "twrw")
CLASSIFICATION = ("dp-fc", "ps-fc", "mp-fc", "mp-fc-knn")
CASES: dict[str, list[str]] = {
    **{f"{s}-{f}": [*SMALL, "--strategy", s, "--fidelity", f, *(["--servers", "4"] if s == "ps" else [])]
       for s in RECOMMENDER for f in ("flow", "analytical")},
    **{f"{s}-{f}": [*XC, "--strategy", s, "--fidelity", f, *(["--servers", "2", "--placement", "dedicated"]
                                                               if s == "ps-fc" else [])]
       for s in CLASSIFICATION for f in ("flow", "analytical")},
    "ps-ssp-stragglers": [*SMALL, "--strategy", "ps", "--servers", "4", "--placement", "dedicated", "--ps-mode",
                          "ssp", "--staleness", "2", "--steps", "3", "--straggler", "bernoulli:p=0.3,factor=2,seed=1"],
    "ps-async-threads": [*SMALL, "--strategy", "ps", "--servers", "2", "--ps-mode", "async", "--steps", "2",
                         "--server-threads", "1", "--dense", "allreduce"],
    "des-replicated-fields": [*SMALL, "--strategy", "des", "--des-input", "replicated", "--des-partial", "fields"],
    "des-a2a-first-layer": ["--workload", "deepfm-criteo", "--topology", "leafspine16", "--workers", "4",
                            "--strategy", "des-a2a", "--des-partial", "first-layer", "--fidelity", "analytical"],
    "cw-shards-bf16": [*SMALL, "--strategy", "cw", "--column-shards", "2", "--precision", "bf16"],
    "des-lv08-fault": [*SMALL, "--strategy", "des", "--network-model", "lv08", "--fault", "leaf0-spine0=0.5"],
    "dp-mixed-devices": [*SMALL, "--strategy", "dp", "--rank-device", "0-3=a100", "--set", "ids=sampled"],
    "mp-fc-knn-tuned": [*XC, "--strategy", "mp-fc-knn", "--knn-k", "5", "--knn-candidates", "512", "--overlap",
                        "--topk-ratio", "0.01", "--fp16-comm", "--comm-dtype", "fp16"],
}
IGNORED = ("wall_s",)  # the simulator's own run time


def summary(args: list[str]) -> dict[str, object]:
    """``dessim run ARGS --json``, flattened to dotted keys, without wall times."""
    out = StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        main(["run", *args, "--json"])
    assert exit_info.value.code == 0, out.getvalue()
    return dict(_flat(json.loads(out.getvalue())))


def _flat(value: object, prefix: str = ""):
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in IGNORED:
                yield from _flat(item, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), value


@pytest.mark.parametrize("case", CASES)
def test_every_strategy_gives_its_golden_summary(case: str) -> None:
    expected = json.loads(GOLDEN.read_text())[case]
    got = summary(CASES[case])
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        if isinstance(value, float) and not isinstance(got[key], bool):
            # a difference of two step times, (analytical - flow) / flow, keeps their absolute error only
            abs_tol = 1e-9 if key == "analytical_difference" else 1e-300
            assert math.isclose(got[key], value, rel_tol=1e-12, abs_tol=abs_tol), (key, got[key], value)
        else:
            assert got[key] == value, (key, got[key], value)


def test_the_golden_file_covers_every_strategy() -> None:
    from simulator.strategies import STRATEGIES

    assert set(STRATEGIES) == set(RECOMMENDER) | set(CLASSIFICATION)
    assert set(json.loads(GOLDEN.read_text())) == set(CASES)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({case: summary(args) for case, args in CASES.items()}, indent=1, sort_keys=True))
    print(f"wrote {GOLDEN}: {len(CASES)} cases")
