"""LR and FM on real gloo ranks under DES (three variants), DP and synchronous PS: the same model as
single-process training, and exactly the bytes the simulator predicts for the same workload and IDs."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import assert_bytes_as_predicted, simulated_bytes, star_graph  # noqa: E402

from simulator.compute.roofline import load_device  # noqa: E402
from simulator.executor.launch import run_local  # noqa: E402
from simulator.executor.sum_models import train_reference  # noqa: E402
from simulator.executor.train import train_des  # noqa: E402
from simulator.network.fabric import Fabric  # noqa: E402
from simulator.run.training import make_cluster, simulate_step  # noqa: E402
from workloads import fm, lr  # noqa: E402

STEPS = 3


def small(model: str) -> object:
    if model == "lr":
        return lr(n_tables=3, rows=1000, hotness=2, batch_per_worker=16, ids="sampled", seed=5, popularity="zipf",
                  zipf_alpha=1.1)
    return fm(n_tables=2, rows=500, dim=4, hotness=3, batch_per_worker=16, ids="sampled", seed=6)


def _train(strategy: str) -> tuple:
    """The executor function and extra arguments of a synchronous, owner-sharded strategy."""
    from simulator.executor.train import train_des_a2a, train_dp

    return {"des": (train_des, "des"), "des-rs": (train_des, "des-rs"), "des-a2a": (train_des_a2a,),
            "dp": (train_dp,)}[strategy]


@pytest.mark.parametrize(("model", "world", "variant"), [("lr", 2, "des"), ("lr", 4, "des-rs"), ("fm", 3, "des"),
                                                         ("fm", 3, "des-a2a"), ("lr", 2, "dp")])
def test_des_and_dp_equal_single_process_training_and_the_predicted_bytes(model: str, world: int, variant: str) -> None:
    workload = small(model)
    fn, *extra = _train(variant)
    ranks = run_local(fn, world, workload, STEPS, *extra, timeout_s=60)
    tables, bias, losses = train_reference(workload, world, STEPS)
    for out in ranks:
        assert np.allclose(out["losses"], losses, rtol=1e-5, atol=1e-7)
        assert out["bias"] == pytest.approx(bias, rel=1e-5, abs=1e-7)
        for owned, rows, full in zip(out["owned"], out["weights"], tables, strict=True):
            assert np.allclose(rows, full[owned], rtol=1e-5, atol=1e-6)
    assert_bytes_as_predicted(ranks, simulated_bytes(workload, world, variant, STEPS))


@pytest.mark.parametrize("model", ["lr", "fm", "dlrm"])
def test_synchronous_ps_equals_single_process_training_and_the_predicted_bytes(model: str) -> None:
    """3 workers and 2 dedicated servers; dense parameters all-reduced among workers."""
    from simulator.executor.pooled_models import train_reference as reference_pooled
    from simulator.executor.ps import train_ps
    from simulator.strategies import StrategyOptions
    from simulator.strategies.ps import PSOptions
    from workloads import dlrm

    workers, servers = 3, 2
    if model == "dlrm":
        workload = dlrm(n_tables=3, rows=300, dim=4, bottom_mlp=[8, 4], top_mlp=[8, 1], batch_per_worker=8,
                        ids="sampled", seed=9)
        tables, losses = reference_pooled(workload, workers, STEPS)
    else:
        workload = small(model)
        tables, _, losses = train_reference(workload, workers, STEPS)
    ranks = run_local(train_ps, workers + servers, workload, STEPS, servers, timeout_s=60)
    full = np.concatenate(tables)
    for out in ranks[:workers]:
        assert np.allclose(out["losses"], losses, rtol=1e-5, atol=1e-7)
    for out in ranks[workers:]:
        assert np.allclose(out["weights"], full[out["owned"]], rtol=1e-4, atol=1e-6)

    fabric = Fabric(star_graph(workers + servers))
    cluster = make_cluster(fabric, "ps", load_device("h100"), load_device("cpu-server"), servers=servers,
                           placement="dedicated")
    cluster.collective_algorithm = "ring"
    options = StrategyOptions.default()
    options.ps = PSOptions(dense="allreduce")
    trace = simulate_step(workload, cluster, "ps", "analytical", steps=STEPS, options=options).trace
    comm = trace[trace.kind != "compute"]
    predicted = comm.groupby(["category", "rank"], observed=True).bytes_sent.sum()
    measured = {(category, rank): c["bytes_sent"] for rank, out in enumerate(ranks)
                for category, c in out["counters"].items() if category != "metrics"}
    for key, value in predicted.items():
        assert measured.get(key, 0.0) == pytest.approx(float(value), rel=1e-12), key
    assert all(key in predicted.index or value == 0 for key, value in measured.items())


@pytest.mark.parametrize(("model", "variant"), [("dlrm", "des"), ("dnn", "des-rs"), ("widedeep", "des"),
                                                ("deepfm", "des-rs")])
def test_pooled_models_under_des_equal_single_process_training_and_the_predicted_bytes(model: str,
                                                                                       variant: str) -> None:
    """DLRM (dot), DNN (concat), W&D (wide + deep) and DeepFM (FM + deep): heads built from the workload's
    layers match its dense_params; first-order sums travel with the pooled vectors."""
    from simulator.executor.pooled_models import train_reference as reference_pooled
    from simulator.executor.train import train_des as train_pooled
    from workloads import deepfm, dlrm, dnn, widedeep

    world = 2
    if model == "dlrm":
        workload = dlrm(n_tables=3, rows=300, dim=4, bottom_mlp=[8, 4], top_mlp=[8, 1], batch_per_worker=8,
                        ids="sampled", seed=9)
    else:
        workload = {"dnn": dnn, "widedeep": widedeep, "deepfm": deepfm}[model](
            n_tables=2, rows=300, dim=4, hotness=2, top_mlp=[8, 1], batch_per_worker=8, ids="sampled", seed=9)
    ranks = run_local(train_pooled, world, workload, STEPS, variant, timeout_s=60)
    tables, losses = reference_pooled(workload, world, STEPS)
    for out in ranks:
        assert np.allclose(out["losses"], losses, rtol=1e-5, atol=1e-7)
        for owned, rows, full in zip(out["owned"], out["weights"], tables, strict=True):
            assert np.allclose(rows, full[owned], rtol=1e-4, atol=1e-6)
    assert_bytes_as_predicted(ranks, simulated_bytes(workload, world, variant, STEPS))
