"""Running a function on N local ranks with a process group: the spawner tests and ``dessim`` use.

``run_local(fn, world_size, *args)`` starts ``world_size`` processes, gives each a process group (gloo
on CPU, NCCL when CUDA is present and asked for) with ``timeout_s`` on every collective, calls
``fn(rank, world_size, *args)`` and returns the ranks' results in rank order. A rank that raises, or
dies, ends the whole run with one ``ExecutorError`` naming the rank and the reason, within the timeout:
never a hang. Under torchrun, ``init_from_env`` sets up the same group from the environment.
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp


class ExecutorError(RuntimeError):
    """A distributed run failed: which rank, and why."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def init_from_env(backend: str = "gloo", timeout_s: float = 60.0) -> None:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, MASTER_*)."""
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))


def _rank_main(rank: int, world_size: int, port: int, backend: str, timeout_s: float, results: Any,
               fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s))
        results.put((rank, True, fn(rank, world_size, *args)))
    except BaseException as error:  # reported to the parent, which fails the run with it
        results.put((rank, False, f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}"))
        raise SystemExit(1) from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_local(fn: Callable[..., Any], world_size: int, *args: Any, backend: str = "gloo",
              timeout_s: float = 60.0) -> list[Any]:
    """``fn(rank, world_size, *args)`` on ``world_size`` local ranks; their results in rank order.

    ``fn`` must be importable (a module-level function) and its result picklable.
    """
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    processes = mp.start_processes(_rank_main, args=(world_size, free_port(), backend, timeout_s, results, fn, args),
                                   nprocs=world_size, join=False, start_method="spawn")
    outcome: dict[int, tuple[bool, Any]] = {}
    try:
        while not processes.join(timeout=0.2):
            while not results.empty():
                rank, ok, value = results.get()
                outcome[rank] = (ok, value)
                if not ok:
                    raise ExecutorError(f"rank {rank} failed: {value.splitlines()[0]}")
    except mp.ProcessExitedException as exited:
        while not results.empty():
            rank, ok, value = results.get()
            if not ok:
                raise ExecutorError(f"rank {rank} failed: {value.splitlines()[0]}") from None
        raise ExecutorError(f"rank {exited.error_index} died (exit code {exited.exit_code})") from None
    except mp.ProcessRaisedException as raised:
        raise ExecutorError(f"rank {raised.error_index} failed: {str(raised).strip().splitlines()[-1]}") from None
    finally:
        for process in processes.processes:
            if process.is_alive():
                process.kill()
    while not results.empty():
        rank, ok, value = results.get()
        outcome[rank] = (ok, value)
    missing = [r for r in range(world_size) if r not in outcome]
    if missing:
        raise ExecutorError(f"ranks {missing} returned no result")
    return [outcome[r][1] for r in range(world_size)]
