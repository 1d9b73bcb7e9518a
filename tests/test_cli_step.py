"""``dessim run`` and ``dessim compare``: the JSON contract, output files, and one-line errors (exit 2)."""

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import run_cli as run

from simulator.strategies import STRATEGIES

SUMMARY_KEYS = ("step_time_s", "samples_per_s", "bytes_on_wire", "bytes_per_worker", "bytes_by_category",
                "compute_s", "exposed_comm_s", "memory_per_device_bytes", "fits_memory")
SMALL = ["--workload", "dlrm-small", "--topology", "star:hosts=4,link_gbps=100,latency_us=1"]


def test_default_compare_is_ps_vs_des_on_a_16_gpu_leaf_spine() -> None:
    """The README's main command, as a user runs it (real process)."""
    out = subprocess.run([sys.executable, "-m", "simulator.cli", "compare", "--json"], capture_output=True,
                         text=True, check=True).stdout
    doc = json.loads(out)
    assert doc["baseline"] == "ps" and [s["strategy"] for s in doc["strategies"]] == ["ps", "des"]
    for summary in doc["strategies"]:
        for key in SUMMARY_KEYS:
            assert key in summary
        assert summary["workers"] == 16 and "leafspine" in summary["topology"]
    ps, des = doc["strategies"]
    versus = doc["versus_baseline"]
    assert versus["des"]["speedup_x"] == pytest.approx(ps["step_time_s"] / des["step_time_s"], rel=1e-12)
    assert versus["des"]["step_time_change_pct"] == pytest.approx(100 * (des["step_time_s"] / ps["step_time_s"] - 1))
    assert versus["des"]["bytes_on_wire_change_pct"] == pytest.approx(
        100 * (des["bytes_on_wire"] / ps["bytes_on_wire"] - 1))
    assert versus["des"]["bytes_per_worker_max_change_pct"] == pytest.approx(
        100 * (des["bytes_per_worker"]["max"] / ps["bytes_per_worker"]["max"] - 1))
    assert versus["ps"] == {"speedup_x": 1.0, "step_time_change_pct": 0.0, "bytes_on_wire_change_pct": 0.0,
                            "bytes_per_worker_max_change_pct": 0.0, "bytes_on_links_change_pct": 0.0}
    assert "savings" not in doc  # unlabelled fractions, replaced by the labelled figures above
    described = doc["descriptions"]
    assert set(ps) | set(versus["des"]) | {"bytes_on_links"} <= set(described)
    assert all(described[key] for key in set(ps) | set(versus["des"]))
    assert "in %" in described["step_time_change_pct"] and "updates" in described["staleness_mean"]
    assert "sends plus receives" in described["bytes_per_worker"] and "not once per link" in described["bytes_on_wire"]


def test_on_wire_counts_a_message_once_and_bytes_on_links_once_per_hop(capsys, tmp_path) -> None:
    """On a star every message crosses two links (host -> switch -> host): ``bytes_on_links`` is twice
    ``bytes_on_wire`` and the link table's bytes summed over links, per step; the table's note prints it."""
    from simulator.units import format_bytes

    links = tmp_path / "links.csv"
    args = ["compare", *SMALL, "--strategies", "ps,des,dp", "--fidelity", "analytical", "--steps", "2"]
    code, out, err = run(capsys, *args, "--json", "--links-out", str(links))
    assert code == 0, err
    doc = json.loads(out)
    per_link = pd.read_csv(links).groupby("strategy")["bytes"].sum()
    for summary in doc["strategies"]:
        name = summary["strategy"]
        assert doc["bytes_on_links"][name] == pytest.approx(2 * summary["bytes_on_wire"], rel=1e-12)
        assert doc["bytes_on_links"][name] == pytest.approx(per_link[name] / 2, rel=1e-12)
    ps = doc["bytes_on_links"]["ps"]
    assert doc["versus_baseline"]["dp"]["bytes_on_links_change_pct"] == pytest.approx(
        100 * (doc["bytes_on_links"]["dp"] / ps - 1))
    code, out, _ = run(capsys, *args)
    note = " ".join(out.split())
    assert code == 0 and "on wire: bytes all ranks send, each message once; counted on every link it crosses" in note
    assert ", ".join(f"{name} {format_bytes(value)}" for name, value in doc["bytes_on_links"].items()) in note
    assert "per worker: the busiest worker's bytes sent plus received" in note


def test_compare_table_and_trace_and_links_files(capsys, tmp_path) -> None:
    trace, links = tmp_path / "trace.parquet", tmp_path / "links.csv"
    code, out, _ = run(capsys, "compare", *SMALL, "--strategies", "ps,des,des-rs", "--trace-out", str(trace),
                       "--links-out", str(links))
    assert code == 0
    assert "Compared ps, des, des-rs" in out and "des-rs vs ps: step time x" in out
    frame = pd.read_parquet(trace)
    assert set(frame.strategy) == {"ps", "des", "des-rs"}
    assert {"rank", "op", "kind", "category", "start_s", "end_s", "bytes_sent"} <= set(frame.columns)
    assert set(pd.read_csv(links).strategy) == {"ps", "des", "des-rs"}


def test_run_json_and_overrides(capsys) -> None:
    code, out, _ = run(capsys, "run", *SMALL, "--strategy", "des", "--fidelity", "analytical", "--set",
                       "batch=512", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["batch_per_worker"] == 512 and doc["fidelity"] == "analytical"
    assert doc["samples_per_s"] == pytest.approx(4 * 512 / doc["step_time_s"])


@pytest.mark.parametrize(("args", "needle"), [
    (["--strategy", "allreduce-everything"], "strategy: got 'allreduce-everything'"),
    (["--workload", "gpt5"], "workload: got 'gpt5'"),
    (["--set", "batch_per_worker=-3"], "batch_per_worker"),
    (["--set", "dim=0"], "dim"),
    (["--set", "zipf_alpha=0"], "zipf_alpha"),
    (["--set", "colour=blue"], "set"),
    (["--strategy", "ps", "--servers", "9"], "servers: got 9"),
    (["--strategy", "ps", "--placement", "dedicated", "--servers", "4"], "servers: got 4"),
    (["--workers", "0"], "workers: got 0"),
    (["--device", "tpu9"], "device: got 'tpu9'"),
    (["--ps-mode", "eventually"], "mode"),
    (["--steps", "0"], "steps: got 0"),
    (["--fidelity", "packet"], "fidelity: got 'packet'"),
    (["--trace-out", "trace.txt"], "trace-out"),
    (["--servers", "4"], "--servers: got 4; allowed only for ps and ps-fc (omit it); not used by des"),
])
def test_bad_step_input_is_one_line_and_exit_2(capsys, args: list[str], needle: str) -> None:
    code, _out, err = run(capsys, "run", *SMALL, *args)
    assert code == 2, err
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_servers_apply_to_ps_strategies_only(capsys) -> None:
    """--servers where no strategy has servers is refused, naming the option; beside ps, it applies to ps."""
    code, _, err = run(capsys, "compare", *SMALL, "--strategies", "des,dp", "--servers", "2")
    assert code == 2 and err == ("dessim: error: --servers: got 2; allowed only for ps and ps-fc (omit it); not used "
                                 "by des, dp\n")
    code, out, _ = run(capsys, "compare", *SMALL, "--strategies", "ps,des", "--servers", "2", "--fidelity",
                       "analytical", "--json")
    assert code == 0 and [s["servers"] for s in json.loads(out)["strategies"]] == [2, 0]


def test_hotness_above_rows_without_replacement_is_refused(capsys, tmp_path) -> None:
    code, _out, err = run(capsys, "run", *SMALL, "--set", "tables.t0.replacement=false", "--set",
                          "tables.t0.rows=4", "--set", "tables.t0.hotness=8")
    assert code == 2 and "hotness" in err and len(err.strip().splitlines()) == 1


def test_calibration_profile_changes_the_compute_model(capsys, tmp_path) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"devices": {"h100": {"eff_flops": 0.006, "eff_mem": 0.008, "eff_gather": 0.003}}}))
    base_args = ["run", *SMALL, "--fidelity", "analytical", "--json"]
    _, out, _ = run(capsys, *base_args)
    _, slow, _ = run(capsys, *base_args, "--calibration", str(profile))
    assert json.loads(slow)["compute_s"] > 5 * json.loads(out)["compute_s"]
    code, _, err = run(capsys, *base_args, "--calibration", str(tmp_path / "missing.json"))
    assert code == 2 and "file not found" in err


def test_list_workloads_hardware_strategies(capsys) -> None:
    assert "dlrm-criteo-tb" in run(capsys, "list", "workloads")[1]
    assert "h100" in run(capsys, "list", "hardware")[1]
    out = run(capsys, "list", "strategies")[1]
    assert all(f"{name}:" in out for name in STRATEGIES)


def test_the_engine_reports_progress_up_to_every_op_and_rank() -> None:
    from simulator.compute.roofline import load_device
    from simulator.network.fabric import Fabric
    from simulator.run.training import make_cluster, simulate_step
    from topologies import load_topology
    from workloads import load_workload

    seen: list[tuple[int, int]] = []
    cluster = make_cluster(Fabric(load_topology("leafspine16")), "ps", load_device("h100"), load_device("cpu-server"))
    report = simulate_step(load_workload("dlrm-small"), cluster, "ps", "flow",
                           progress=lambda d, t: seen.append((d, t)))
    done = [d for d, _ in seen]
    assert done == sorted(done) and seen[-1] == (len(report.trace), len(report.trace))
    assert {t for _, t in seen} == {len(report.trace)} and len(seen) <= 102  # about every 1%


def test_progress_bars_draw_on_a_terminal_and_stay_silent_otherwise(capsys) -> None:
    import io

    from rich.console import Console

    from simulator.console import progress_bar

    screen = io.StringIO()
    with progress_bar(True, Console(file=screen, force_terminal=True, width=100)) as update:
        update("simulating des", 5, 10)
        update.note("des: flow level is estimated at 40 s")
    assert "simulating des" in screen.getvalue() and "5/10" in screen.getvalue()  # drawn when the bar stops
    assert "dessim: des: flow level is estimated at 40 s" in screen.getvalue()  # above the bar
    with progress_bar(False) as update:
        update("simulating des", 5, 10)
    code, out, err = run(capsys, "compare", *SMALL)  # not a terminal, shorter than 10 s: stderr empty
    assert code == 0 and err == "" and "simulating" not in out


def test_off_a_terminal_a_progress_line_tells_how_far_and_estimates_the_total() -> None:
    """A fake clock: before any update a line says so; then each line scales the label's time so far by total /
    done; a label's time starts when the previous label's last update came."""
    import io

    from simulator.console import ProgressLines

    now = [100.0]
    out = io.StringIO()
    lines = ProgressLines(out, clock=lambda: now[0])
    now[0] = 105.0
    lines.tick()
    for t, label, done, total in ((102.0, "simulating ps", 0, 1000), (112.0, "simulating ps", 250, 1000)):
        now[0] = t
        lines(label, done, total)
    lines.tick()
    for t, label, done, total in ((148.0, "simulating ps", 1000, 1000), (150.0, "simulating des", 100, 400)):
        now[0] = t
        lines(label, done, total)
    lines.tick()
    lines.note("des: flow level is estimated at 40 s")
    assert out.getvalue().splitlines() == [
        "dessim: preparing, 5 s so far (nothing to count yet)",
        "dessim: simulating ps: 250 of 1,000 (25%) after 12 s; about 48 s in all, 36 s to go",  # 12 x 1000 / 250
        "dessim: simulating des: 100 of 400 (25%) after 2 s; about 8 s in all, 6 s to go",  # from 148 s: 2 x 4
        "dessim: des: flow level is estimated at 40 s"]


def test_progress_lines_come_every_interval_while_the_work_lasts_and_stop_with_it() -> None:
    import io
    import time

    from simulator.console import progress_bar

    out = io.StringIO()
    with progress_bar(False, stream=out, interval_s=0.02) as update:
        update("runs", 3, 12)
        time.sleep(0.2)
    written = out.getvalue()
    time.sleep(0.1)
    assert out.getvalue() == written  # the timer stopped with the work
    assert written and all(line.startswith("dessim: runs: 3 of 12 (25%) after ") for line in written.splitlines())


def test_a_run_estimated_long_says_so_at_its_start_and_names_the_faster_option(capsys, monkeypatch) -> None:
    """With the threshold at 0 s every flow-level run is long: its estimate (``flow_cost_s`` of the lowered step's
    schedules, computed here apart) goes to stderr before the run, naming --fidelity analytical; stdout's JSON is
    untouched, and an analytical run says nothing."""
    import simulator.run.fidelity as fidelity
    from simulator.run.spec import RunSpec, resolve
    from simulator.strategies import lower

    monkeypatch.setattr(fidelity, "LONG_RUN_S", 0.0)
    spec = RunSpec.from_flat({"workload": "dlrm-small", "topology": SMALL[3], "strategy": "des"})
    scenario = resolve(spec)
    graph = lower("des", scenario.workload, scenario.cluster("des"), 1, spec.options).graph
    estimate_s = fidelity.flow_cost_s([op.schedule for op in graph.ops if op.schedule is not None])
    code, out, err = run(capsys, "run", *SMALL, "--strategy", "des", "--fidelity", "flow", "--json")
    assert code == 0 and json.loads(out)["fidelity"] == "flow"
    assert err == (f"dessim: des: flow level (as --fidelity flow asks) is estimated at {estimate_s:.3g} s on a "
                   "2-core machine; --fidelity analytical takes seconds at most, with equal shares on each link\n")
    code, out, err = run(capsys, "compare", *SMALL, "--strategies", "des")
    assert code == 0 and "within --fidelity auto's 60 s budget" in err and "(or --budget-s 0, for auto" in err
    assert "dessim:" not in out
    code, _, err = run(capsys, "run", *SMALL, "--strategy", "des", "--fidelity", "analytical")
    assert code == 0 and err == ""


def test_headers_keep_machine_readable_strings_whole_at_80_columns() -> None:
    """The default topology's spec (84 characters) is one line of its own in an 80-column console; the prose
    and the table fit the width."""
    import io

    from rich.console import Console

    from simulator.console import print_summary
    from simulator.run.spec import DEFAULT_TOPOLOGY, RunSpec, simulate_all

    reports = simulate_all(RunSpec.from_flat({"workload": "dlrm-small", "fidelity": "analytical"}))
    screen = io.StringIO()
    print_summary(reports, "Compared ps, des", Console(file=screen, width=80))
    lines = screen.getvalue().splitlines()
    assert len(DEFAULT_TOPOLOGY) > 80 and f"  topology: {DEFAULT_TOPOLOGY}" in lines
    assert "  workload: dlrm-small (dlrm)" in lines
    assert all(len(line) <= 80 for line in lines if DEFAULT_TOPOLOGY not in line)
