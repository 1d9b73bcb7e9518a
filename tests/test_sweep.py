"""``dessim sweep``: expansion, identical rows on every backend, resume after kill -9, invalid points."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import run_cli

from simulator.run.sweep import SweepSpec, expand, load_sweep, run_key, sweep

TOPOLOGY = "leafspine:leaves=4,hosts_per_leaf=4,spines=2,host_gbps=100,uplink_gbps=200,latency_us=1"
SPEC = {"base": {"workload": "dlrm-small", "topology": TOPOLOGY},
        "grid": {"strategy": ["ps", "des", "nonsense"], "workers": [4, 16], "workload.batch_per_worker": [256, 1024]},
        "sample": {"method": "lhs", "n": 2, "seed": 1, "ranges": {"topology.host_gbps": [50, 400]}}}
TIMING = ["wall_s"]  # measured, so it differs between runs; every other column must not


def stable(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=TIMING, errors="ignore").reset_index(drop=True)


def test_expansion_is_the_grid_product_times_the_samples() -> None:
    points = expand(load_sweep(SPEC))
    assert len(points) == 3 * 2 * 2 * 2
    assert [p["strategy"] for p in points[:8]] == ["ps"] * 8  # the first key varies slowest
    assert [p["workers"] for p in points[:8]] == [4, 4, 4, 4, 16, 16, 16, 16]
    assert all(isinstance(p["topology.host_gbps"], int) and 50 <= p["topology.host_gbps"] <= 400 for p in points)


def test_latin_hypercube_puts_one_point_in_every_stratum() -> None:
    n = 40
    points = expand(SweepSpec(sample={"method": "lhs", "n": n, "ranges": {"device.eff_flops": [0.1, 0.9],
                                                                            "topology.host_gbps": [0.0, 1.0]}}))
    for name, (low, high) in {"device.eff_flops": (0.1, 0.9), "topology.host_gbps": (0.0, 1.0)}.items():
        strata = np.floor((np.array([p[name] for p in points]) - low) / (high - low) * n)
        assert sorted(strata) == list(range(n))
    random = expand(SweepSpec(sample={"method": "random", "n": n, "seed": 3,
                                      "ranges": {"device.eff_flops": [0.2, 0.3]}}))
    assert all(0.2 <= p["device.eff_flops"] <= 0.3 for p in random) and len(random) == n


def test_rows_have_inputs_summaries_and_errors_and_are_equal_on_every_backend(tmp_path) -> None:
    serial = sweep(SPEC, jobs=1)
    assert len(serial) == 24 and list(serial.run) == list(range(24))
    bad = serial[serial.strategy == "nonsense"]
    assert len(bad) == 8 and bad.error.str.startswith("strategy: got 'nonsense'").all()
    good = serial[serial.strategy != "nonsense"]
    assert (good.error == "").all() and (good.step_time_s > 0).all()
    assert (good.batch_per_worker == good["workload.batch_per_worker"]).all()
    assert good.key.nunique() == 16
    pooled = sweep(SPEC, tmp_path / "pool.parquet", backend="local", jobs=2)
    pd.testing.assert_frame_equal(stable(pooled), stable(serial))
    pd.testing.assert_frame_equal(stable(pd.read_parquet(tmp_path / "pool.parquet")), stable(serial))
    on_dask = sweep(SPEC, tmp_path / "dask.parquet", backend="dask", jobs=2)
    pd.testing.assert_frame_equal(stable(on_dask), stable(serial))


def test_a_sweep_killed_midway_resumes_to_exactly_the_uninterrupted_rows(tmp_path) -> None:
    """kill -9 while runs are being written; --resume runs only what is missing; the table equals an
    uninterrupted sweep's, no row duplicated or lost."""
    spec = {"base": {"workload": "dlrm-small", "topology": TOPOLOGY, "fidelity": "flow"},
            "grid": {"strategy": ["ps", "des", "dp"], "workers": [8, 16],
                     "workload.batch_per_worker": [128, 256, 512, 1024]}}
    path, out = tmp_path / "sweep.yaml", tmp_path / "rows.parquet"
    path.write_text(yaml.safe_dump(spec))
    command = [sys.executable, "-m", "simulator.cli", "sweep", str(path), "--out", str(out), "--jobs", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = tmp_path / "rows.parquet.journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not journal.exists() or journal.read_text().count("\n") < 3):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = journal.read_text().count("\n")
    assert 3 <= written < 24 and not out.exists()  # killed midway: some rows kept, no table yet
    done = subprocess.run([*command, "--resume", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == {"out": str(out), "runs": 24, "failed": 0, "fidelity": {"flow": 24}}
    resumed = pd.read_parquet(out)
    assert list(resumed.run) == list(range(24)) and resumed.key.is_unique and not journal.exists()
    pd.testing.assert_frame_equal(stable(resumed), stable(sweep(spec, jobs=1)))
    again = subprocess.run([*command, "--resume", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(again.stdout)["runs"] == 24  # a finished sweep resumes to itself, running nothing


def live_children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` and that have not exited (zombies count as exited), from /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        except OSError:
            continue  # exited while listed
        if int(fields[1]) == pid and fields[0] not in "ZX":
            children.append(int(stat.parent.name))
    return children


def pool_workers(pid: int) -> list[int]:
    """``pid``'s live children that are spawned pool workers (not multiprocessing's resource tracker)."""
    def spawned(child: int) -> bool:
        try:
            return b"spawn_main" in (Path("/proc") / str(child) / "cmdline").read_bytes()
        except OSError:
            return False
    return [child for child in live_children(pid) if spawned(child)]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_pool_workers_die_with_a_sweep_killed_with_sigkill(tmp_path) -> None:
    """kill -9 of ``dessim sweep --jobs 2`` while its two pool workers run: within seconds neither is left."""
    spec = {"base": {"workload": "dlrm-small", "topology": TOPOLOGY, "fidelity": "flow"},
            "grid": {"strategy": ["ps", "des"], "workload.batch_per_worker": list(range(64, 64 * 41, 64))}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    process = subprocess.Popen([sys.executable, "-m", "simulator.cli", "sweep", str(path), "--out",
                                str(tmp_path / "rows.parquet"), "--jobs", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(workers) < 2 and process.poll() is None:
            time.sleep(0.05)
            workers = pool_workers(process.pid)
        assert len(workers) == 2 and process.poll() is None  # the pool is up, the sweep still running
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(pid) for pid in workers):
            time.sleep(0.05)
        assert [pid for pid in workers if alive(pid)] == []
    finally:
        process.kill()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_run_keys_follow_the_resolved_parameters() -> None:
    assert run_key({"a": 1, "b": 2}) == run_key({"b": 2, "a": 1}) != run_key({"a": 1, "b": 3})


@pytest.mark.parametrize(("spec", "message"), [
    ({"grid": {"bogus": [1]}}, "sweep:grid: got {'bogus': [1]}; unknown key 'bogus'"),
    ({"grid": {"workers": []}}, "grid.workers is empty"),
    ({"sample": {"n": 2, "ranges": {"workers": [8, 4]}}}, "range of workers: [8, 4]"),
    ({"grid": {"workers": [2]}, "extra": 1}, "sweep:extra: got 1"),
])
def test_bad_sweep_specs_are_one_line_and_exit_2(capsys, tmp_path, spec: dict, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    code, _, err = run_cli(capsys, "sweep", str(path), "--out", str(tmp_path / "r.parquet"))
    assert code == 2 and err.count("\n") == 1 and message in err.replace(str(path), "sweep"), err


def test_an_existing_table_needs_resume_and_a_bad_backend_is_refused(capsys, tmp_path) -> None:
    path, out = tmp_path / "s.yaml", tmp_path / "r.csv"
    path.write_text(yaml.safe_dump({"base": {"topology": TOPOLOGY, "workers": 4}, "grid": {"strategy": ["ps"]}}))
    code, printed, _ = run_cli(capsys, "sweep", str(path), "--out", str(out), "--jobs", "1")
    assert code == 0 and printed == f"wrote {out}: 1 runs, 1 at {pd.read_csv(out).fidelity[0]} fidelity, 0 invalid\n"
    assert pd.read_csv(out).strategy.tolist() == ["ps"]
    code, _, err = run_cli(capsys, "sweep", str(path), "--out", str(out))
    assert code == 2 and "exists" in err and "--resume" in err
    code, _, err = run_cli(capsys, "sweep", str(path), "--out", str(tmp_path / "x.parquet"), "--backend", "spark")
    assert code == 2 and "backend: got 'spark'; allowed: local, dask" in err


@pytest.mark.parametrize("closed_form", [False, True])
def test_report_on_sweep_results(capsys, tmp_path, closed_form: bool) -> None:
    spec = {"base": {"topology": TOPOLOGY, "workload": "dlrm-small", "fidelity": "analytical"},
            "grid": {"strategy": ["ps", "des"], "workers": [2, 4, 8, 16]}, "closed_form": closed_form}
    table = tmp_path / "r.parquet"
    sweep(spec, table, jobs=1)
    code, _, err = run_cli(capsys, "report", str(table), "--out", str(tmp_path / "r.html"))
    assert code == 0, err
    page = (tmp_path / "r.html").read_text()
    assert "Scaling with workers" in page
    assert ("MB per worker per step (mean)" in page) == closed_form


def test_report_on_a_sweep_over_several_inputs_draws_medians(capsys, tmp_path) -> None:
    """Several rows per (strategy, workers): the scaling lines are their medians, computed here."""
    spec = {"base": {"topology": TOPOLOGY, "workload": "dlrm-small"},
            "grid": {"strategy": ["ps", "des"], "workers": [4, 16], "workload.batch_per_worker": [256, 512, 4096]}}
    table = sweep(spec, tmp_path / "r.parquet", jobs=1)
    from simulator.results import plots

    fig = plots.scaling(table)
    des = next(t for t in fig.data if t.name == "des")
    medians = table[table.strategy == "des"].groupby("workers").step_time_s.median() * 1e3
    assert list(des.y) == pytest.approx(list(medians))
    code, _, err = run_cli(capsys, "report", str(tmp_path / "r.parquet"), "--out", str(tmp_path / "r.html"))
    assert code == 0, err
    assert "median over the other swept inputs" in (tmp_path / "r.html").read_text()


def test_the_closed_form_gives_the_engines_rows_for_the_points_it_covers() -> None:
    """Recommender strategies are evaluated in closed form, a group of batch sizes at once, and equal the
    engine's summaries; asynchronous ps (not covered) runs on the engine in the same sweep."""
    spec = {"base": {"workload": "dlrm-small", "topology": "dgx:nodes=2,gpus_per_node=8,nvlink_gbps=3600,"
                                                           "nic_gbps=400,rails=true", "fidelity": "analytical"},
            "grid": {"strategy": ["des", "des-rs", "dp", "ps", "des-a2a", "tw", "twrw"], "ps_mode": ["sync", "async"],
                     "workers": [8, 16], "workload.batch_per_worker": [64, 512, 4096]}}
    engine = sweep(spec, jobs=1)
    quick = sweep({**spec, "closed_form": True}, jobs=1)
    covered = (quick.strategy != "ps") | (quick.ps_mode == "sync")
    assert (quick.evaluation[covered] == "closed form").all() and (quick.evaluation[~covered] == "engine").all()
    assert (engine.evaluation == "engine").all() and (quick.error == "").all()
    for column in ("step_time_s", "samples_per_s", "bytes_on_wire", "bytes_per_worker_mean", "compute_s",
                   "exposed_comm_s", "memory_worker_bytes"):
        assert quick[column].to_numpy(float) == pytest.approx(engine[column].to_numpy(float), rel=1e-9), column
    assert quick.fits_memory.tolist() == engine.fits_memory.tolist()
    assert quick.key.tolist() == engine.key.tolist()


def test_the_readmes_sweep_file_runs_in_closed_form_as_the_engine_runs_its_points(capsys) -> None:
    """docs/examples/sweep.yaml (the README's spec): its 2 x 3 x 2 grid times 20 drawn host rates, at analytical
    fidelity in closed form, gives 240 valid rows; the fastest and slowest of them equal ``dessim run`` of the same
    point (the engine)."""
    from pathlib import Path

    spec = yaml.safe_load((Path(__file__).resolve().parent.parent / "docs" / "examples" / "sweep.yaml").read_text())
    table = sweep({**spec, "base": {**spec["base"], "fidelity": "analytical"}, "closed_form": True}, jobs=1)
    assert len(table) == 2 * 3 * 2 * 20 and (table.error == "").all() and (table.evaluation == "closed form").all()
    assert table["topology.host_gbps"].between(50, 400).all()
    for row in (table.loc[table.step_time_s.idxmin()], table.loc[table.step_time_s.idxmax()]):
        code, out, err = run_cli(capsys, "run", "--workload", "dlrm-small", "--topology", row.topology, "--strategy",
                                 row.strategy, "--workers", str(row.workers), "--set",
                                 f"batch={row['workload.batch_per_worker']}", "--fidelity", "analytical", "--json")
        assert code == 0, err
        assert json.loads(out)["step_time_s"] == pytest.approx(row.step_time_s, rel=1e-9)


def test_report_draws_a_sweep_over_a_topology_field(capsys, tmp_path) -> None:
    spec = {"base": {"topology": TOPOLOGY, "workload": "dlrm-small"},
            "grid": {"strategy": ["ps", "des"], "topology.host_gbps": [50, 100, 400]}}
    sweep(spec, tmp_path / "r.parquet", jobs=1)
    code, _, err = run_cli(capsys, "report", str(tmp_path / "r.parquet"), "--out", str(tmp_path / "r.html"))
    assert code == 0 and "<h2>Scaling with topology.host_gbps</h2>" in (tmp_path / "r.html").read_text(), err
