"""Hostile input (issue 8 groundwork): generated invalid and extreme specs get one clear error line and exit
status 2, never a traceback or a hang; valid ones run."""

import json
import math
import signal
from contextlib import contextmanager

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.cli import main

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")  # a warning on stderr would break the one line

# Sizes are tiny or absurd: a valid but huge cluster (600k hosts builds in seconds) is not hostile, only slow.
EXTREMES = st.one_of(st.sampled_from([0, -1, 1, 2, 10 ** 15, 1e-300, 1e300, math.nan, math.inf, -math.inf, True,
                                      False, None, "", "abc", "1e999", [], {}, [1, 2]]),
                     st.integers(min_value=-1000, max_value=64), st.integers(min_value=10 ** 7, max_value=10 ** 15),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
DOCUMENTS = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                         max_leaves=12)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
WORKLOAD_KEYS = ["batch", "rows", "dim", "hotness", "n_tables", "zipf_alpha", "dtype_bytes", "precision", "comm_dtype"]
TOPOLOGY_FIELDS = {"star": ["hosts", "link_gbps", "latency_us"],
                   "leafspine": ["leaves", "hosts_per_leaf", "spines", "host_gbps", "uplink_gbps", "latency_us"],
                   "fattree": ["k", "link_gbps", "latency_us"]}


@contextmanager
def time_limit(seconds: int):
    """Fail, rather than hang, if the block takes longer than ``seconds``."""
    def stop(*_: object) -> None:
        raise TimeoutError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def outcome(capsys, *args: str) -> tuple[int, str, str]:
    with time_limit(20), pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    return done.value.code, out, err


def assert_clean(code: int, err: str) -> None:
    """Either it ran (0), or it said why in one line and exited 2."""
    assert code in (0, 2), err
    if code == 2:
        assert err.startswith("dessim: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


@SETTINGS
@given(document=DOCUMENTS)
def test_any_yaml_document_as_a_workload_file(capsys, tmp_path, document: object) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(document))
    code, _, err = outcome(capsys, "run", "--workload", str(path), "--fidelity", "analytical",
                           "--topology", "star:hosts=4,link_gbps=100,latency_us=1")
    assert_clean(code, err)


@SETTINGS
@given(document=DOCUMENTS)
def test_any_yaml_document_as_a_topology_or_a_sweep(capsys, tmp_path, document: object) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(document))
    code, _, err = outcome(capsys, "run", "--topology", str(path), "--workload", "dlrm-small", "--fidelity",
                           "analytical")
    assert_clean(code, err)
    code, _, err = outcome(capsys, "sweep", str(path), "--out", str(tmp_path / "r.parquet"), "--jobs", "1")
    assert_clean(code, err)
    (tmp_path / "r.parquet").unlink(missing_ok=True)
    (tmp_path / "r.parquet.journal.jsonl").unlink(missing_ok=True)


@SETTINGS
@given(key=st.sampled_from(WORKLOAD_KEYS), value=EXTREMES)
def test_extreme_workload_parameters(capsys, key: str, value: object) -> None:
    code, _, err = outcome(capsys, "run", "--workload", f"dlrm:{key}={json.dumps(value)}", "--fidelity",
                           "analytical", "--topology", "star:hosts=4,link_gbps=100,latency_us=1")
    assert_clean(code, err)


@SETTINGS
@given(builder=st.sampled_from(sorted(TOPOLOGY_FIELDS)), data=st.data())
def test_extreme_topology_parameters(capsys, builder: str, data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(TOPOLOGY_FIELDS[builder]))
    value = data.draw(EXTREMES)
    code, _, err = outcome(capsys, "run", "--topology", f"{builder}:{key}={json.dumps(value)}", "--workload",
                           "dlrm-small", "--fidelity", "analytical", "--workers", "2")
    assert_clean(code, err)


@SETTINGS
@given(option=st.sampled_from(["--workers", "--servers", "--steps", "--rate-tolerance", "--knn-k", "--topk-ratio",
                               "--precision", "--comm-dtype"]),
       value=st.one_of(st.integers(-1000, 64), st.integers(10 ** 6, 10 ** 12), st.floats(), st.text(max_size=6)))
def test_extreme_command_line_numbers(capsys, option: str, value: object) -> None:
    code, _, err = outcome(capsys, "run", "--workload", "dlrm-small", "--topology",
                           "star:hosts=4,link_gbps=100,latency_us=1", "--fidelity", "analytical", option, str(value))
    assert_clean(code, err)


@pytest.mark.parametrize("graph", [
    {"nodes": [{"id": "a", "kind": "host"}, {"id": "b", "kind": "host"}], "links": []},  # disconnected
    {"nodes": [{"id": "a", "kind": "host"}, {"id": "b", "kind": "host"}, {"id": "s", "kind": "switch"}],
     "links": [{"source": "a", "target": "s", "link_gbps": 100}, {"source": "s", "target": "s", "link_gbps": 1}]},
    {"nodes": [{"id": "a", "kind": "host"}, {"id": "b", "kind": "host"}],
     "links": [{"source": "a", "target": "b", "link_gbps": -3, "latency_us": 1}]},
])
def test_broken_custom_graphs(capsys, tmp_path, graph: dict) -> None:
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"directed": False, "multigraph": False, "graph": {}, **graph}))
    code, _, err = outcome(capsys, "run", "--topology", str(path), "--workload", "dlrm-small", "--fidelity",
                           "analytical")
    assert code == 2 and err.startswith("dessim: error: ") and err.count("\n") == 1, err


# A grid is either small (it runs) or past the limit (refused before anything runs): 6 keys of 20-40 values.
GRIDS = st.one_of(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=3),
                  st.lists(st.integers(min_value=20, max_value=40), min_size=6, max_size=6))


@SETTINGS
@given(sizes=GRIDS, jobs=EXTREMES)
def test_huge_sweeps_and_odd_job_counts(capsys, tmp_path, sizes: list[int], jobs: object) -> None:
    keys = ["workers", "steps", "topology.link_gbps", "workload.batch_per_worker", "knn_k", "servers"]
    grid = {key: list(range(1, size + 1)) for key, size in zip(keys, sizes, strict=False)}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"base": {"topology": "star:hosts=2,link_gbps=100", "workload": "lr-criteo"},
                                    "grid": grid}))
    out = tmp_path / "r.parquet"
    out.unlink(missing_ok=True)
    code, _, err = outcome(capsys, "sweep", str(path), "--out", str(out), "--jobs", str(jobs))
    assert_clean(code, err)
    if math.prod(sizes) > 10 ** 7:  # refused, for that or for a bad --jobs, before anything runs
        assert code == 2 and ("at most 10,000,000 points" in err or "jobs" in err), err


FAULT_TEXTS = st.one_of(st.text(max_size=20), st.builds(lambda a, b, f: f"{a}-{b}={f}",
                                                        st.sampled_from(["h0", "sw0", "leaf*", "*", "x", ""]),
                                                        st.sampled_from(["sw0", "h1", "spine0", "*", ""]),
                                                        EXTREMES.map(str)))
STRAGGLER_TEXTS = st.one_of(st.text(max_size=20),
                            st.builds(lambda r, f: f"{r}={f}", st.sampled_from(["0", "0-3", "3-1", "99", "a", ""]),
                                      EXTREMES.map(str)),
                            st.builds(lambda k, p: f"{k}:{p}", st.sampled_from(["bernoulli", "lognormal", "x"]),
                                      st.sampled_from(["p=0.5,factor=2", "p=2", "sigma=1e9", "sigma=nan", "seed=-1",
                                                       "factor=0", "p=0.1,factor=3,seed=1", "", "k"])))


@SETTINGS
@given(fault=FAULT_TEXTS, straggler=STRAGGLER_TEXTS, device=st.sampled_from(["0-1=a100", "0=zz", "x", "9=h100", ""]))
def test_any_fault_straggler_or_rank_device(capsys, fault: str, straggler: str, device: str) -> None:
    code, _, err = outcome(capsys, "run", "--workload", "dlrm-small", "--fidelity", "analytical", "--topology",
                           "star:hosts=4,link_gbps=100,latency_us=1", "--fault", fault, "--straggler", straggler,
                           "--rank-device", device)
    assert_clean(code, err)


@SETTINGS
@given(document=DOCUMENTS, job=st.dictionaries(st.sampled_from(["name", "workload", "strategy", "hosts", "workers",
                                                                "steps", "start_s", "ps", "stragglers", "set"]),
                                               EXTREMES, max_size=5))
def test_any_jobs_file(capsys, tmp_path, document: object, job: dict) -> None:
    """Any YAML document, and a jobs spec with extreme field values, as ``dessim jobs``' file."""
    for i, doc in enumerate([document, {"topology": "star:hosts=4", "jobs": [
            {"name": "a", "workload": "dlrm-small", "strategy": "dp", **job}]}]):
        path = tmp_path / f"j{i}.yaml"
        path.write_text(yaml.safe_dump(doc))
        code, _, err = outcome(capsys, "jobs", str(path))
        assert_clean(code, err)
