"""DNN, DLRM, W&D and DeepFM on real gloo ranks under ``des-a2a`` and ``dp``: the same model as
single-process training, and exactly the bytes the simulator predicts for the same workload and IDs."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import assert_bytes_as_predicted, simulated_bytes  # noqa: E402

from simulator.executor.launch import run_local  # noqa: E402
from simulator.executor.pooled_models import train_reference  # noqa: E402
from simulator.executor.train import train_des_a2a, train_dp  # noqa: E402
from workloads import Workload, deepfm, dlrm, dnn, widedeep  # noqa: E402

STEPS = 3


def small(model: str) -> Workload:
    """A few hundred rows per table, k = 4, two IDs per (sample, field), 8 samples per worker; DeepFM's
    first table is shared by two fields (so pooling is per field, not per table)."""
    if model == "dlrm":
        return dlrm(n_tables=3, rows=300, dim=4, hotness=2, bottom_mlp=[8, 4], top_mlp=[8, 1], batch_per_worker=8,
                    ids="sampled", seed=9)
    workload = {"dnn": dnn, "widedeep": widedeep, "deepfm": deepfm}[model](
        n_tables=2, rows=300, dim=4, hotness=2, top_mlp=[8, 1], batch_per_worker=8, ids="sampled", seed=9)
    if model != "deepfm":
        return workload
    shared = workload.tables[0].model_copy(update={"fields": 2})
    return Workload.model_validate({**workload.model_dump(), "tables": [shared.model_dump(),
                                                                       *(t.model_dump() for t in workload.tables[1:])]})


@pytest.mark.parametrize(("model", "world", "strategy"), [("dlrm", 3, "des-a2a"), ("deepfm", 2, "des-a2a"),
                                                          ("dnn", 2, "dp"), ("widedeep", 3, "dp")])
def test_pooled_models_under_des_a2a_and_dp_equal_single_process_training_and_the_predicted_bytes(
        model: str, world: int, strategy: str) -> None:
    """DLRM (dot) and DeepFM (FM + deep, a shared table) under des-a2a; DNN (concat) and W&D (wide + deep)
    under dp: losses and every rank's rows as the reference's after 3 steps; bytes per (category, rank)."""
    workload = small(model)
    ranks = run_local({"des-a2a": train_des_a2a, "dp": train_dp}[strategy], world, workload, STEPS, timeout_s=60)
    tables, losses = train_reference(workload, world, STEPS)
    for out in ranks:
        assert np.allclose(out["losses"], losses, rtol=1e-5, atol=1e-7)
        assert len(out["step_s"]) == STEPS and all(s > 0 for s in out["step_s"])
        for owned, rows, full in zip(out["owned"], out["weights"], tables, strict=True):
            assert np.allclose(rows, full[owned], rtol=1e-4, atol=1e-6)
    assert_bytes_as_predicted(ranks, simulated_bytes(workload, world, strategy, STEPS))


@pytest.mark.parametrize(("model", "variant"), [("widedeep", "des"), ("deepfm", "des-a2a")])
def test_first_layer_partials_equal_single_process_training_and_the_predicted_bytes(model: str, variant: str) -> None:
    """DES summing the first top layer's partials (h1 = 3 values; DeepFM, one-hot, adds k + 1; W&D 1; des-rs
    differs from des only in its collective, tested with fields) trains
    the reference model (same losses and rows to 1e-6) and sends the bytes the simulator predicts, B x r
    values per sample for des's all-reduce."""
    from simulator.executor.train import train_des

    world, build = 2, {"widedeep": widedeep, "deepfm": deepfm}[model]
    workload = build(n_tables=2, rows=300, dim=4, hotness=1 if model == "deepfm" else 2, top_mlp=[3, 1],
                     batch_per_worker=8, ids="sampled", seed=9)
    r = {"widedeep": 3 + 1, "deepfm": 3 + 4 + 1}[model]
    assert workload.first_layer_partial_width == r < workload.partial_width
    fn, extra = (train_des_a2a, ()) if variant == "des-a2a" else (train_des, (variant,))
    ranks = run_local(fn, world, workload, STEPS, *extra, "first-layer", timeout_s=60)
    tables, losses = train_reference(workload, world, STEPS)
    for out in ranks:
        assert np.allclose(out["losses"], losses, rtol=1e-6, atol=1e-6)
        for owned, rows, full in zip(out["owned"], out["weights"], tables, strict=True):
            assert np.allclose(rows, full[owned], rtol=1e-6, atol=1e-6)
    predicted = simulated_bytes(workload, world, variant, STEPS)  # DES's default, auto: first-layer here
    assert_bytes_as_predicted(ranks, predicted)
    if variant == "des":  # ring all-reduce: 2 (N - 1) / N of B x r values, per rank
        assert predicted[("des.partials", 0)] == 2 * (world - 1) / world * world * 8 * r * 4 * STEPS
