"""The asynchronous parameter server (ASP) on real gloo ranks: exactly the bytes the simulator predicts for
``ps`` with ``mode=async, dense=ps``; with one worker, plain sequential SGD (single-process training); with
several workers and servers, a run that completes."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import star_graph  # noqa: E402

from simulator.compute.roofline import load_device  # noqa: E402
from simulator.executor.launch import run_local  # noqa: E402
from simulator.executor.ps import train_ps  # noqa: E402
from simulator.network.fabric import Fabric  # noqa: E402
from simulator.run.training import make_cluster, simulate_step  # noqa: E402
from simulator.strategies import StrategyOptions  # noqa: E402
from simulator.strategies.ps import PSOptions  # noqa: E402
from workloads import Workload, dlrm, fm, lr  # noqa: E402

STEPS = 3


def small(model: str) -> Workload:
    """LR and FM as in test_executor_models; DLRM with 245 dense parameters: 2 servers hold 122 and 123
    (whole values, as the simulator splits them)."""
    if model == "lr":
        return lr(n_tables=3, rows=1000, hotness=2, batch_per_worker=16, ids="sampled", seed=5, popularity="zipf",
                  zipf_alpha=1.1)
    if model == "fm":
        return fm(n_tables=2, rows=500, dim=4, hotness=3, batch_per_worker=16, ids="sampled", seed=6)
    return dlrm(n_tables=3, rows=300, dim=4, bottom_mlp=[8, 4], top_mlp=[8, 1], batch_per_worker=8, ids="sampled",
                seed=9)


def _predicted_bytes(workload: Workload, workers: int, servers: int) -> dict[tuple[str, int], float]:
    """The simulator's bytes sent per (category, rank) for ps, mode=async, dense=ps, on dedicated servers."""
    fabric = Fabric(star_graph(workers + servers))
    cluster = make_cluster(fabric, "ps", load_device("h100"), load_device("cpu-server"), servers=servers,
                           placement="dedicated")
    cluster.collective_algorithm = "ring"
    options = StrategyOptions.default()
    options.ps = PSOptions(mode="async", dense="ps")
    trace = simulate_step(workload, cluster, "ps", "analytical", steps=STEPS, options=options).trace
    comm = trace[trace.kind != "compute"]
    return {key: float(v) for key, v in comm.groupby(["category", "rank"], observed=True).bytes_sent.sum().items()}


@pytest.mark.parametrize(("model", "workers", "servers"), [("lr", 2, 1), ("fm", 3, 1), ("dlrm", 3, 2)])
def test_asynchronous_ps_sends_the_predicted_bytes(model: str, workers: int, servers: int) -> None:
    """Every rank's counted bytes per category equal the simulator's; nothing else carries a payload."""
    workload = small(model)
    ranks = run_local(train_ps, workers + servers, workload, STEPS, servers, "async", timeout_s=60)
    measured = {(category, rank): c["bytes_sent"] for rank, out in enumerate(ranks)
                for category, c in out["counters"].items()}
    predicted = _predicted_bytes(workload, workers, servers)
    assert {category for category, _ in predicted} == {"sparse.pull", "sparse.push", "dense.pull", "dense.push"}
    for key, value in predicted.items():
        assert measured.get(key, 0.0) == pytest.approx(value, rel=1e-12), key
    assert all(key in predicted or value == 0 for key, value in measured.items())


@pytest.mark.parametrize("model", ["lr", "dlrm"])
def test_one_asynchronous_worker_is_single_process_sgd(model: str) -> None:
    """One worker and 2 servers (LR's one dense value lives on the second, the first has none): the same losses
    and rows as single-process training on that worker's batches."""
    from simulator.executor.pooled_models import train_reference as reference_pooled
    from simulator.executor.sum_models import train_reference

    steps, servers = 4, 2
    workload = small(model)
    if model == "dlrm":
        tables, losses = reference_pooled(workload, 1, steps)
    else:
        tables, _, losses = train_reference(workload, 1, steps)
    ranks = run_local(train_ps, 1 + servers, workload, steps, servers, "async", timeout_s=60)
    assert np.allclose(ranks[0]["losses"], losses, rtol=1e-5, atol=1e-7)
    assert len(ranks[0]["step_s"]) == steps and all(s > 0 for s in ranks[0]["step_s"])
    full = np.concatenate(tables)
    for out in ranks[1:]:
        assert np.allclose(out["weights"], full[out["owned"]], rtol=1e-4, atol=1e-6)


def test_three_asynchronous_workers_and_two_servers_complete() -> None:
    workers, servers = 3, 2
    ranks = run_local(train_ps, workers + servers, small("fm"), STEPS, servers, "async", timeout_s=60)
    for out in ranks[:workers]:
        assert len(out["losses"]) == len(out["step_s"]) == STEPS
        assert np.all(np.isfinite(out["losses"]))
    owned = np.concatenate([out["owned"] for out in ranks[workers:]])
    assert len(owned) == len(np.unique(owned)) == sum(t.rows for t in small("fm").tables)
    assert all(np.all(np.isfinite(out["weights"])) for out in ranks[workers:])


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="ssp"):
        train_ps(0, 2, small("lr"), 1, 1, "ssp")
