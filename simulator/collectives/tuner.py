"""Collective algorithm choice, as NCCL's tuner makes it: the fastest supported algorithm at a size.

Candidates are priced by the analytical model's step profiles (``network.analytical.schedule_profile``,
no backend built): a step costs its slowest message's route latency plus its busiest link's drain time.
Sizes in a collective's patterns are proportional to S, so a profile built at one size serves every size
of the same pipeline shape: a size sweep builds and routes each schedule once. Profiles are kept per fabric
(``profiled``), for as long as the fabric lives.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from simulator.collectives.algorithms import SUPPORTED, build_schedule, pipeline_chunks
from simulator.network.analytical import StepProfile, profile_link_bytes, profile_time_s, schedule_profile
from simulator.network.fabric import Fabric
from simulator.network.models import MODELS, NetworkModel

DIRECT_MAX_RANKS = 64  # all-pairs reductions and gathers are candidates up to this many ranks


@dataclass
class Profiled:
    """A collective's analytical step profiles at a reference size, reusable at any size of the same shape."""

    size_bytes: float
    profile: list[tuple[int, StepProfile]]
    total_bytes: float
    steps: int
    messages: int

    def time_s(self, size_bytes: float) -> float:
        """The collective's time (s) at ``size_bytes``."""
        return profile_time_s(self.profile, size_bytes / self.size_bytes)

    def link_bytes(self, size_bytes: float, n_links: int) -> np.ndarray:
        """Bytes each link carries at ``size_bytes``."""
        return profile_link_bytes(self.profile, n_links, size_bytes / self.size_bytes)


_PROFILED: weakref.WeakKeyDictionary[Fabric, dict[tuple, Profiled]] = weakref.WeakKeyDictionary()


def profiled(fabric: Fabric, op: str, algo: str, size_bytes: float, servers: int = 0,
             ranks_per_node: int | None = None, hosts: np.ndarray | None = None,
             model: NetworkModel = MODELS["maxmin"]) -> Profiled:
    """``op`` by ``algo`` over ``hosts`` (default: every host), profiled once per fabric, shape and model."""
    hosts = np.arange(fabric.n_hosts) if hosts is None else np.asarray(hosts, dtype=np.int64)
    key = (model.name, op, algo, hosts.tobytes(), servers, ranks_per_node, pipeline_chunks(op, algo, size_bytes))
    memo = _PROFILED.setdefault(fabric, {})
    entry = memo.get(key)
    if entry is None:
        schedule = build_schedule(op, algo, size_bytes, len(hosts), servers, ranks_per_node)
        entry = Profiled(size_bytes, schedule_profile(fabric, schedule, hosts, model), schedule.total_bytes(),
                         schedule.n_steps, schedule.n_messages())
        memo[key] = entry
    return entry


def candidate_algorithms(op: str, n: int, ranks_per_node: int | None) -> list[str]:
    """The algorithms ``choose_algorithm`` tries for ``op`` on ``n`` ranks, in order (ties go to the first)."""
    out = []
    for algo in SUPPORTED[op]:
        if algo == "hierarchical" and not (ranks_per_node and 1 < ranks_per_node < n and n % ranks_per_node == 0):
            continue
        if algo == "direct" and op not in ("alltoall", "incast", "pushpull") and n > DIRECT_MAX_RANKS:
            continue  # all pairs: N^2 messages to route, and never the fastest at this scale
        out.append(algo)
    return out


def choose_algorithm(op: str, size_bytes: float, fabric: Fabric, servers: int = 0, hosts: np.ndarray | None = None,
                     ranks_per_node: int | None = None) -> tuple[str, dict[str, float]]:
    """The fastest supported algorithm for ``op`` at this size over ``hosts`` (default: every host, with the
    fabric's nodes); returns it and every candidate's time (s)."""
    if hosts is None:
        per_node, n = fabric.ranks_per_node, fabric.n_hosts
    else:
        per_node, n = ranks_per_node, len(hosts)
    times = {algo: profiled(fabric, op, algo, size_bytes, servers, per_node, hosts).time_s(size_bytes)
             for algo in candidate_algorithms(op, n, per_node)}
    return min(times, key=times.__getitem__), times
