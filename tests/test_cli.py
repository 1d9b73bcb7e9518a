"""The ``dessim`` command: defaults, JSON contract, tables, and one-line errors with exit status 2."""

import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import run_cli as run


def test_default_run_says_what_it_ran() -> None:
    """The README's main command, as a user runs it (real console script, real process)."""
    out = subprocess.run([sys.executable, "-m", "simulator.cli", "collective"], capture_output=True, text=True,
                         check=True).stdout
    assert "Ran allreduce (ring) of 64MiB on 128 ranks" in out
    assert "busbw" in out


def test_json_document_has_the_contract_keys(capsys) -> None:
    code, out, _ = run(capsys, "collective", "--op", "alltoall", "--algo", "direct", "--size", "8MiB",
                       "--topology", "star:hosts=8,link_gbps=100,latency_us=1", "--json")
    assert code == 0
    doc = json.loads(out)
    for key in ("op", "algo", "ranks", "size_bytes", "time_s", "bytes_on_wire", "algbw_GBps", "busbw_GBps",
                "fidelity"):
        assert key in doc
    size, n, bandwidth = 8 * 2**20, 8, 100e9 / 8
    assert doc["time_s"] == pytest.approx(2e-6 + (n - 1) * size / n / bandwidth, rel=1e-9)
    assert doc["bytes_on_wire"] == pytest.approx(n * (n - 1) * size / n)
    assert doc["busbw_GBps"] == pytest.approx(doc["algbw_GBps"] * (n - 1) / n)


def test_pushpull_auto_and_links_table(capsys, tmp_path) -> None:
    links = tmp_path / "links.csv"
    code, out, _ = run(capsys, "collective", "--op", "pushpull", "--servers", "2", "--size", "1MB",
                       "--topology", "star8", "--fidelity", "analytical", "--json", "--links-out", str(links))
    assert code == 0
    doc = json.loads(out)
    assert doc["time_s"] == pytest.approx(2 * (2e-6 + max(1e6, 6 * 1e6 / 2) / 12.5e9), rel=1e-9)
    table = pd.read_csv(links)
    assert len(table) == 16 and table["bytes"].sum() == pytest.approx(2 * 2 * 6e6)
    code, out, _ = run(capsys, "collective", "--algo", "auto", "--size", "4KB", "--topology", "star8", "--json")
    doc = json.loads(out)
    assert doc["algo"] in doc["auto_times_s"] and doc["auto_times_s"][doc["algo"]] == min(doc["auto_times_s"].values())


def test_dmodk_removes_alltoall_contention_on_a_fat_tree(capsys) -> None:
    times = {}
    for ecmp in ("hash", "dmodk"):
        code, out, _ = run(capsys, "collective", "--op", "alltoall", "--size", "16MiB", "--ecmp", ecmp,
                           "--topology", "fattree:k=4,link_gbps=400,latency_us=1", "--json")
        assert code == 0
        times[ecmp] = json.loads(out)["time_s"]
    n, size = 16, 16 * 2**20
    assert times["dmodk"] <= (6e-6 + (n - 1) * size / n / 50e9) * (1 + 1e-9)
    assert times["hash"] > times["dmodk"]


def test_list(capsys) -> None:
    code, out, _ = run(capsys, "list", "topologies")
    assert code == 0 and "fattree" in out and "dgx-h100-4node" in out
    code, out, _ = run(capsys, "list", "collectives")
    assert "alltoall: direct, ring, hierarchical, auto" in out


@pytest.mark.parametrize(("args", "needle"), [
    (["--op", "gather"], "op: got 'gather'"),
    (["--algo", "bogus"], "algo: got 'bogus'"),
    (["--size", "0"], "size: got '0'"),
    (["--size", "-4KB"], "size: got '-4KB'"),
    (["--topology", "star:hosts"], "malformed"),
    (["--topology", "leafspine:leaves=2,host_gbps=-5"], "topology.host_gbps"),
    (["--op", "pushpull", "--servers", "8", "--topology", "star8"], "servers: got 8"),
    (["--fidelity", "packet"], "fidelity: got 'packet'"),
    (["--algo", "hierarchical", "--topology", "star8"], "hierarchical needs nodes"),
    (["--nonsense"], "No such option"),
    (["--ecmp", "random"], "ecmp: got 'random'"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, args: list[str], needle: str) -> None:
    code, _out, err = run(capsys, "collective", *args)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_disconnected_custom_graph_exits_2(capsys, tmp_path) -> None:
    # Two switch islands joined only through a host: hosts never forward, so h0 cannot reach h2.
    doc = ("nodes: [{name: h0, kind: host}, {name: h1, kind: host}, {name: h2, kind: host},"
           " {name: s0, kind: switch}, {name: s1, kind: switch}]\n"
           "links: [{src: h0, dst: s0, link_gbps: 10}, {src: h1, dst: s0, link_gbps: 10},"
           " {src: h1, dst: s1, link_gbps: 10}, {src: h2, dst: s1, link_gbps: 10}]\n")
    (tmp_path / "islands.yaml").write_text(doc)
    code, _, err = run(capsys, "collective", "--topology", str(tmp_path / "islands.yaml"))
    assert code == 2 and "disconnected" in err and len(err.strip().splitlines()) == 1


def test_des_partial_is_chosen_reported_and_refused_where_not_exact(capsys) -> None:
    """``--des-partial``: auto picks DeepFM's first layer (400 + 16 + 1 = 417 values per sample, not 39 x 16 +
    1 = 625), fields keeps 625 (partials' bytes in that ratio); first-layer on DLRM is one line, status 2.
    The sweep and jobs files take the same option."""
    from simulator.run.jobs import load_jobs
    from simulator.run.sweep import DEFAULTS, _resolve

    common = ("--workload", "deepfm-criteo", "--strategy", "des", "--fidelity", "analytical", "--topology",
              "star:hosts=4,link_gbps=100,latency_us=1")
    docs = {}
    for partial in ("auto", "fields"):
        code, out, _ = run(capsys, "run", *common, "--des-partial", partial, "--json")
        assert code == 0
        docs[partial] = json.loads(out)
    assert (docs["auto"]["des_partial"], docs["auto"]["partial_width"]) == ("first-layer", 417)
    assert (docs["fields"]["des_partial"], docs["fields"]["partial_width"]) == ("fields", 625)
    by = {p: d["bytes_by_category"]["des.partials"] for p, d in docs.items()}
    assert by["auto"] / by["fields"] == pytest.approx(417 / 625)
    code, out, _ = run(capsys, "run", *common)
    assert "des: partials summed per sample: 417 values (first-layer; --des-partial)" in out
    code, _, err = run(capsys, "run", "--workload", "dlrm-small", "--strategy", "des", "--des-partial", "first-layer")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("dessim: error: --des-partial: got 'first-layer'; allowed for dlrm (dot): fields, auto")
    code, _, err = run(capsys, "run", "--strategy", "des", "--des-partial", "rows")
    assert (code, err.strip()) == (2, "dessim: error: --des-partial: got 'rows'; allowed: fields, first-layer, auto")
    scenario, _ = _resolve({**DEFAULTS, "workload": "deepfm-criteo", "strategy": "des", "des_partial": "fields"})
    assert scenario.spec.des.partial == "fields"
    jobs = load_jobs({"topology": "leafspine16", "jobs": [{"name": "a", "workload": "deepfm-criteo",
                                                           "strategy": "des", "des": {"partial": "first-layer"}}]})
    assert jobs.jobs[0].des.partial == "first-layer"
