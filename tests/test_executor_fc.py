"""Extreme classification on real gloo ranks (``mp-fc``, ``mp-fc-knn``): the same model as single-process
training, and exactly the bytes per category that the strategy's collectives move."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from simulator.calibration.validation import predict  # noqa: E402
from simulator.compute.roofline import load_device  # noqa: E402
from simulator.executor import EXECUTOR_KNN  # noqa: E402
from simulator.executor.fc_models import (  # noqa: E402
    Backbone,
    global_batch,
    small_classification_workload,
    train_mp_fc,
    train_reference,
)
from simulator.executor.launch import run_local  # noqa: E402
from workloads.classification import ClassificationWorkload  # noqa: E402

STEPS, KNN_K, REBUILD = 4, 5, 2
WORKLOAD = small_classification_workload(batch_per_worker=64, classes=960, seed=4)
BACKBONE_PARAMS = 32 * 64 + 64 + 64 * 16 + 16  # I x H + H + H x D + D


def expected_bytes(world: int, b: int, d: int, c: int, m: int, k: int | None, t: int,
                   steps: int) -> dict[str, float]:
    """Bytes each rank sends (and receives) per category over ``steps`` steps, ring bus-byte convention."""
    n, big_b = world, world * b
    per_step = {"fc.labels": (n - 1) / n * big_b * 8, "fc.features": (n - 1) / n * big_b * d * 4,
                "fc.softmax": 2 * 2 * (n - 1) / n * big_b * 4, "fc.feature_grad": (n - 1) / n * big_b * d * 4,
                "backbone.allreduce": 2 * (n - 1) / n * m * 4}
    total = {category: steps * value for category, value in per_step.items()}
    if k is not None:
        total["knn.rebuild"] = math.ceil(steps / t) * (n - 1) / n * (c * d * 4 + c * k * 8)  # rows, then lists
    return total


@pytest.mark.parametrize(("knn_k", "world"), [(None, 2), (None, 4), (KNN_K, 2), (KNN_K, 4)])
def test_mp_fc_equals_single_process_training_and_moves_the_expected_bytes(knn_k: int | None, world: int) -> None:
    """After 4 steps every rank's backbone and the concatenated FC shards equal the reference's, losses per
    step too; under KNN (K = 5, graph rebuilt every 2 steps) the softmax covers between the distinct labels
    and min(C, B (K + 1)) classes; bytes per category are exactly the collectives' and nothing else moves."""
    strategy = "mp-fc" if knn_k is None else "mp-fc-knn"
    ranks = run_local(train_mp_fc, world, WORKLOAD, STEPS, knn_k, REBUILD, timeout_s=60)
    backbone, fc, losses = train_reference(WORKLOAD, world, STEPS, strategy, knn_k, REBUILD)
    for out in ranks:
        assert np.allclose(out["losses"], losses, rtol=1e-5, atol=1e-6)
        for param, reference in zip(out["backbone"], backbone, strict=True):
            np.testing.assert_allclose(param, reference, rtol=0, atol=1e-6)
    # 1e-6: one missed active row would be off by ~1e-6 per step; fp32 rounding is ~1e-8 here
    np.testing.assert_allclose(np.concatenate([out["fc_shard"] for out in ranks]), fc, rtol=0, atol=1e-6)

    c, big_b = WORKLOAD.classes, world * WORKLOAD.batch_per_worker
    assert all(out["active"] == ranks[0]["active"] for out in ranks)
    for step, active in enumerate(ranks[0]["active"]):
        if knn_k is None:
            assert active == c
        else:
            distinct = len(np.unique(global_batch(WORKLOAD, world, step)[1]))
            assert distinct <= active <= min(c, big_b * (knn_k + 1))

    assert WORKLOAD.backbone_params == BACKBONE_PARAMS
    expected = expected_bytes(world, WORKLOAD.batch_per_worker, WORKLOAD.feature_dim, c, BACKBONE_PARAMS, knn_k,
                              REBUILD, STEPS)
    for rank, out in enumerate(ranks):
        counted = {category: v for category, v in out["counters"].items() if category != "metrics"}
        assert counted.keys() == expected.keys(), rank
        for category, value in expected.items():
            assert counted[category]["bytes_sent"] == pytest.approx(value, rel=1e-12), (rank, category)
            assert counted[category]["bytes_received"] == pytest.approx(value, rel=1e-12), (rank, category)
    # and the simulator predicts exactly those bytes (with the executor's K and T: 4 steps, 2 rebuilds)
    assert (knn_k or KNN_K, REBUILD) == (EXECUTOR_KNN.knn_k, EXECUTOR_KNN.knn_rebuild_steps)
    predicted = predict(WORKLOAD, strategy, world, 0, STEPS, load_device("h100")).bytes_sent
    for (category, rank), value in predicted.items():
        assert ranks[rank]["counters"][category]["bytes_sent"] / STEPS == pytest.approx(value, rel=1e-12)
    assert len(predicted) == world * len(expected)


def test_bad_configurations_fail_with_a_clear_value_error() -> None:
    """Checked before any collective, so a direct call (no process group) raises them."""
    with pytest.raises(ValueError, match="962 classes are not divisible by 4 ranks"):
        train_mp_fc(0, 4, small_classification_workload(classes=962), 1)
    with pytest.raises(ValueError, match="knn_k"):
        train_mp_fc(0, 2, WORKLOAD, 1, knn_k=WORKLOAD.classes)
    with pytest.raises(ValueError, match="knn_k for mp-fc-knn only"):
        train_reference(WORKLOAD, 2, 1, "mp-fc-knn")
    other = ClassificationWorkload(**{**WORKLOAD.model_dump(), "backbone_params": BACKBONE_PARAMS + 1})
    with pytest.raises(ValueError, match="3152 parameters"):
        Backbone(other)
