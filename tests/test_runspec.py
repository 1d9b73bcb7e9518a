"""RunSpec: every run key declared once, reachable by its flat key, and present in every command that runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.errors import SpecError
from simulator.run.jobs import JobSpec, load_jobs
from simulator.run.spec import KEYS, RunSpec, cli_name, key_table, resolve
from simulator.run.sweep import RUN_KEYS


def cli(*args: str) -> tuple[int, str]:
    out = StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code, out.getvalue()


def test_flat_and_nested_keys_make_the_same_spec() -> None:
    flat = RunSpec.from_flat({"strategy": "ps", "ps_mode": "ssp", "staleness": 3, "des_input": "replicated",
                              "column_shards": 2, "knn_k": 5})
    nested = RunSpec.model_validate({"strategy": "ps", "ps": {"mode": "ssp", "staleness": 3},
                                     "des": {"input": "replicated"}, "sharding": {"column_shards": 2},
                                     "fc": {"knn_k": 5}})
    assert flat == nested
    assert RunSpec.from_flat(flat.to_flat()) == flat
    assert flat.options.ps.staleness == 3 and flat.options.sharding.column_shards == 2


@pytest.mark.parametrize(("values", "message"), [
    ({"ps_mode": "eventually"}, "--ps-mode: got 'eventually'; allowed: sync, async, ssp"),
    ({"workers": 0}, "--workers: got 0; allowed: an integer >= 1"),
    ({"steps": 5000}, "--steps: got 5000; allowed: 1 to 1,000"),
    ({"topk_ratio": 2.0}, "--topk-ratio: got 2.0; allowed: a number > 0 and <= 1"),
    ({"faults": "x"}, "--fault: got 'x'"),
    ({"colour": "blue"}, "colour: got 'blue'; unknown key; allowed: workload, set, topology"),
])
def test_a_bad_value_names_its_key_as_the_command_line_spells_it(values: dict, message: str) -> None:
    with pytest.raises(SpecError) as error:
        RunSpec.from_flat(values, cli_name)
    assert str(error.value).startswith(message)


def test_every_key_is_an_option_of_run_compare_and_trace_a_sweep_key_a_job_key_and_listed() -> None:
    helps = {command: cli(command, "--help")[1] for command in ("run", "compare", "trace")}
    listed = cli("list", "keys")[1]
    for name, key in KEYS.items():
        for command, text in helps.items():
            if not (command == "compare" and name == "strategy"):
                assert key.cli in text, (command, key.cli)
        assert name in RUN_KEYS
        assert listed.count(f"{name} ({key.cli};") == 1
        assert key.path[0] in JobSpec.model_fields
    assert list(key_table().key) == list(KEYS)


def test_a_key_added_to_runspec_appears_everywhere_with_nothing_else_changed(tmp_path) -> None:
    """Add one line to RunSpec's source (in a copy of the packages) and find the new key in run, compare and
    trace, in sweeps' keys, in a job, in ``dessim list keys`` and in the docs' key table."""
    root = Path(__file__).resolve().parent.parent
    for package in ("simulator", "workloads", "topologies", "docs"):
        shutil.copytree(root / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.html",
                                                                                           "img", "validation-*"))
    source = tmp_path / "simulator" / "run" / "spec.py"
    anchor = "    ps: PSOptions = PSOptions()\n"
    text = source.read_text()
    assert text.count(anchor) == 1
    added = '    tuning_knob: int = Field(7, ge=0, description="a test knob")\n'
    source.write_text(text.replace(anchor, added + anchor))
    script = """
import json
import sys
from typer.testing import CliRunner
from simulator.cli import app
from simulator.run.jobs import JobSpec
from simulator.run.sweep import RUN_KEYS
sys.path.insert(0, "docs")
from keys import render
runner = CliRunner()
print(json.dumps({
    "helps": [("--tuning-knob" in runner.invoke(app, [c, "--help"]).output) for c in ("run", "compare", "trace")],
    "sweep": "tuning_knob" in RUN_KEYS,
    "job": JobSpec.model_validate({"name": "j", "workload": "w", "strategy": "s", "tuning_knob": 3}).tuning_knob,
    "listed": "tuning_knob (--tuning-knob; an integer >= 0, default 7)" in runner.invoke(app, ["list", "keys"]).output,
    "documented": "| tuning_knob | --tuning-knob | an integer >= 0 |  | `7` | a test knob |" in render(),
}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"helps": [True, True, True], "sweep": True, "job": 3, "listed": True, "documented": True}


def test_a_jobs_file_takes_every_strategy_option_but_not_the_files_shared_keys() -> None:
    spec = load_jobs({"topology": "leafspine16", "jobs": [
        {"name": "a", "workload": "dlrm-small", "strategy": "cw", "column_shards": 2, "hosts": "0-3"},
        {"name": "b", "workload": "dlrm-small", "strategy": "ps", "ps": {"mode": "ssp"}, "staleness": 2}]})
    assert spec.jobs[0].sharding.column_shards == 2 and spec.jobs[1].ps.mode == "ssp" and spec.jobs[1].ps.staleness == 2
    code, _ = cli("jobs", "--help")
    assert code == 0
    from simulator.run.jobs import simulate_jobs

    with pytest.raises(SpecError, match=r"^jobs\[0\]\.fidelity: got 'analytical'; not a job's key"):
        simulate_jobs({"topology": "leafspine16", "jobs": [{"name": "a", "workload": "dlrm-small", "strategy": "dp",
                                                            "fidelity": "analytical"}]})


def test_resolve_shares_presets_and_fabrics_across_specs() -> None:
    a = resolve(RunSpec.from_flat({"workload": "dlrm-small", "topology": "leafspine16"}))
    b = resolve(RunSpec.from_flat({"workload": "dlrm-small", "topology": "leafspine16", "strategy": "dp",
                                   "set": ["batch=64"]}))
    assert a.fabric is b.fabric and a.device is b.device
    assert b.workload.batch_per_worker == 64 and a.workload.batch_per_worker != 64


def test_the_keys_page_is_generated_from_the_specs() -> None:
    """docs/KEYS.md is what docs/keys.py writes now: a key added to RunSpec, SweepSpec or JobsSpec without
    regenerating the page fails here."""
    import importlib.util

    from simulator.run.jobs import JobsSpec
    from simulator.run.sweep import SweepSpec

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("keys_page", root / "docs" / "keys.py")
    page = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(page)
    text = (root / "docs" / "KEYS.md").read_text()
    assert text == page.render(), "docs/KEYS.md is stale: run python docs/keys.py"
    rows = {line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")}
    assert set(KEYS) | set(SweepSpec.model_fields) | set(JobsSpec.model_fields) | {"name", "hosts", "start_s"} <= rows


def test_ecmp_reaches_the_fabric_and_dmodk_spreads_an_exchange_without_collisions() -> None:
    """ps on a 16-host fat-tree: per-flow hashing collides on uplinks (the flow-level step is 34% longer);
    dmodk spreads the all-to-all exchanges evenly, so flow level agrees with the analytical model's equal shares."""
    steps = {}
    for ecmp in ("hash", "dmodk"):
        for fidelity in ("flow", "analytical"):
            scenario = resolve(RunSpec(topology="fattree:k=4,link_gbps=100,latency_us=1", fidelity=fidelity, ecmp=ecmp))
            assert scenario.fabric.ecmp == ecmp
            steps[ecmp, fidelity] = scenario.simulate("ps").summary["step_time_s"]
    assert steps["dmodk", "flow"] == pytest.approx(steps["dmodk", "analytical"], rel=1e-2)
    assert steps["hash", "flow"] > 1.2 * steps["dmodk", "flow"]
