"""The ``dessim`` command: defaults, JSON contract, tables, and one-line errors with exit status 2."""

import importlib.metadata
import json
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_cli as run

from simulator.compute import list_devices
from simulator.errors import TORCH_INSTALL


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
    assert "custom graphs: a YAML file of nodes [{name, kind: host|switch}]" in out and "link_gbps" in out
    code, out, _ = run(capsys, "list", "collectives")
    assert "alltoall: direct, ring, hierarchical, auto" in out


def test_list_topologies_shows_every_builder_parameter_with_its_unit_and_signature_default(capsys) -> None:
    """Each builder's block lists its keyword parameters in signature order, each with the default the signature
    gives (``derived`` for None) and the unit its name carries."""
    import inspect

    from topologies import BUILDERS

    out = run(capsys, "list", "topologies")[1]
    blocks = {line.split(":")[0]: [] for line in out.splitlines() if line.split(":")[0] in BUILDERS}
    name = None
    for line in out.splitlines():
        name = line.split(":")[0] if line.split(":")[0] in BUILDERS else name if line.startswith("  ") else None
        if name and line.startswith("  "):
            blocks[name].append(line.strip())
    assert list(blocks) == list(BUILDERS)
    for builder, lines in blocks.items():
        params = inspect.signature(BUILDERS[builder]).parameters
        assert [line.split(" (")[0] for line in lines] == list(params), builder
        for line, (param, p) in zip(lines, params.items(), strict=True):
            default = "derived" if p.default is None else str(p.default)
            assert line.endswith(f", default {default})"), line
            unit = {"_gbps": "in Gb/s", "_us": "in µs"}.get(param[param.rfind("_"):], "")
            assert (unit in line) if unit else (", in " not in line), line
    assert "  link_gbps (a number >= 1e-06 and <= 1e+07, in Gb/s, default 100.0)" in out


def test_list_keys_covers_run_workload_table_device_sweep_and_job_keys(capsys) -> None:
    """Every field of every spec model a person writes appears once in its section, with its type; units are in
    a field's line where its name carries one."""
    from simulator.compute.roofline import Device
    from simulator.run.jobs import JobsSpec
    from simulator.run.spec import KEYS
    from simulator.run.sweep import Sample, SweepSpec
    from workloads import ClassificationWorkload, Table, Workload

    out = run(capsys, "list", "keys")[1]
    sections = {}
    for line in out.splitlines():
        if not line.startswith("  "):
            title = line.split(" -- ")[0]
            sections[title] = []
        else:
            sections[title].append(line.strip().split(" (")[0])
    expected = {"Run keys": list(KEYS), "Workload keys": list(Workload.model_fields),
                "Table keys": list(Table.model_fields),
                "Extreme-classification workload keys": list(ClassificationWorkload.model_fields),
                "Device keys": list(Device.model_fields),
                "Sweep files (dessim sweep SPEC.yaml)": list(SweepSpec.model_fields),
                "Sweep sample": list(Sample.model_fields),
                "Jobs files (dessim jobs SPEC.yaml)": list(JobsSpec.model_fields),
                "Job keys": ["name", "hosts", "start_s"]}
    assert sections == expected
    assert "  budget_s (--budget-s; a number > 0 and <= 86400, in s, default 60.0): " in out
    assert "  hotness (an integer >= 1, default 1): IDs per sample per field" in out
    assert "  popularity (uniform | zipf, default uniform): " in out
    assert "  mem_bandwidth_GBps (a number > 0, in GB/s, default required): " in out
    assert "closed_form (bool, default False): " in out and "topology.PARAM" in out and "workload.KEY" in out


@pytest.mark.parametrize(("args", "needle"), [
    (["--op", "gather"], "op: got 'gather'"),
    (["--algo", "bogus"], "algo: got 'bogus'"),
    (["--size", "0"], "size: got '0'"),
    (["--size", "-4KB"], "size: got '-4KB'"),
    (["--size", "1e30"], "--size: got '1e30'; allowed: 1 B to 1 PiB per rank"),
    (["--size", "0.4", "--fidelity", "analytical"], "--size: got '0.4'; allowed: 1 B to 1 PiB per rank"),
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


@pytest.mark.parametrize("size", ["1", "1PiB"])
def test_the_size_bounds_themselves_run(capsys, size: str) -> None:
    """1 B and 1 PiB per rank: a ring all-reduce on 8 hosts of one switch, 2 (n - 1) steps of S/n over 100 Gb/s
    with 2 us of latency (two 1 us hops)."""
    code, out, _ = run(capsys, "collective", "--size", size, "--topology", "star8", "--fidelity", "analytical",
                       "--json")
    doc, size_bytes, n = json.loads(out), {"1": 1, "1PiB": 2**50}[size], 8
    assert code == 0 and doc["size_bytes"] == size_bytes
    assert doc["time_s"] == pytest.approx(2 * (n - 1) * (2e-6 + size_bytes / n / 12.5e9), rel=1e-9)


COMMANDS = ["collective", "run", "compare", "trace", "sweep", "jobs", "report", "list", "calibrate", "validate"]


def test_version_and_h_for_help(capsys) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out == f"dessim {importlib.metadata.version('dessim')}\n"
    assert run(capsys, "-h") == run(capsys, "--help") and "Commands" in run(capsys, "-h")[1]
    assert run(capsys, "sweep", "-h") == run(capsys, "sweep", "--help")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_pages_read_as_typed(capsys, monkeypatch, command: str) -> None:
    """Flags show no value type (``--json``, not ``--json <bool>``); usage lines name arguments as metavars
    (``SPEC``), without typer's braces."""
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run(capsys, command, "--help")
    usage = next(line for line in out.splitlines() if "Usage:" in line)
    assert code == 0 and "<bool>" not in out and "{" not in usage
    assert usage.split()[-1] == {"sweep": "SPEC", "jobs": "SPEC", "report": "RESULTS"}.get(command, usage.split()[-1])


def test_device_help_lists_every_preset_and_file_formats_point_to_the_docs(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    out = " ".join(run(capsys, "run", "--help")[1].split())
    assert f"a preset ({', '.join(list_devices())})" in out and "cpu-server" in list_devices()
    for command in ("sweep", "jobs"):
        out = " ".join(run(capsys, command, "--help")[1].split())
        assert "docs/KEYS.md" in out and "dessim list keys" in out and ".py" not in out


def test_without_torch_the_executor_says_how_to_install_it(capsys, monkeypatch) -> None:
    """``python -m simulator.executor.run`` and ``dessim calibrate`` where torch does not import: one line, exit
    status 2, with the README's install command (the CPU pin included)."""
    monkeypatch.setitem(sys.modules, "torch", None)  # ``import torch`` raises ImportError
    line = f"executor: got 'torch'; not installed; install the extra (CPU build): {TORCH_INSTALL}\n"
    with pytest.raises(SystemExit) as done, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy's, when the module was imported already
        runpy.run_module("simulator.executor.run", run_name="__main__")
    assert done.value.code == 2 and capsys.readouterr().err == f"error: {line}"
    assert run(capsys, "calibrate", "--worlds", "1") == (2, "", f"dessim: error: {line}")
    assert f"`{TORCH_INSTALL}`" in (Path(__file__).resolve().parent.parent / "README.md").read_text()
