"""Compute precision and communication dtype (``workloads.precision``): GEMM times at each preset's
tensor-core peak, bytes on the wire in the communication dtype, mixed-precision memory, all against
formulas written out here; bad input is one line and exit status 2; fp32 changes nothing."""

import json

import numpy as np
import pytest
from conftest import run_cli, sent, star_graph

from simulator.compute.roofline import load_device
from simulator.errors import SpecError
from simulator.network.fabric import Fabric
from simulator.run.closed_form import STRATEGIES, step_times
from simulator.run.jobs import simulate_jobs
from simulator.run.sweep import sweep
from simulator.run.training import make_cluster, simulate_step
from simulator.strategies import REGISTRY, StrategyOptions
from simulator.strategies.fc import FCOptions
from workloads import ClassificationWorkload, load_workload

EFF_FLOPS, EFF_MEM, LAUNCH_S = 0.6, 0.8, 5e-6  # the GPU presets' efficiencies and launch cost
# peak FLOP/s by device and precision: the datasheets' dense figures (simulator/compute/presets/*.yaml)
PEAKS = {("h100", "fp32"): 66.9e12, ("h100", "tf32"): 494.7e12, ("h100", "bf16"): 989.4e12,
         ("h100", "fp16"): 989.4e12, ("a100", "fp32"): 19.5e12, ("a100", "tf32"): 156e12,
         ("a100", "bf16"): 312e12, ("a100", "fp16"): 312e12, ("v100", "fp32"): 15.7e12, ("v100", "fp16"): 125e12}
BANDWIDTH = {"h100": 3350e9, "a100": 2039e9, "v100": 900e9}
N, B, D, C, M = 4, 256, 2048, 1_000_000, 1_000_000  # workers, batch per worker, feature dim, classes, params
ACT = 1e6  # backbone activation bytes kept per sample, fp32


def xc(**fields: object) -> ClassificationWorkload:
    return ClassificationWorkload(name="xc-test", backbone_flops_per_sample=1e9, backbone_params=M,
                                  backbone_activation_bytes_per_sample=ACT, feature_dim=D, classes=C,
                                  batch_per_worker=B, optimizer="momentum", **fields)


def simulate(workload: object, strategy: str, device: str = "h100", n: int = N, **fc: object):
    cluster = make_cluster(Fabric(star_graph(n)), strategy, load_device(device), load_device("cpu-server"))
    cluster.collective_algorithm = "ring"  # bytes by the ring's convention, as the formulas
    options = StrategyOptions.default()
    options.fc = FCOptions(**fc)
    return simulate_step(workload, cluster, strategy, "analytical", options=options)


def op_s(report, op: str) -> float:
    trace = report.trace
    rows = trace[(trace.op == op) & (trace["rank"] == 0)]
    return float((rows.end_s - rows.start_s).sum())


@pytest.mark.parametrize(("device", "precision"), [("h100", "fp32"), ("h100", "tf32"), ("h100", "bf16"),
                                                   ("h100", "fp16"), ("a100", "tf32"), ("a100", "bf16"),
                                                   ("v100", "fp16")])
def test_the_fc_gemm_runs_at_the_precisions_peak(device: str, precision: str) -> None:
    """mp-fc's FC forward on a worker: 2 B_global D C/N FLOPs at 0.6 x the preset's peak for the precision;
    compute-bound here (its weights, features and logits move in less time)."""
    report = simulate(xc(precision=precision), "mp-fc", device)
    flops = 2 * (N * B) * D * (C / N)
    features = 2 if precision in ("bf16", "fp16") else 4
    moved = (C / N) * D * 4 + N * B * D * features + N * B * (C / N) * 4  # fp32 weights and logits
    compute_s = flops / (EFF_FLOPS * PEAKS[device, precision])
    assert compute_s > moved / (EFF_MEM * BANDWIDTH[device])
    assert op_s(report, "fc.forward") == pytest.approx(compute_s + LAUNCH_S, rel=1e-12)
    assert op_s(report, "fc.backward") == pytest.approx(2 * (compute_s + LAUNCH_S), rel=1e-12)


def test_bf16_on_h100_is_989_4_tflops() -> None:
    """The issue's example: a GEMM at bf16 on H100 = flops / (0.6 x 989.4e12), not / (0.6 x 66.9e12)."""
    fp32, bf16 = simulate(xc(), "mp-fc"), simulate(xc(precision="bf16"), "mp-fc")
    flops = 2 * (N * B) * D * (C / N)
    assert op_s(fp32, "fc.forward") == pytest.approx(flops / (0.6 * 66.9e12) + LAUNCH_S, rel=1e-12)
    assert op_s(bf16, "fc.forward") == pytest.approx(flops / (0.6 * 989.4e12) + LAUNCH_S, rel=1e-12)


def test_bf16_communication_halves_features_gradients_and_the_backbone_allreduce() -> None:
    """Default comm dtype under bf16: 2 bytes per value; labels (int64) and softmax scalars (fp32) keep
    theirs; ``comm_dtype: fp32`` sends fp32 again; ``fp16_comm`` is ``comm_dtype: fp16``."""
    share = (N - 1) / N
    full, half = simulate(xc(), "mp-fc"), simulate(xc(precision="bf16"), "mp-fc")
    wide = simulate(xc(precision="bf16", comm_dtype="fp32"), "mp-fc")
    for report, s in ((full, 4), (half, 2), (wide, 4)):
        assert sent(report, "fc.features") == pytest.approx(share * N * B * D * s)
        assert sent(report, "fc.feature_grad") == pytest.approx(share * N * B * D * s)
        assert sent(report, "backbone.allreduce") == pytest.approx(2 * share * M * s)
        assert sent(report, "fc.labels") == pytest.approx(share * N * B * 8)
        assert sent(report, "fc.softmax") == pytest.approx(2 * 2 * share * N * B * 4)
    legacy = simulate(xc(), "mp-fc", fp16_comm=True)
    assert legacy.summary["bytes_by_category"] == simulate(xc(comm_dtype="fp16"), "mp-fc").summary["bytes_by_category"]


@pytest.mark.parametrize(("strategy", "halved", "kept"), [
    ("dp", ("dense.allreduce", "sparse.allreduce"), ()),
    ("des", ("dense.allreduce", "des.partials", "des.partials_grad"), ("des.ids",)),
    ("ps", ("dense.pull", "dense.push"), ()),
    ("tw", ("dense.allreduce", "sparse.pooled", "sparse.pooled_grad"), ("sparse.ids", "sparse.lengths")),
])
def test_recommender_values_on_the_wire_halve_with_bf16(strategy: str, halved: tuple[str, ...],
                                                        kept: tuple[str, ...]) -> None:
    full = simulate(load_workload("dlrm-small"), strategy).summary["bytes_by_category"]
    half = simulate(load_workload("dlrm-small", ["precision=bf16"]), strategy).summary["bytes_by_category"]
    for category in halved:
        assert half[category] == pytest.approx(full[category] / 2, rel=1e-12), category
    for category in kept:
        assert half[category] == pytest.approx(full[category], rel=1e-12), category


def test_dp_dense_allreduce_is_dense_params_times_two_bytes() -> None:
    workload = load_workload("dlrm-small", ["precision=bf16"])
    report = simulate(workload, "dp")
    assert sent(report, "dense.allreduce") == pytest.approx(2 * (N - 1) / N * workload.dense_params * 2)


def test_mixed_precision_memory_keeps_fp32_masters_and_bf16_activations() -> None:
    """An mp-fc worker under bf16: fp32 backbone and FC shard (weights, gradients, momentum), bf16
    activations and gathered features, fp32 logits (the softmax runs in fp32)."""
    parts = simulate(xc(precision="bf16"), "mp-fc").summary["memory"]["worker"]["parts"]
    expected = {"backbone": M * 4 * 3, "activations": B * ACT / 2, "logits": N * B * (C / N) * 4,
                "fc": C / N * D * 4 * 3, "features": 2 * N * B * D * 2}
    assert parts == pytest.approx(expected, rel=1e-12)


def test_recommender_activations_halve_and_parameters_do_not() -> None:
    fp32 = simulate(load_workload("dlrm-small"), "dp").summary["memory"]["worker"]["parts"]
    bf16 = simulate(load_workload("dlrm-small", ["precision=bf16"]), "dp").summary["memory"]["worker"]["parts"]
    assert bf16["activations"] == pytest.approx(fp32["activations"] / 2)
    assert bf16["dense"] == fp32["dense"] and bf16["tables"] == fp32["tables"]
    workload = load_workload("dlrm-small")
    assert bf16["dense"] == workload.dense_params * 4 * (2 + workload.optimizer_slots)


def test_tf32_changes_the_peak_only() -> None:
    fp32, tf32 = simulate(xc(), "mp-fc"), simulate(xc(precision="tf32"), "mp-fc")
    assert tf32.summary["bytes_by_category"] == fp32.summary["bytes_by_category"]
    assert tf32.summary["memory"] == fp32.summary["memory"]
    assert tf32.summary["step_time_s"] < fp32.summary["step_time_s"]


def test_fp32_is_the_default_and_changes_nothing(capsys) -> None:
    """xc-1e8 under mp-fc on the default topology: the step time before precision existed."""
    steps = []
    for extra in ([], ["--precision", "fp32"]):
        code, out, err = run_cli(capsys, "run", "--workload", "xc-1e8", "--strategy", "mp-fc", "--json", *extra)
        assert code == 0, err
        summary = json.loads(out)
        assert summary["precision"] == "fp32"
        steps.append(summary["step_time_s"])
    assert steps == [pytest.approx(0.31795030015660114, rel=1e-12)] * 2
    code, out, err = run_cli(capsys, "run", "--workload", "xc-1e8", "--strategy", "mp-fc", "--json",
                             "--precision", "bf16")
    assert code == 0 and json.loads(out)["step_time_s"] < steps[0] / 3, err


@pytest.mark.parametrize(("args", "message"), [
    (["--device", "v100", "--precision", "bf16"], "--precision: got 'bf16'; allowed on v100: fp32, fp16"),
    (["--device", "v100", "--precision", "tf32"], "--precision: got 'tf32'; allowed on v100: fp32, fp16"),
    (["--precision", "fp8"], "--precision: got 'fp8'; allowed: fp32, tf32, bf16, fp16"),
    (["--comm-dtype", "int8"], "--comm-dtype: got 'int8'; allowed: fp32, bf16, fp16"),
    (["--precision", "bf16", "--set", "dtype_bytes=2"], "--precision: got 'bf16'; allowed with dtype_bytes 2"),
    (["--device", "v100", "--set", "precision=bf16"], "precision: got 'bf16'; allowed on v100: fp32, fp16"),
])
@pytest.mark.parametrize("command", ["run", "compare"])
def test_bad_precision_is_one_line_and_exit_2(capsys, command: str, args: list[str], message: str) -> None:
    code, out, err = run_cli(capsys, command, "--workload", "xc-1e6", "--fidelity", "analytical", *args)
    assert code == 2 and out == ""
    assert err.startswith(f"dessim: error: {message}") and err.count("\n") == 1, err


def test_list_hardware_shows_each_precisions_peak(capsys) -> None:
    code, out, _ = run_cli(capsys, "list", "hardware")
    assert code == 0
    assert "h100: NVIDIA H100 SXM5 80GB (whitepaper/datasheet, dense); --precision peaks (TFLOP/s): fp32 66.9, " \
           "tf32 494.7, bf16 989.4, fp16 989.4" in out
    assert "v100: NVIDIA V100 SXM2 32GB (datasheet, dense); --precision peaks (TFLOP/s): fp32 15.7, fp16 125" in out


def test_the_cpu_server_has_no_bf16() -> None:
    with pytest.raises(SpecError, match="precision: got 'bf16'; allowed on cpu-server: fp32"):
        simulate(load_workload("dlrm-small", ["precision=bf16"]), "dp", device="cpu-server")


def test_trace_takes_precision(capsys, tmp_path) -> None:
    out = tmp_path / "t.json"
    code, _, err = run_cli(capsys, "trace", "--out", str(out), "--workload", "xc-1e6", "--fidelity", "analytical",
                           "--precision", "bf16")
    assert code == 0 and out.exists(), err


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("numerics", [["precision=bf16"], ["precision=fp16", "comm_dtype=fp32"],
                                      ["precision=tf32"]])
def test_closed_form_equals_the_engine_at_every_precision(strategy: str, numerics: list[str]) -> None:
    cluster = make_cluster(Fabric(star_graph(8)), strategy, load_device("h100"), load_device("cpu-server"))
    batches = np.array([64, 2048])
    workload = "dlrm-small" if REGISTRY[strategy].kind == "recommender" else "xc-1e6"
    quick = step_times(load_workload(workload, numerics), cluster, strategy, batches)
    for i, b in enumerate(batches):
        summary = simulate_step(load_workload(workload, [*numerics, f"batch_per_worker={b}"]), cluster,
                                strategy, "analytical").summary
        for key in ("step_time_s", "bytes_on_wire", "compute_s"):
            assert quick[key][i] == pytest.approx(summary[key], rel=1e-9), key
        assert quick["memory_worker_bytes"][i] == pytest.approx(summary["memory_per_device_bytes"]["worker"])


def test_workload_precision_is_a_sweep_key() -> None:
    spec = {"base": {"workload": "dlrm-small", "topology": "leafspine16"},
            "grid": {"strategy": ["des", "dp"], "workload.precision": ["fp32", "bf16"],
                     "device": ["h100", "v100"]}}
    engine, quick = sweep(spec, jobs=1), sweep({**spec, "closed_form": True}, jobs=1)
    for table in (engine, quick):
        bad = (table.device == "v100") & (table["workload.precision"] == "bf16")
        assert (table.error[bad] == "precision: got 'bf16'; allowed on v100: fp32, fp16").all()
        assert (table.error[~bad] == "").all()
        ok = table[~bad].set_index(["strategy", "device", "workload.precision"])
        for strategy in ("des", "dp"):
            assert ok.loc[(strategy, "h100", "bf16"), "step_time_s"] < ok.loc[(strategy, "h100", "fp32"),
                                                                               "step_time_s"]
    good = engine.error == ""
    assert quick.step_time_s[good].to_numpy(float) == pytest.approx(engine.step_time_s[good].to_numpy(float),
                                                                     rel=1e-9)


def test_a_job_sets_precision() -> None:
    jobs = [{"name": name, "workload": "dlrm-small", "strategy": "dp", "workers": 4, "set": extra}
            for name, extra in (("fp32", []), ("bf16", ["precision=bf16"]))]
    table = simulate_jobs({"topology": "leafspine16", "jobs": jobs}).table.set_index("name")
    assert table.loc["bf16", "bytes_on_wire"] == pytest.approx(table.loc["fp32", "bytes_on_wire"] / 2)


def test_mixed_precision_needs_fp32_masters() -> None:
    with pytest.raises(SpecError, match=r"^precision: got 'bf16'; allowed with dtype_bytes 2: fp32"):
        load_workload("dlrm-small", ["dtype_bytes=2", "precision=bf16"])
    with pytest.raises(SpecError, match=r"^classification\.precision: got 'fp16'; allowed with dtype_bytes 2"):
        xc(dtype_bytes=2, precision="fp16")
    legacy = load_workload("dlrm-small", ["dtype_bytes=2"])  # pure bf16, as before precision existed
    assert (legacy.compute_dtype, legacy.activation_value_bytes, legacy.comm_bytes) == ("bf16", 2, 2)
