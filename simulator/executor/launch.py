"""Running a function on N local ranks with a process group: the spawner tests and ``dessim`` use.

``run_local(fn, world_size, *args)`` starts ``world_size`` processes, gives each a process group (gloo
on CPU, NCCL when CUDA is present and asked for) with ``timeout_s`` on every collective, calls
``fn(rank, world_size, *args)`` and returns the ranks' results in rank order. A rank that raises, or
dies, ends the whole run with one ``ExecutorError`` naming the rank and the reason, within the timeout:
never a hang. Under torchrun, ``init_from_env`` sets up the same group from the environment.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from simulator.errors import ExecutorError

GRACE_S = 2.0  # after a first failure, how long the other ranks get to report theirs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rank_device(backend: str, local_rank: int) -> torch.device:
    """The device a rank runs on: with NCCL, its GPU (local rank modulo the GPUs); else the CPU."""
    if backend == "nccl":
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def _init(backend: str, timeout_s: float, local_rank: int, **where: int) -> None:
    """Join the process group; NCCL is told this rank's GPU (``device_id``), so it never guesses it."""
    device_id = rank_device(backend, local_rank) if backend == "nccl" else None
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s), device_id=device_id, **where)


def init_from_env(backend: str = "gloo", timeout_s: float = 60.0) -> None:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, MASTER_*, LOCAL_RANK)."""
    _init(backend, timeout_s, int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0"))))


def _rank_main(rank: int, world_size: int, port: int, backend: str, timeout_s: float, results: Any,
               fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        _init(backend, timeout_s, rank, rank=rank, world_size=world_size)
        results.put((rank, True, fn(rank, world_size, *args), time.time()))
    except BaseException as error:  # reported to the parent, which fails the run with it
        results.put((rank, False, f"{type(error).__name__}: {' '.join(str(error).split())}", time.time()))
        raise SystemExit(1) from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_local(fn: Callable[..., Any], world_size: int, *args: Any, backend: str = "gloo",
              timeout_s: float = 60.0) -> list[Any]:
    """``fn(rank, world_size, *args)`` on ``world_size`` local ranks; their results in rank order.

    ``fn`` must be importable (a module-level function) and its result picklable. When something fails,
    the others get ``GRACE_S`` to report, then the cause is named: a rank that died without a word first
    (its peers' errors are only echoes of it), else the rank that failed first.
    """
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    port = free_port()
    processes = [context.Process(target=_rank_main, args=(rank, world_size, port, backend, timeout_s, results, fn,
                                                          args), daemon=True) for rank in range(world_size)]
    for process in processes:
        process.start()
    outcome: dict[int, tuple[bool, Any, float]] = {}
    give_up = None
    try:
        while True:
            while not results.empty():
                rank, ok, value, at = results.get()
                outcome[rank] = (ok, value, at)
            failing = any(not ok for ok, _, _ in outcome.values()) or any(
                p.exitcode not in (None, 0) for p in processes)
            if failing and give_up is None:
                give_up = time.monotonic() + GRACE_S
            if all(not p.is_alive() for p in processes) or (give_up is not None and time.monotonic() > give_up):
                break
            time.sleep(0.05)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()
    while not results.empty():
        rank, ok, value, at = results.get()
        outcome[rank] = (ok, value, at)
    silent = [r for r, p in enumerate(processes) if p.exitcode not in (0, None) and r not in outcome]
    if silent and give_up is not None:
        code = processes[silent[0]].exitcode
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        raise ExecutorError(f"rank {silent[0]} died ({how})")
    failures = sorted((at, r, value) for r, (ok, value, at) in outcome.items() if not ok)
    if failures:
        _, rank, value = failures[0]
        raise ExecutorError(f"rank {rank} failed: {value}")
    missing = [r for r in range(world_size) if r not in outcome]
    if missing:
        raise ExecutorError(f"ranks {missing} returned no result")
    return [outcome[r][1] for r in range(world_size)]
