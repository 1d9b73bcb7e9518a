"""The executor is device-agnostic: every tensor it makes comes from ``simulator.executor.tensors`` on the
configured device, and the communicator takes no other. Checked on the CPU by making torch's default device
``meta`` in every rank: a tensor created without the helper would land there and be refused (or fail), as
it landed on the CPU of a GPU run before (NCCL: "Tensors must be CUDA and dense"). Also: the step timer's
categories add up to each step's wall time."""

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from simulator.executor import tensors  # noqa: E402
from simulator.executor.comm import Communicator  # noqa: E402
from simulator.executor.launch import ExecutorError, run_local  # noqa: E402
from simulator.executor.run import default_servers, small_workload, train, use_device  # noqa: E402
from simulator.executor.timing import OTHER, StepTimer  # noqa: E402

STEPS = 2


def _train_with_meta_default(rank: int, ranks: int, model: str, strategy: str, servers: int) -> dict:
    use_device("gloo", rank)
    torch.set_default_device("meta")
    try:
        return train(rank, ranks, small_workload(model, 64), strategy, STEPS, servers)
    finally:
        torch.set_default_device(None)


@pytest.mark.parametrize(("model", "strategy"), [("dlrm", "des"), ("lr", "des-rs"), ("deepfm", "des-a2a"),
                                                 ("fm", "dp"), ("widedeep", "ps"), ("dlrm", "ps-async"),
                                                 ("xc", "mp-fc-knn")])
def test_every_strategy_gives_the_communicator_only_tensors_on_the_configured_device(model: str,
                                                                                      strategy: str) -> None:
    servers = default_servers(2) if strategy.startswith("ps") else 0
    reports = run_local(_train_with_meta_default, 2 + servers, model, strategy, servers, timeout_s=60)
    for report in reports:  # the run completed: nothing reached gloo or torch off the CPU
        assert np.isfinite(report.get("losses", [0.0])).all()
    worker = reports[0]
    assert len(worker["ops"]) == STEPS and len(worker["step_s"]) == STEPS


def _given_a_meta_tensor(rank: int, world: int) -> None:
    tensors.use("cpu")
    Communicator().all_reduce(torch.ones(4, device="meta"), "dense.allreduce")


def test_a_tensor_on_another_device_is_refused_by_name() -> None:
    with pytest.raises(ExecutorError, match=r"dense\.allreduce: a tensor on meta was given to the communicator; "
                                            r"the executor runs on cpu"):
        run_local(_given_a_meta_tensor, 2, timeout_s=30)


def test_step_timer_categories_are_exclusive_and_add_up_to_the_step() -> None:
    tensors.use("cpu")
    timer = StepTimer()
    with timer.op("compute.forward"):  # outside a step: not timed
        pass
    timer.begin()
    time.sleep(0.01)
    with timer.op("compute.forward"):
        time.sleep(0.02)
        with timer.op("dense.allreduce"):  # nested: taken out of the outer phase
            time.sleep(0.03)
        time.sleep(0.01)
    wall_s = timer.end()
    spent = timer.ops[0]
    assert set(spent) == {OTHER, "compute.forward", "dense.allreduce"}
    assert sum(spent.values()) == pytest.approx(wall_s, rel=1e-3)
    assert spent["dense.allreduce"] == pytest.approx(0.03, abs=0.02)
    assert spent["compute.forward"] == pytest.approx(0.03, abs=0.02)
    assert spent["dense.allreduce"] < spent["compute.forward"] + spent["dense.allreduce"] < wall_s
