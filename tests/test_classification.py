"""Extreme classification: bytes per category and memory against formulas computed here independently,
scaling with the class count and the KNN active fraction, and one-line errors for bad input."""

import math

import numpy as np
import pytest
from conftest import run_cli, sent, star_graph

from simulator.compute import roofline
from simulator.compute.roofline import load_device
from simulator.errors import SpecError
from simulator.network.fabric import Fabric
from simulator.run.training import make_cluster, simulate_step
from simulator.strategies import FC_STRATEGIES, StrategyOptions, lower
from simulator.strategies.fc import FCOptions, fc_memory
from workloads import ClassificationWorkload, classification, load_workload

D, C, B, M = 64, 100_000, 16, 1_000_000  # feature dim, classes, batch per worker, backbone parameters


def workload(classes: int = C, dtype_bytes: int = 4) -> ClassificationWorkload:
    return ClassificationWorkload(name="xc-test", backbone_flops_per_sample=1e9, backbone_params=M,
                                  backbone_activation_bytes_per_sample=1e6, feature_dim=D, classes=classes,
                                  batch_per_worker=B, dtype_bytes=dtype_bytes, optimizer="momentum")


def simulate(wl: ClassificationWorkload, strategy: str, n: int, servers: int = 0, **fc: object):
    fabric = Fabric(star_graph(n + servers))
    cluster = make_cluster(fabric, strategy, load_device("h100"), load_device("cpu-server"), workers=n,
                           servers=servers or None, placement="dedicated" if servers else "colocated")
    cluster.collective_algorithm = "ring"  # bytes by the ring's bus-byte convention, as the formulas
    options = StrategyOptions.default()
    options.fc = FCOptions(**fc)
    return simulate_step(wl, cluster, strategy, "analytical", options=options)


def categories(report) -> set[str]:
    return set(report.summary["bytes_by_category"])


@pytest.mark.parametrize("n", [2, 4, 8])
def test_mp_fc_bytes_are_the_formulas(n: int) -> None:
    report = simulate(workload(), "mp-fc", n)
    big_b, share = n * B, (n - 1) / n
    assert categories(report) == {"fc.labels", "fc.features", "fc.softmax", "fc.feature_grad",
                                  "backbone.allreduce"}
    assert sent(report, "fc.labels") == pytest.approx(share * big_b * 8)
    assert sent(report, "fc.features") == pytest.approx(share * big_b * D * 4)
    assert sent(report, "fc.softmax") == pytest.approx(2 * 2 * share * big_b * 4)  # row max, row sum
    assert sent(report, "fc.feature_grad") == pytest.approx(share * big_b * D * 4)
    assert sent(report, "backbone.allreduce") == pytest.approx(2 * share * M * 4)


def test_dp_fc_all_reduces_the_whole_fc_gradient() -> None:
    n = 4
    report = simulate(workload(), "dp-fc", n)
    assert categories(report) == {"fc.allreduce", "backbone.allreduce"}
    assert sent(report, "fc.allreduce") == pytest.approx(2 * (n - 1) / n * D * C * 4)


def test_ps_fc_pulls_and_pushes_every_row() -> None:
    """Dedicated servers holding contiguous class ranges: a worker receives all C rows and sends their
    gradients; a server sends its rows to every worker."""
    n, p = 4, 3
    report = simulate(workload(), "ps-fc", n, servers=p)
    trace = report.trace
    for w in range(n):
        pulled = trace[(trace.category == "fc.pull") & (trace["rank"] == w)].bytes_received.sum()
        assert pulled == pytest.approx(C * D * 4)
        assert sent(report, "fc.push", w) == pytest.approx(C * D * 4)
    for j, server in enumerate(range(n, n + p)):
        rows = (j + 1) * C // p - j * C // p
        assert sent(report, "fc.pull", server) == pytest.approx(n * rows * D * 4)
    assert report.summary["memory"]["server"]["parts"]["fc_shard"] == pytest.approx(C * D * 4 * 2 / p)


def test_mp_fc_knn_adds_the_amortised_rebuild() -> None:
    n, k, t = 4, 7, 10
    report = simulate(workload(), "mp-fc-knn", n, knn_k=k, knn_rebuild_steps=t)
    share = (n - 1) / n
    assert sent(report, "knn.rebuild") == pytest.approx(share * (C * D * 4 + C * k * 8) / t)
    assert sent(report, "fc.features") == pytest.approx(share * n * B * D * 4)  # as mp-fc


def test_fp16_comm_halves_features_and_gradients_but_not_the_softmax_scalars() -> None:
    n = 4
    full, half = simulate(workload(), "mp-fc", n), simulate(workload(), "mp-fc", n, fp16_comm=True)
    for category in ("fc.features", "fc.feature_grad", "backbone.allreduce"):
        assert sent(half, category) == pytest.approx(sent(full, category) / 2)
    for category in ("fc.softmax", "fc.labels"):
        assert sent(half, category) == pytest.approx(sent(full, category))


def test_topk_sparsification_all_gathers_values_and_indices() -> None:
    n, ratio = 4, 0.01
    report = simulate(workload(), "mp-fc", n, topk_ratio=ratio)
    assert "backbone.allreduce" not in categories(report)
    assert sent(report, "backbone.topk") == pytest.approx((n - 1) * math.ceil(ratio * M) * (4 + 4))


def test_overlap_sends_the_same_bytes_in_buckets_and_hides_more() -> None:
    n = 8
    wl = workload().with_overrides({"backbone_params": 50_000_000})  # 200 MB of gradients: 8 buckets of 25 MB
    plain, overlapped = simulate(wl, "mp-fc", n), simulate(wl, "mp-fc", n, overlap=True)
    assert sent(overlapped, "backbone.allreduce") == pytest.approx(sent(plain, "backbone.allreduce"))
    trace = overlapped.trace
    assert trace[(trace.category == "backbone.allreduce") & (trace["rank"] == 0)].shape[0] == 8
    assert overlapped.summary["exposed_comm_s"] < plain.summary["exposed_comm_s"]
    assert overlapped.summary["step_time_s"] < plain.summary["step_time_s"]


def test_mp_fc_traffic_does_not_grow_with_classes_while_dp_fc_grows_linearly() -> None:
    n = 4
    small, large = workload(classes=10_000), workload(classes=1_000_000)
    mp = [simulate(w, "mp-fc", n).summary["bytes_on_wire"] for w in (small, large)]
    dp = [sent(simulate(w, "dp-fc", n), "fc.allreduce") for w in (small, large)]
    assert mp[0] == pytest.approx(mp[1])
    assert dp[1] == pytest.approx(100 * dp[0])


def test_knn_compute_and_memory_scale_with_the_active_fraction() -> None:
    """The FC forward and the logits of mp-fc-knn are mp-fc's with C/N classes replaced by A/N, A the
    expected distinct classes among B (K + 1) uniform draws (closed form here)."""
    n, k = 4, 5
    wl = workload(classes=10_000_000)
    big_b = n * B
    active = wl.classes * (1 - (1 - 1 / wl.classes) ** (big_b * (k + 1)))
    assert active == pytest.approx(big_b * (k + 1), rel=1e-3)  # nearly all distinct at 1e7 classes
    knn, full = simulate(wl, "mp-fc-knn", n, knn_k=k), simulate(wl, "mp-fc", n)
    device = load_device("h100")

    def fc_forward_s(scored: float) -> float:
        return roofline.dense_forward_s(device, 2 * big_b * D * scored, scored * D * 4,
                                       (big_b * D + big_b * scored) * 4, "fp32")

    for report, scored in ((knn, active / n), (full, wl.classes / n)):
        trace = report.trace
        op = trace[(trace.op == "fc.forward") & (trace["rank"] == 0)]
        assert float((op.end_s - op.start_s).iloc[0]) == pytest.approx(fc_forward_s(scored))
        assert report.summary["memory"]["worker"]["parts"]["logits"] == pytest.approx(big_b * scored * 4)
    ratio = knn.summary["memory"]["worker"]["parts"]["logits"] / full.summary["memory"]["worker"]["parts"]["logits"]
    assert ratio == pytest.approx(active / wl.classes)


def test_memory_of_1e8_classes_on_256_gpus_by_hand() -> None:
    """The xc-1e8 preset (ResNet-50 + 512-wide projection, fp32, momentum) on 256 GPUs."""
    wl = load_workload("xc-1e8")
    n, s, slots, d, c, b = 256, 4, 1, 512, 100_000_000, 32
    backbone = (23_508_032 + 2048 * 512 + 512) * s * (2 + slots)
    activations = b * 100e6
    memory = {strategy: fc_memory(wl, strategy, n, 32, FCOptions(knn_k=10)) for strategy in FC_STRATEGIES}
    assert memory["dp-fc"]["worker"] == pytest.approx({"backbone": backbone, "activations": activations,
                                                       "fc": d * c * s * 3, "logits": b * c * s})
    assert memory["mp-fc"]["worker"] == pytest.approx({"backbone": backbone, "activations": activations,
                                                       "fc": c / n * d * s * 3, "logits": n * b * c / n * s,
                                                       "features": 2 * n * b * d * s})
    assert memory["ps-fc"]["server"]["fc_shard"] == pytest.approx(c * d * s * 2 / 32)
    knn = memory["mp-fc-knn"]["worker"]
    assert knn["knn_graph"] == c * 10 * 8 and knn["knn_buffer"] == pytest.approx(c / n * d * s)
    h100 = load_device("h100")
    assert not roofline.fits(h100, memory["dp-fc"]["worker"])[0]  # 614 GB of FC alone
    assert roofline.fits(h100, memory["mp-fc"]["worker"])[0]


def test_one_worker_sends_nothing() -> None:
    for strategy in ("dp-fc", "mp-fc", "mp-fc-knn"):
        report = simulate(workload(), strategy, 1)
        assert report.summary["bytes_on_wire"] == 0 and report.summary["step_time_s"] > 0


def test_the_builder_adds_the_projection_and_the_presets_load() -> None:
    wl = classification(backbone="resnet152", feature_dim=256, classes=1000, batch_per_worker=8)
    assert wl.backbone_params == 58_143_810 + 2048 * 256 + 256
    assert wl.backbone_flops_per_sample == pytest.approx(23.03e9 + 2 * 2048 * 256)
    assert [load_workload(f"xc-{c}").classes for c in ("1e6", "1e7", "1e8")] == [10 ** 6, 10 ** 7, 10 ** 8]


def test_strategies_refuse_the_other_kind_of_workload() -> None:
    cluster = make_cluster(Fabric(star_graph(2)), "des", load_device("h100"), load_device("cpu-server"))
    with pytest.raises(SpecError, match="allowed for an extreme-classification workload: dp-fc"):
        lower("des", workload(), cluster)
    with pytest.raises(SpecError, match="allowed for a recommender workload"):
        lower("mp-fc", load_workload("dlrm-small"), cluster)


XC = ["--workload", "classification:classes=1000,feature_dim=16,batch=4", "--topology", "star:hosts=4,link_gbps=100"]


@pytest.mark.parametrize(("args", "field"), [
    (["--strategy", "mp-fc-knn", "--knn-k", "1000"], "fc.knn_k: got 1000"),
    (["--strategy", "mp-fc", "--topk-ratio", "0"], "--topk-ratio: got 0.0; allowed: a number > 0 and <= 1"),
    (["--strategy", "mp-fc-knn", "--knn-rebuild-steps", "0"], "--knn-rebuild-steps: got 0; allowed: an integer"),
    (["--strategy", "mp-fc", "--topk-ratio", "1.5"], "--topk-ratio: got 1.5"),
    (["--strategy", "mp-fc", "--topk-ratio", "nan"], "--topk-ratio: got nan"),
    (["--strategy", "mp-fc", "--set", "classes=0"], "classification.classes: got 0"),
    (["--strategy", "des"], "strategy: got 'des'; allowed for this workload (classification)"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, args: list[str], field: str) -> None:
    code, out, err = run_cli(capsys, "run", *XC, *args)
    assert code == 2 and out == ""
    assert err.startswith(f"dessim: error: {field}") and err.count("\n") == 1


def test_compare_defaults_to_every_fc_strategy(capsys) -> None:
    import json

    code, out, _ = run_cli(capsys, "compare", *XC, "--fidelity", "analytical", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["baseline"] == "dp-fc"
    assert [s["strategy"] for s in doc["strategies"]] == list(FC_STRATEGIES)
    assert np.isfinite([s["step_time_s"] for s in doc["strategies"]]).all()
