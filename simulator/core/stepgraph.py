"""A training step as strategies lower it: per-rank compute and communication ops with dependencies.

Every op runs on a set of ranks (the cluster's compute endpoints, numbered as the topology's hosts).
A compute op costs each of its ranks a duration; a communication op is a point-to-point ``Schedule``
over its ranks (schedule rank i is ``ranks[i]``). Dependencies are per rank: op B waits on rank r for
op A only if A also runs on r; ranks meet only inside communication ops, exactly as in a real program.
Each rank also runs its ops of one stream (``compute``, ``comm``, or another a strategy names, such as a
PS server's CPU) in the order they were added, like CUDA streams, so communication overlaps compute
wherever dependencies allow and no further. A stream named in ``fifo`` is a pool of ``fifo[stream]``
workers instead (a server's threads): its compute ops run as they become ready, first come first served,
at most that many at once per rank. A rank in ``serial`` runs all its ops (but those of a fifo stream) in
program order, one at a time: a synchronous program, whose blocking collectives never overlap its compute
(the executor's ranks; an eager framework without asynchronous communication). With ``cores`` set, all
ranks share one machine of that many cores, and their compute ops share them (``simulator.compute.cpu_sharing``).

The graph knows nothing of simpy or networks; ``simulator.core.engine`` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from simulator.network.schedule import Schedule

OpKind = Literal["compute", "collective", "p2p"]
OpRole = Literal["compute", "comm", "server"]  # a worker's device computing; communicating; a PS server's CPU


@dataclass(eq=False)
class Op:
    """One op of a step graph. Times in seconds, bytes per rank. ``role``: whose work it is (``OpRole``);
    ``worker``: the worker (index into ``StepGraph.workers``) whose own request stream it belongs to
    (asynchronous PS), None when it serves every worker. ``stream`` only names the op's lane."""

    index: int
    name: str
    kind: OpKind
    category: str
    ranks: np.ndarray
    deps: tuple[int, ...]
    step: int
    stream: str
    duration_s: np.ndarray | None = None
    schedule: Schedule | None = None
    role: OpRole = "compute"
    worker: int | None = None

    def bytes_by_rank(self) -> tuple[np.ndarray, np.ndarray]:
        """(sent, received) bytes of each of the op's ranks; zero for compute."""
        if self.schedule is None:
            zero = np.zeros(len(self.ranks))
            return zero, zero
        return self.schedule.bytes_by_rank()


@dataclass
class StepGraph:
    """Ops over ``n_ranks`` ranks; ``workers`` train, ``servers`` (PS only) hold parameters."""

    n_ranks: int
    workers: np.ndarray
    servers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    steps: int = 1
    ops: list[Op] = field(default_factory=list)
    fifo: dict[str, int] = field(default_factory=dict)
    serial: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    cores: int | None = None  # all ranks share one machine of this many cores (processor sharing); None: own devices

    def compute(self, name: str, category: str, ranks: np.ndarray, duration_s: np.ndarray | float,
                deps: tuple[int, ...] = (), step: int = 0, stream: str = "compute", role: OpRole = "compute",
                worker: int | None = None) -> int:
        """Add a compute op costing ``duration_s`` (per rank, or one value for all); returns its index."""
        ranks = np.asarray(ranks, dtype=np.int64)
        duration = np.broadcast_to(np.asarray(duration_s, dtype=np.float64), ranks.shape).copy()
        if np.any(duration < 0) or not np.all(np.isfinite(duration)):
            raise ValueError(f"op {name}: durations must be finite and >= 0")
        return self._add(Op(len(self.ops), name, "compute", category, ranks, tuple(deps), step, stream,
                            duration_s=duration, role=role, worker=worker))

    def comm(self, name: str, category: str, ranks: np.ndarray, schedule: Schedule, deps: tuple[int, ...] = (),
             step: int = 0, kind: OpKind = "collective", stream: str = "comm", worker: int | None = None) -> int:
        """Add a communication op running ``schedule`` over ``ranks``; returns its index."""
        ranks = np.asarray(ranks, dtype=np.int64)
        if schedule.n_ranks != len(ranks):
            raise ValueError(f"op {name}: schedule has {schedule.n_ranks} ranks, op has {len(ranks)}")
        return self._add(Op(len(self.ops), name, kind, category, ranks, tuple(deps), step, stream, schedule=schedule,
                            role="comm", worker=worker))

    def _add(self, op: Op) -> int:
        if op.stream in self.fifo and op.duration_s is None:
            raise ValueError(f"op {op.name}: only compute ops can run on the first-come-first-served stream "
                             f"{op.stream}")
        if len(np.unique(op.ranks)) != len(op.ranks) or (len(op.ranks) and (op.ranks.min() < 0
                                                                             or op.ranks.max() >= self.n_ranks)):
            raise ValueError(f"op {op.name}: ranks must be distinct and in [0, {self.n_ranks})")
        if any(not 0 <= d < op.index for d in op.deps):
            raise ValueError(f"op {op.name}: dependencies must be earlier ops")
        self.ops.append(op)
        return op.index
