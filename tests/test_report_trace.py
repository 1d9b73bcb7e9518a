"""``dessim report`` (self-contained HTML) and ``dessim trace`` (Perfetto trace-event JSON) from real runs."""

import json
import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from conftest import run_cli

from simulator.compute.roofline import load_device
from simulator.network.fabric import Fabric
from simulator.results.perfetto import trace_events
from simulator.results.tables import flat_summary
from simulator.run.training import make_cluster, simulate_step
from topologies import load_topology
from workloads import load_workload

SMALL = ["--workload", "dlrm-small", "--topology", "leafspine16-oversub"]


class _Fetches(HTMLParser):
    """Collects every resource an HTML page would load (script src, link href, img src)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src", "iframe": "src"}.get(tag)
        self.urls += [value or "" for name, value in attrs if name == wanted]


def fetched(page: str) -> list[str]:
    parser = _Fetches()
    parser.feed(page)  # script bodies are raw text to the parser: strings inside plotly.js are not tags
    return parser.urls


def test_report_of_a_comparison_is_self_contained_and_has_every_figure(capsys, tmp_path) -> None:
    saved, page = tmp_path / "results", tmp_path / "report.html"
    code, _, err = run_cli(capsys, "compare", *SMALL, "--strategies", "ps,des", "--save", str(saved))
    assert code == 0, err
    summary = json.loads((saved / "summary.json").read_text())
    assert [s["strategy"] for s in summary["strategies"]] == ["ps", "des"]
    assert set(pd.read_parquet(saved / "link_timeline.parquet").strategy) == {"ps", "des"}
    code, out, err = run_cli(capsys, "report", str(saved), "--out", str(page))
    assert code == 0 and "wrote" in out, err
    text = page.read_text()
    headings = re.findall(r"<h2>(.*?)</h2>", text)
    assert headings == ["Summary", "Bytes by category", "Step time breakdown", "ps: per-rank timeline",
                        "ps: link utilization", "des: per-rank timeline", "des: link utilization", "Topology"]
    assert text.count("Plotly.newPlot(") == len(headings) - 1  # every figure, plotly.js inlined once
    assert fetched(text) == []  # no script, style or image from elsewhere: works offline
    for s in summary["strategies"]:  # each row says the fidelity its strategy ran at, as does the title
        assert re.search(rf"<td>{s['strategy']}</td>\s*<td>{s['fidelity']}</td>", text)
    fidelities = " and ".join(dict.fromkeys(s["fidelity"] for s in summary["strategies"]))
    assert f"({fidelities} fidelity)</title>" in text


def test_report_of_a_sweep_table_draws_the_scaling_curves(capsys, tmp_path) -> None:
    rows = []
    for n in (2, 4, 8):
        for strategy in ("ps", "des"):
            cluster = make_cluster(Fabric(load_topology("leafspine16")), strategy, load_device("h100"),
                                   load_device("cpu-server"), workers=n)
            rows.append(flat_summary(simulate_step(load_workload("dlrm-small"), cluster, strategy,
                                                   "analytical").summary))
    table, page = tmp_path / "sweep.csv", tmp_path / "sweep.html"
    pd.DataFrame(rows).to_csv(table, index=False)
    code, _, err = run_cli(capsys, "report", str(table), "--out", str(page))
    assert code == 0, err
    text = page.read_text()
    assert "Sweep: 6 runs" in text and "<h2>Scaling with workers</h2>" in text and text.count("Plotly.newPlot(") == 1


@pytest.mark.parametrize(("args", "message"), [
    (["report", "missing-dir-or-file"], "results: got 'missing-dir-or-file'; allowed: a directory"),
    (["report", "x.csv"], "results: got 'x.csv'; file not found"),
    (["trace", *SMALL, "--out", "trace.txt"], "out: got 'trace.txt'; must end in .json"),
])
def test_bad_report_and_trace_arguments_are_one_line(capsys, args: list[str], message: str) -> None:
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and err.startswith(f"dessim: error: {message}") and err.count("\n") == 1


def test_trace_is_valid_trace_event_json_with_a_track_per_rank_and_stream(capsys, tmp_path) -> None:
    path = tmp_path / "trace.json"
    code, out, err = run_cli(capsys, "trace", *SMALL, "--strategy", "ps", "--out", str(path))
    assert code == 0 and "ui.perfetto.dev" in out, err
    doc = json.loads(path.read_text())
    cluster = make_cluster(Fabric(load_topology("leafspine16-oversub")), "ps", load_device("h100"),
                           load_device("cpu-server"))
    trace = simulate_step(load_workload("dlrm-small"), cluster, "ps", "flow").trace
    events = doc["traceEvents"]
    assert doc["displayTimeUnit"] == "ms"
    slices = [e for e in events if e["ph"] == "X"]
    assert all({"name", "cat", "ts", "dur", "pid", "tid"} <= set(e) for e in slices)
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert set(threads.values()) == {"compute", "comm", "server"}
    assert {(e["pid"], threads[(e["pid"], e["tid"])]) for e in slices} == set(
        zip(trace["rank"], trace.stream.astype(str), strict=True))
    assert sorted(e["dur"] for e in slices) == pytest.approx(sorted((trace.end_s - trace.start_s) * 1e6))
    assert sorted(e["ts"] for e in slices) == pytest.approx(sorted(trace.start_s * 1e6))
    processes = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert processes == {r: f"rank {r}" for r in range(16)}


def test_flows_tie_each_collectives_slices_together() -> None:
    cluster = make_cluster(Fabric(load_topology("leafspine16")), "des", load_device("h100"), load_device("cpu-server"),
                           workers=4)
    trace = simulate_step(load_workload("dlrm-small"), cluster, "des", "analytical").trace
    events = trace_events(trace)["traceEvents"]
    flows = pd.DataFrame([e for e in events if e["ph"] in "stf"])
    collectives = trace[trace.kind == "collective"].groupby(["op", "step"], observed=True).size()
    assert flows.id.nunique() == len(collectives)
    for _, group in flows.groupby("id"):
        assert sorted(group.ph) == sorted(["s", "f"] + ["t"] * (len(group) - 2)) and len(group) == 4
        assert group[group.ph == "s"].ts.iloc[0] == group.ts.min()
