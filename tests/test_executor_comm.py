"""The executor's communicator counts exactly the bytes the simulator's reference schedules send, and a
failing rank ends a run with a clear error instead of a hang (real gloo processes)."""

import os
import signal

import pytest

torch = pytest.importorskip("torch")

from simulator.collectives.algorithms import build_schedule  # noqa: E402
from simulator.executor.comm import Communicator  # noqa: E402
from simulator.executor.launch import ExecutorError, run_local  # noqa: E402

SIZE_FLOATS = 1200  # divisible by 2, 3 and 4


def _every_call(rank: int, world: int) -> dict:
    comm = Communicator()
    summed = comm.all_reduce(torch.full((SIZE_FLOATS,), float(rank)), "ar")
    gathered = comm.all_gather(torch.full((SIZE_FLOATS // world,), float(rank)), "ag")
    scattered = comm.reduce_scatter(torch.ones(SIZE_FLOATS), "rs")
    # Rank r sends r + d + 1 rows of 3 floats to rank d.
    received = comm.all_to_all([torch.full((rank + d + 1, 3), float(rank)) for d in range(world)], "a2a")
    peer = (rank + 1) % world
    inbox = torch.empty(7)
    comm.exchange({peer: torch.full((7,), float(rank))}, {(rank - 1) % world: inbox}, "p2p")
    return {"counters": comm.counters(), "sum": float(summed[0]), "gathered": gathered.tolist(),
            "scattered": scattered.tolist(), "received_rows": [x.shape[0] for x in received],
            "inbox": float(inbox[0])}


@pytest.mark.parametrize("world", [2, 4])
def test_counts_equal_the_simulators_reference_schedules(world: int) -> None:
    results = run_local(_every_call, world, timeout_s=60)
    size = SIZE_FLOATS * 4
    sent = {op: build_schedule(op, "ring", size, world).bytes_by_rank()[0]
            for op in ("allreduce", "allgather", "reducescatter")}
    for rank, out in enumerate(results):
        counters = out["counters"]
        assert counters["ar"]["bytes_sent"] == pytest.approx(sent["allreduce"][rank], rel=1e-12)
        assert counters["ag"]["bytes_sent"] == pytest.approx(sent["allgather"][rank], rel=1e-12)
        assert counters["rs"]["bytes_sent"] == pytest.approx(sent["reducescatter"][rank], rel=1e-12)
        assert counters["a2a"]["bytes_sent"] == sum((rank + d + 1) * 12 for d in range(world) if d != rank)
        assert counters["a2a"]["bytes_received"] == sum((s + rank + 1) * 12 for s in range(world) if s != rank)
        assert counters["p2p"]["bytes_sent"] == counters["p2p"]["bytes_received"] == 28
        # ... and the data is right.
        assert out["sum"] == sum(range(world))
        assert out["gathered"] == [float(r) for r in range(world) for _ in range(SIZE_FLOATS // world)]
        assert out["scattered"] == [float(world)] * (SIZE_FLOATS // world)
        assert out["received_rows"] == [s + rank + 1 for s in range(world)]
        assert out["inbox"] == float((rank - 1) % world)


def _one_rank_dies(rank: int, world: int) -> int:
    if rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    Communicator().all_reduce(torch.ones(4), "ar")
    return rank


def _one_rank_raises(rank: int, world: int) -> int:
    if rank == 2:
        raise ValueError("shard 2 is corrupt")
    Communicator().all_reduce(torch.ones(4), "ar")
    return rank


def test_a_killed_rank_fails_the_run_with_a_clear_error() -> None:
    with pytest.raises(ExecutorError, match=r"rank 1 died \(signal SIGKILL\)"):
        run_local(_one_rank_dies, 3, timeout_s=20)


def test_a_raising_rank_fails_the_run_with_its_message() -> None:
    with pytest.raises(ExecutorError, match=r"rank 2 failed: ValueError: shard 2 is corrupt"):
        run_local(_one_rank_raises, 3, timeout_s=20)
