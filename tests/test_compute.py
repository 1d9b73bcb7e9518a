"""The roofline cost model, device presets, calibration and memory fit, against hand-computed numbers."""

import doctest
import json
from pathlib import Path

import numpy as np
import pytest

import simulator.compute.roofline
from simulator.compute.roofline import (
    CalibrationProfile,
    Device,
    apply_calibration,
    dense_backward_s,
    dense_forward_s,
    dense_update_s,
    embedding_fused_backward_s,
    embedding_lookup_s,
    embedding_update_s,
    fits,
    list_devices,
    load_calibration,
    load_device,
    op_time_s,
    ps_server_update_s,
)
from simulator.errors import SpecError

LAUNCH_S = 4e-6


def toy(**changes: object) -> Device:
    """100 TFLOPS fp32 at eff 0.5 (50e12 FLOP/s achieved), 1000 GB/s at eff_mem 0.5 (500e9 B/s), gathers at 0.25."""
    fields: dict = {"name": "toy", "kind": "gpu", "peak_tflops": {"fp32": 100.0, "bf16": 400.0},
                    "mem_bandwidth_GBps": 1000.0, "mem_capacity_bytes": 80e9, "launch_overhead_us": 4.0,
                    "eff_flops": 0.5, "eff_mem": 0.5, "eff_gather": 0.25}
    return Device(**{**fields, **changes})


def test_docstring_examples() -> None:
    failures, tried = doctest.testmod(simulator.compute.roofline)
    assert tried > 0 and failures == 0


# --- op_time_s -----------------------------------------------------------------------------------------------


def test_compute_bound_op() -> None:
    # 1e12 FLOPs at 100 TFLOPS x 0.5 = 0.02 s; 1e9 bytes at 500e9 B/s = 0.002 s (hidden); + 4 us launch.
    assert op_time_s(toy(), 1e12, 1e9) == pytest.approx(0.02 + LAUNCH_S, rel=1e-12)
    # bf16 peak is 4x: 1e12 / 200e12 = 0.005 s.
    assert op_time_s(toy(), 1e12, 1e9, dtype="bf16") == pytest.approx(0.005 + LAUNCH_S, rel=1e-12)


def test_memory_bound_op_and_mem_eff_override() -> None:
    # 1e10 bytes at 1000e9 x 0.5 = 0.02 s; 1e9 FLOPs take 2e-5 s (hidden).
    assert op_time_s(toy(), 1e9, 1e10) == pytest.approx(0.02 + LAUNCH_S, rel=1e-12)
    # At the gather efficiency 0.25 it takes twice as long.
    assert op_time_s(toy(), 1e9, 1e10, mem_eff=0.25) == pytest.approx(0.04 + LAUNCH_S, rel=1e-12)


def test_ridge_point_crossover() -> None:
    # Ridge: achieved 50e12 FLOP/s / 500e9 B/s = 100 FLOP/byte. Below it time follows bytes, above it FLOPs.
    dev, n_bytes = toy(), 1e9
    at_ridge = op_time_s(dev, 100 * n_bytes, n_bytes)
    assert at_ridge == pytest.approx(n_bytes / 500e9 + LAUNCH_S, rel=1e-12)
    assert at_ridge == pytest.approx(100 * n_bytes / 50e12 + LAUNCH_S, rel=1e-12)
    assert op_time_s(dev, 50 * n_bytes, n_bytes) == pytest.approx(at_ridge, rel=1e-12)  # memory-bound: same
    assert op_time_s(dev, 200 * n_bytes, n_bytes) == pytest.approx(2 * (at_ridge - LAUNCH_S) + LAUNCH_S, rel=1e-12)


def test_zero_work_costs_nothing_and_arrays_are_elementwise() -> None:
    dev = toy()
    assert op_time_s(dev, 0, 0) == 0.0
    assert op_time_s(dev, 0, 1) == pytest.approx(1 / 500e9 + LAUNCH_S)  # any work pays the launch
    flops = np.array([1e12, 1e9, 0.0, 0.0])
    moved = np.array([1e9, 1e10, 0.0, 5e9])
    got = op_time_s(dev, flops, moved)
    assert isinstance(got, np.ndarray) and got.shape == (4,)
    np.testing.assert_allclose(got, [0.02 + LAUNCH_S, 0.02 + LAUNCH_S, 0.0, 0.01 + LAUNCH_S], rtol=1e-12)
    grid = op_time_s(dev, np.array([[0.0], [1e12]]), np.array([0.0, 1e10]))  # broadcasting (2, 1) x (2,)
    np.testing.assert_allclose(grid, [[0.0, 0.02 + LAUNCH_S], [0.02 + LAUNCH_S, 0.02 + LAUNCH_S]], rtol=1e-12)


def test_bad_op_inputs() -> None:
    with pytest.raises(SpecError, match=r"^dtype: got 'bf16'; allowed on cpu-server: fp64, fp32$"):
        op_time_s(load_device("cpu-server"), 1e9, 0, dtype="bf16")
    assert op_time_s(load_device("cpu-server"), 0, 1e9, dtype="bf16") > 0  # no FLOPs: the dtype is not needed
    with pytest.raises(SpecError, match=r"^flops: got -1\.0"):
        op_time_s(toy(), np.array([1.0, -1.0]), 0)
    with pytest.raises(SpecError, match=r"^mem_eff: got 1\.5"):
        op_time_s(toy(), 0, 1, mem_eff=1.5)


# --- dense forward / backward / update -------------------------------------------------------------------------


def test_dense_forward_and_backward() -> None:
    dev = toy()
    fwd = dense_forward_s(dev, 1e12, 2e9, 3e9, "fp32")  # compute 0.02 s vs (2e9 + 3e9) / 500e9 = 0.01 s
    assert fwd == pytest.approx(0.02 + LAUNCH_S, rel=1e-12)
    mem_fwd = dense_forward_s(dev, 1e9, 2e9, 8e9, "fp32", kernels=3)  # 1e10 / 500e9 = 0.02 s, 3 launches
    assert mem_fwd == pytest.approx(0.02 + 3 * LAUNCH_S, rel=1e-12)
    assert dense_backward_s(dev, 1e12, 2e9, 3e9, "fp32") == pytest.approx(2.0 * fwd, rel=1e-12)
    assert dense_backward_s(dev, 1e12, 2e9, 3e9, "fp32", backward_factor=3.0) == pytest.approx(3.0 * fwd)
    assert dense_backward_s(toy(backward_factor=2.5), 1e12, 2e9, 3e9) == pytest.approx(2.5 * fwd, rel=1e-12)
    samples = np.array([0.0, 1.0, 2.0])
    np.testing.assert_allclose(dense_backward_s(dev, samples * 1e12, samples * 2e9, samples * 3e9),
                               [0.0, 2 * (0.02 + LAUNCH_S), 2 * (0.04 + LAUNCH_S)], rtol=1e-12)


def test_dense_update_bytes_model() -> None:
    # Adam (2 slots), fp32: 4 B x (3 + 2 x 2) = 28 B per parameter, streamed at 500e9 B/s.
    assert dense_update_s(toy(), 1e9, 4, 2) == pytest.approx(28e9 / 500e9 + LAUNCH_S, rel=1e-12)
    assert dense_update_s(toy(), 1e9, 2, 0) == pytest.approx(6e9 / 500e9 + LAUNCH_S, rel=1e-12)  # SGD, bf16
    assert dense_update_s(toy(), 0, 4, 2) == 0.0


# --- embeddings and the parameter server ------------------------------------------------------------------------


def test_embedding_lookup_bytes_model() -> None:
    dev = toy()  # gathers at 250e9 B/s, streaming writes at 500e9 B/s
    # 1e6 unique 512-byte rows read (5.12e8 B / 250e9 = 2.048 ms), 4e6 lookups written (2.048e9 / 500e9 = 4.096 ms).
    got = embedding_lookup_s(dev, 4e6, 1e6, 512)
    assert got == pytest.approx(2.048e-3 + 4.096e-3 + LAUNCH_S, rel=1e-12)
    # Pooling 4 lookups per bag: 1e6 pooled rows written (1.024 ms).
    assert embedding_lookup_s(dev, 4e6, 1e6, 512, pooled_rows=1e6) == pytest.approx(
        2.048e-3 + 1.024e-3 + LAUNCH_S, rel=1e-12)
    # Per table (last axis) for two workers (rows): broadcasting, and a table a worker does not touch costs 0.
    lookups = np.array([4e6, 0.0])
    unique = np.array([[1e6, 0.0], [2e6, 0.0]])
    np.testing.assert_allclose(embedding_lookup_s(dev, lookups, unique, np.array([512.0, 64.0])),
                               [[2.048e-3 + 4.096e-3 + LAUNCH_S, 0.0], [4.096e-3 + 4.096e-3 + LAUNCH_S, 0.0]],
                               rtol=1e-12)


def test_a_lookup_pools_as_it_reads_except_fm_s() -> None:
    """One table, 1,000 samples of 2 IDs each (2,000 lookups of 600 distinct 68-byte rows), tables batched:
    DLRM-like models write one pooled row per sample (1,000 rows); FM writes each ID's own vector first
    (its second-order term needs |v|^2 per ID), then the sums: 3,000 rows."""
    from simulator.strategies.costs import lookup_s
    from workloads import deepfm, fm

    dev = toy()
    for build, written in ((deepfm, 1000.0), (fm, 3000.0)):
        workload = build(n_tables=1, rows=10_000, dim=16, hotness=2)
        row = (workload.tables[0].params_per_id) * workload.dtype_bytes
        expected = 600 * row / 250e9 + written * row / 500e9 + LAUNCH_S
        assert float(lookup_s(workload, dev, np.array([2000.0]), np.array([600.0]), 1000.0)) == pytest.approx(
            expected, rel=1e-12), build.__name__


def test_embedding_update_bytes_model() -> None:
    # Adagrad (1 slot): read+write row and its state (2 x 2 rows) + read the gradient = 5 rows of 256 B.
    assert embedding_update_s(toy(), 1e6, 256, 1) == pytest.approx(5 * 256e6 / 250e9 + LAUNCH_S, rel=1e-12)
    # Adam (2 slots): 7 rows; SGD: 3 rows.
    assert embedding_update_s(toy(), 1e6, 256, 2) == pytest.approx(7 * 256e6 / 250e9 + LAUNCH_S, rel=1e-12)
    assert embedding_update_s(toy(), 1e6, 256, 0) == pytest.approx(3 * 256e6 / 250e9 + LAUNCH_S, rel=1e-12)
    np.testing.assert_allclose(embedding_update_s(toy(), np.array([0.0, 2e6]), 256, 1),
                               [0.0, 10 * 256e6 / 250e9 + LAUNCH_S], rtol=1e-12)
    with pytest.raises(SpecError, match=r"^optimizer_slots"):
        embedding_update_s(toy(), 1e6, 256, -1)


def test_fused_embedding_backward_skips_the_gradient_rows() -> None:
    """FBGEMM-style fused backward + Adagrad: read the 1e6 pooled gradient rows (512 B, streamed: 1.024 ms),
    read + write each of 1e6 distinct rows and its state (4 x 512e6 B / 250e9 = 8.192 ms), one launch. The
    unfused pair (the lookup's cost again, then the update) also writes and reads back each gradient row
    (2 x 512e6 B / 250e9 = 4.096 ms) and pays a second launch."""
    dev = toy()
    fused = embedding_fused_backward_s(dev, 4e6, 1e6, 512, 1, pooled_rows=1e6)
    assert fused == pytest.approx(1.024e-3 + 8.192e-3 + LAUNCH_S, rel=1e-12)
    unfused = embedding_lookup_s(dev, 4e6, 1e6, 512, pooled_rows=1e6) + embedding_update_s(dev, 1e6, 512, 1)
    assert unfused - fused == pytest.approx(4.096e-3 + LAUNCH_S, rel=1e-12)


def test_workloads_choose_the_embedding_backward_of_row_owners() -> None:
    """``embedding_update: fused`` changes DES's and TorchRec's owners' backward op by exactly that saving, and
    the closed form follows the engine."""
    from simulator.strategies.costs import embedding_backward_s, lookup_s, sparse_update_s
    from workloads import deepfm

    dev = toy()
    unfused = deepfm(n_tables=2, rows=10_000, dim=16, hotness=2)
    fused = unfused.model_copy(update={"embedding_update": "fused"})
    lookups, rows = np.array([2000.0, 2000.0]), np.array([600.0, 700.0])
    np.testing.assert_allclose(embedding_backward_s(unfused, dev, lookups, rows, 1000.0),
                               lookup_s(unfused, dev, lookups, rows, 1000.0) + sparse_update_s(unfused, dev, rows),
                               rtol=1e-12)
    row = unfused.tables[0].params_per_id * unfused.dtype_bytes
    saved = 2 * 1300 * row / 250e9 + LAUNCH_S  # each distinct row's gradient written and read back, a launch
    assert float(embedding_backward_s(unfused, dev, lookups, rows, 1000.0)
                 - embedding_backward_s(fused, dev, lookups, rows, 1000.0)) == pytest.approx(saved, rel=1e-12)


def test_ps_server_update_on_cpu_server() -> None:
    cpu = load_device("cpu-server")  # 409.6 GB/s x eff_gather 0.25 = 102.4e9 B/s, 1 us dispatch
    rows, row_bytes = 1e7, 128
    expected = rows * row_bytes * 5 / 102.4e9 + 1e-6  # Adagrad: 5 row transfers
    assert ps_server_update_s(cpu, rows, row_bytes, 1) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.0625 + 1e-6)
    handling = cpu.model_copy(update={"request_us": 20.0})
    assert ps_server_update_s(handling, rows, row_bytes, 1, requests=64) == pytest.approx(expected + 64 * 20e-6,
                                                                                           rel=1e-12)
    np.testing.assert_allclose(ps_server_update_s(cpu, np.array([[rows, 0.0]]), row_bytes, 1), [[expected, 0.0]])


# --- presets ----------------------------------------------------------------------------------------------------


def test_every_preset_loads_and_validates() -> None:
    names = list_devices()
    assert names == ["a100", "cpu-server", "h100", "h200", "v100"]
    for name in names:
        device = load_device(name.upper())
        assert device.name == name
        assert 0 < device.eff_gather <= device.eff_mem <= 1 and "fp32" in device.peak_tflops
        assert Device(**device.model_dump()) == device  # round-trips through validation
    assert [load_device(n).kind for n in names] == ["gpu", "cpu", "gpu", "gpu", "gpu"]


def test_datasheet_numbers() -> None:
    h100, a100, h200, v100 = (load_device(n) for n in ("h100", "a100", "h200", "v100"))
    cpu = load_device("cpu-server")
    assert h100.peak_tflops["fp16"] == pytest.approx(989, rel=0.01)
    assert h100.peak_tflops["bf16"] == pytest.approx(989, rel=0.01)
    assert h100.mem_bandwidth_GBps == 3350 and h100.mem_capacity_bytes == 80e9
    assert a100.mem_bandwidth_GBps == pytest.approx(2039) and a100.peak_tflops["bf16"] == 312
    assert h200.mem_bandwidth_GBps == 4800 and h200.mem_capacity_bytes == 141e9
    assert h200.peak_tflops["bf16"] == pytest.approx(h100.peak_tflops["bf16"], rel=0.01)
    assert v100.peak_tflops["fp16"] == 125 and v100.mem_bandwidth_GBps == 900 and "bf16" not in v100.peak_tflops
    assert cpu.peak_tflops["fp32"] == pytest.approx(2 * 32 * 2.8e9 * 32 / 1e12)  # cores x clock x FLOP/cycle
    assert cpu.mem_bandwidth_GBps == pytest.approx(2 * 8 * 25.6) and cpu.mem_capacity_bytes == 1e12


def test_device_files(tmp_path: Path) -> None:
    spec = load_device("h100").model_dump() | {"name": "mygpu", "mem_capacity_bytes": "96GB"}
    (tmp_path / "mygpu.json").write_text(json.dumps(spec))
    assert load_device(tmp_path / "mygpu.json").mem_capacity_bytes == 96e9
    (tmp_path / "bad.yaml").write_text("name: bad\nkind: tpu\n")
    with pytest.raises(SpecError, match=r"bad\.yaml:kind: got 'tpu'; allowed: gpu, cpu$"):
        load_device(str(tmp_path / "bad.yaml"))
    with pytest.raises(SpecError, match="file not found"):
        load_device(str(tmp_path / "missing.yaml"))


def test_unknown_device_lists_the_presets() -> None:
    with pytest.raises(SpecError) as info:
        load_device("tpu-v5")
    message = str(info.value)
    assert message.startswith("device: got 'tpu-v5'; unknown device; allowed: a100, cpu-server, h100, h200, v100")
    assert "\n" not in message


@pytest.mark.parametrize(("changes", "field", "allowed"), [
    ({"eff_flops": 1.5}, "device.eff_flops", "allowed: a number > 0 and <= 1"),
    ({"eff_gather": 0}, "device.eff_gather", "allowed: a number > 0 and <= 1"),
    ({"mem_bandwidth_GBps": -1}, "device.mem_bandwidth_GBps", "> 0"),
    ({"launch_overhead_us": -0.5}, "device.launch_overhead_us", ">= 0"),
    ({"mem_capacity_bytes": "lots"}, "device.mem_capacity_bytes", "64MiB"),
    ({"peak_tflops": {"fp32": 1.0, "bf17": 2.0}}, "device.peak_tflops", "unknown dtype 'bf17'"),
    ({"peak_tflops": {"bf16": 2.0}}, "device.peak_tflops", "fp32 is required"),
    ({"peak_tflops": {"fp32": -2.0}}, "device.peak_tflops.fp32", "> 0"),
    ({"eff_flop": 0.5}, "device.eff_flop", "unknown field; allowed: name, kind"),
])
def test_device_validation_is_one_spec_error_line(changes: dict, field: str, allowed: str) -> None:
    with pytest.raises(SpecError) as info:
        toy(**changes)
    assert info.value.field == field
    assert allowed in str(info.value) and "\n" not in str(info.value)


# --- calibration ------------------------------------------------------------------------------------------------


def write_profile(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(doc))
    return path


def test_calibration_overrides_apply(tmp_path: Path) -> None:
    path = write_profile(tmp_path, {"devices": {"H100": {"eff_flops": 0.55, "launch_overhead_us": 7.2,
                                                         "peak_tflops": {"bf16": 900}}},
                                    "backward_factor": 2.5, "link_efficiency": 0.9, "latency_us_extra": 1.5,
                                    "meta": {"torch": "2.3"}})
    profile = load_calibration(path)
    assert isinstance(profile, CalibrationProfile) and profile.link_efficiency == 0.9
    h100 = load_device("h100")
    tuned = apply_calibration(h100, profile)
    assert (tuned.eff_flops, tuned.launch_overhead_us, tuned.backward_factor) == (0.55, 7.2, 2.5)
    assert tuned.peak_tflops == {**h100.peak_tflops, "bf16": 900.0}  # merged per dtype
    assert h100.eff_flops == 0.6  # the original is unchanged
    # 1e12 bf16 FLOPs: 1e12 / (900e12 x 0.55) + 7.2 us; backward 2.5x.
    assert op_time_s(tuned, 1e12, 0, "bf16") == pytest.approx(1 / 495 + 7.2e-6, rel=1e-12)
    fwd = dense_forward_s(tuned, 1e12, 0, 0, "bf16")
    assert dense_backward_s(tuned, 1e12, 0, 0, "bf16") == pytest.approx(2.5 * fwd, rel=1e-12)
    a100 = load_device("a100")  # not named: only the profile-wide backward factor applies
    assert apply_calibration(a100, profile) == a100.model_copy(update={"backward_factor": 2.5})
    assert apply_calibration(a100, CalibrationProfile()) == a100


@pytest.mark.parametrize(("doc", "field"), [
    ({"devices": {"h100": {"eff_flops": 1.7}}}, "devices.h100.eff_flops"),
    ({"devices": {"h100": {"eff_flopz": 0.5}}}, "devices.h100.eff_flopz"),
    ({"devices": {"h100": {"name": "x"}}}, "devices.h100.name"),
    ({"backward_factor": 0}, "backward_factor"),
    ({"link_efficiency": 2}, "link_efficiency"),
    ({"latency_us_extra": -1}, "latency_us_extra"),
    ({"linkefficiency": 0.9}, "linkefficiency"),
])
def test_bad_profile_is_one_line_naming_file_and_field(tmp_path: Path, doc: dict, field: str) -> None:
    path = write_profile(tmp_path, doc)
    with pytest.raises(SpecError) as info:
        load_calibration(path)
    assert info.value.field == f"{path}:{field}"
    assert str(info.value).startswith(f"{path}:{field}: got ") and "\n" not in str(info.value)


def test_malformed_profile_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"devices": {')
    with pytest.raises(SpecError, match=r"^calibration: got '.*broken\.json'; invalid JSON"):
        load_calibration(path)
    with pytest.raises(SpecError, match="file not found"):
        load_calibration(tmp_path / "nope.json")


# --- memory fit ---------------------------------------------------------------------------------------------------


def test_fits() -> None:
    h100 = load_device("h100")
    assert fits(h100, 80e9) == (True, "")
    assert fits(h100, {"sparse_shard": 50e9, "dense": 20e9}) == (True, "")
    ok, reason = fits(h100, {"dense": 1.2e9, "activations": 0.5e9, "sparse_shard": 91.7e9, "buffers": 0.1e9,
                             "other": 0.05e9, "empty": 0.0})
    assert not ok
    assert reason == ("needs 93.5 GB > 80.0 GB of h100 memory (sparse shard 91.7 GB, dense 1.2 GB, "
                      "activations 500.0 MB, and 2 more 150.0 MB)")
    ok, reason = fits(h100, 81e9)
    assert (ok, reason) == (False, "needs 81.0 GB > 80.0 GB of h100 memory")
    assert fits(load_device("cpu-server"), {"sparse_shard": 900e9})[0]
    with pytest.raises(SpecError, match=r"^memory\.dense"):
        fits(h100, {"dense": float("nan")})
