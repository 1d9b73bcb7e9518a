"""Collective operations lowered to point-to-point schedules, with nccl-tests sizes and bus bandwidth.

Sizes follow nccl-tests (docs/NETWORK_MODEL.md, "Collectives"): S is the ``--size``; allreduce moves S in
and out of every rank; reducescatter takes S in and leaves S/N; allgather takes S/N and leaves S; alltoall
sends S/N to every rank; broadcast sends S from rank 0; incast sends S from every rank to rank 0 (the PS push);
pushpull makes the last P ranks servers: each worker pushes S split evenly over the servers, then pulls
it back. ``busbw = algbw * factor`` with the nccl-tests factors; for incast and pushpull the factor is
the load on the busiest link relative to S (N-1, and max(1, W/P)), so busbw again compares to link speed.

Every algorithm is a ``Schedule`` with per-rank dependencies (see ``simulator.network.schedule``); nothing
here knows about time or topology.
"""

from __future__ import annotations

import math

import numpy as np

from simulator.errors import SpecError, check_choice
from simulator.network.schedule import Pattern, Schedule

OPS = ("allreduce", "reducescatter", "allgather", "alltoall", "broadcast", "incast", "pushpull")
ALGOS = ("ring", "tree", "halving-doubling", "direct", "hierarchical", "auto")
SUPPORTED: dict[str, tuple[str, ...]] = {
    "allreduce": ("ring", "tree", "halving-doubling", "direct", "hierarchical"),
    "reducescatter": ("ring", "halving-doubling", "direct", "hierarchical"),
    "allgather": ("ring", "halving-doubling", "direct", "hierarchical"),
    "alltoall": ("direct", "ring", "hierarchical"),
    "broadcast": ("ring", "tree", "direct"),
    "incast": ("direct",),
    "pushpull": ("direct",),
}
DEFAULT_ALGO = {"allreduce": "ring", "reducescatter": "ring", "allgather": "ring", "alltoall": "direct",
                "broadcast": "tree", "incast": "direct", "pushpull": "direct"}
PIPELINE_CHUNK_BYTES = 512 * 1024
MAX_PIPELINE_CHUNKS = 64


def busbw_factor(op: str, n_ranks: int, servers: int = 0) -> float:
    """nccl-tests bus-bandwidth factor (busbw = algbw * factor)."""
    n = n_ranks
    if op == "allreduce":
        return 2 * (n - 1) / n
    if op in ("reducescatter", "allgather", "alltoall"):
        return (n - 1) / n
    if op == "incast":
        return float(n - 1)
    if op == "pushpull":
        return max(1.0, (n - servers) / servers)
    return 1.0


def check_request(op: str, algo: str, n_ranks: int, servers: int = 0, ranks_per_node: int | None = None) -> None:
    """Raise SpecError for an op/algorithm/rank combination that cannot run."""
    check_choice("op", op, OPS)
    check_choice("algo", algo, ALGOS)
    if algo != "auto" and algo not in SUPPORTED[op]:
        raise SpecError("algo", algo, f"{op} supports: {', '.join(SUPPORTED[op] + ('auto',))}")
    if n_ranks < 2:
        raise SpecError("ranks", n_ranks, "a collective needs at least 2 ranks")
    if op == "pushpull":
        if not 1 <= servers < n_ranks:
            raise SpecError("servers", servers, f"pushpull needs 1 <= servers < ranks ({n_ranks})")
    elif servers:
        raise SpecError("servers", servers, "only pushpull takes --servers")
    if algo == "hierarchical" and (not ranks_per_node or ranks_per_node < 2 or n_ranks % ranks_per_node):
        raise SpecError("algo", algo, f"hierarchical needs nodes of >= 2 ranks dividing {n_ranks} ranks "
                        f"(topology gives {ranks_per_node}); use a dgx topology or another algorithm")


def build_schedule(op: str, algo: str, size_bytes: float, n_ranks: int, servers: int = 0,
                   ranks_per_node: int | None = None) -> Schedule:
    """Lower ``op`` with ``algo`` (not ``auto``) on ``n_ranks`` ranks to a schedule.

    >>> s = build_schedule("allreduce", "ring", 8e6, 4)
    >>> s.n_steps, s.total_bytes()
    (6, 48000000.0)
    """
    check_request(op, algo, n_ranks, servers, ranks_per_node)
    if algo == "auto":
        raise SpecError("algo", algo, "resolve 'auto' with simulator.collectives.tuner.choose_algorithm first")
    n, size = n_ranks, float(size_bytes)
    order = ring_order(n, ranks_per_node)
    if algo == "hierarchical":
        schedule = _hierarchical(op, size, n, int(ranks_per_node or 0))
    elif algo == "ring" and op in ("allreduce", "reducescatter", "allgather") and order is not None:
        schedule = _ring(n, size / n, 2 * (n - 1) if op == "allreduce" else n - 1, order)
    else:
        builder = _BUILDERS[(op, algo)]
        schedule = builder(size, n, servers) if op == "pushpull" else builder(size, n)
    schedule.shape = (op, algo, n, servers, ranks_per_node, pipeline_chunks(op, algo, size))
    schedule.size_bytes = size
    return schedule


def _all_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    src, dst = np.divmod(np.arange(n * n, dtype=np.int32), n)
    return src, dst


# ---- ring family ---------------------------------------------------------------------------------------
def _ring(n: int, chunk: float, steps: int, order: np.ndarray | None = None) -> Schedule:
    """``steps`` rounds of every rank sending ``chunk`` bytes to its successor along ``order``."""
    schedule = Schedule(n)
    ranks = np.arange(n) if order is None else order
    schedule.add(Pattern.of(n, ranks, np.roll(ranks, -1), chunk), steps)
    return schedule


def ring_order(n: int, ranks_per_node: int | None) -> np.ndarray | None:
    """The ring's rank order on nodes of ``ranks_per_node`` consecutive ranks: a snake (node 0 in order,
    node 1 reversed, ...), so every hop between nodes joins ranks of the same local index, i.e. the same
    rail, as NCCL builds its rings. None (plain order) without nodes or on a single node.

    >>> ring_order(8, 2).tolist()
    [0, 1, 3, 2, 4, 5, 7, 6]
    """
    if not ranks_per_node or ranks_per_node < 2 or n % ranks_per_node or n == ranks_per_node:
        return None
    grid = np.arange(n).reshape(n // ranks_per_node, ranks_per_node)
    grid[1::2] = grid[1::2, ::-1]
    return grid.ravel()


def _ring_allreduce(size: float, n: int) -> Schedule:
    return _ring(n, size / n, 2 * (n - 1))


def _ring_pass(size: float, n: int) -> Schedule:
    """N-1 rounds of S/N chunks around the ring: reduce-scatter and all-gather alike."""
    return _ring(n, size / n, n - 1)


def _ring_alltoall(size: float, n: int) -> Schedule:
    """Pairwise exchange: in round s every rank sends its block for rank + s."""
    schedule = Schedule(n)
    ranks = np.arange(n)
    for shift in range(1, n):
        schedule.add(Pattern.of(n, ranks, (ranks + shift) % n, size / n))
    return schedule


def _n_chunks(size: float) -> int:
    return int(min(MAX_PIPELINE_CHUNKS, max(1, math.ceil(size / PIPELINE_CHUNK_BYTES))))


def pipeline_chunks(op: str, algo: str, size_bytes: float) -> int | None:
    """Chunks of a pipelined algorithm (its shape changes with size); None when sizes only scale."""
    if algo == "tree" and op == "allreduce":
        return _n_chunks(size_bytes / 2)
    if op == "broadcast" and algo in ("tree", "ring"):
        return _n_chunks(size_bytes)
    return None


def _pipelined(n: int, edges: list[tuple[np.ndarray, np.ndarray, np.ndarray]], chunks: int,
               chunk_bytes: float) -> Schedule:
    """Pipelined transfers: edge set e = (src, dst, first_step) sends chunk c at step first_step + c."""
    schedule = Schedule(n)
    last = max(int(first.max()) for _, _, first in edges if len(first)) + chunks
    previous: Pattern | None = None
    repeat = 0
    for step in range(last):
        src = np.concatenate([s[(step >= f) & (step < f + chunks)] for s, _, f in edges])
        dst = np.concatenate([d[(step >= f) & (step < f + chunks)] for _, d, f in edges])
        if previous is not None and np.array_equal(previous.src, src) and np.array_equal(previous.dst, dst):
            repeat += 1
            continue
        if previous is not None:
            schedule.add(previous, repeat)
        previous, repeat = Pattern.of(n, src, dst, chunk_bytes), 1
    if previous is not None:
        schedule.add(previous, repeat)
    return schedule


def _ring_broadcast(size: float, n: int) -> Schedule:
    """Pipelined chain 0 -> 1 -> ... -> n-1: rank i forwards chunk c at step i + c."""
    chunks = _n_chunks(size)
    ranks = np.arange(n - 1)
    return _pipelined(n, [(ranks, ranks + 1, ranks)], chunks, size / chunks)


# ---- trees ---------------------------------------------------------------------------------------------
def _binary_tree(n: int, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
    """(parent, depth) of a heap-ordered binary tree over ranks; ``mirror`` relabels i -> n-1-i."""
    heap = np.arange(n)
    parent_heap = (heap - 1) // 2
    depth = np.floor(np.log2(heap + 1)).astype(np.int64)
    label = n - 1 - heap if mirror else heap
    parent = np.full(n, -1, dtype=np.int64)
    parent[label[1:]] = label[parent_heap[1:]]
    depth_by_rank = np.empty(n, dtype=np.int64)
    depth_by_rank[label] = depth
    return parent, depth_by_rank


def _tree_allreduce(size: float, n: int) -> Schedule:
    """Double binary tree (as NCCL): half the data on each of two mirrored trees, pipelined in chunks;
    chunks are reduced up to the root and broadcast back down, both directions overlapping."""
    chunks = _n_chunks(size / 2)
    edges = []
    for mirror in (False, True):
        parent, depth = _binary_tree(n, mirror)
        top = int(depth.max())
        child = np.nonzero(parent >= 0)[0]
        up_first = top - depth[child]
        edges.append((child, parent[child], up_first))
        edges.append((parent[child], child, top + depth[child] - 1))
    return _pipelined(n, edges, chunks, size / 2 / chunks)


def _tree_broadcast(size: float, n: int) -> Schedule:
    """Binary tree from rank 0, pipelined: a node at depth d forwards chunk c at step c + d - 1."""
    chunks = _n_chunks(size)
    parent, depth = _binary_tree(n, False)
    child = np.nonzero(parent >= 0)[0]
    return _pipelined(n, [(parent[child], child, depth[child] - 1)], chunks, size / chunks)


# ---- recursive halving / doubling --------------------------------------------------------------------
def _fold(n: int) -> tuple[int, np.ndarray]:
    """Largest power of two p <= n, and the extra ranks p..n-1 folded onto ranks 0..n-p-1."""
    p = 1 << (n.bit_length() - 1)
    return p, np.arange(p, n)


def _halving_doubling(size: float, n: int, halving: bool, doubling: bool) -> Schedule:
    """Rabenseifner: recursive-halving reduce-scatter and/or recursive-doubling all-gather.

    For n not a power of two, the n - p extra ranks first hand their data to a partner and get the
    result back at the end (the standard fold).
    """
    p, extra = _fold(n)
    m = p.bit_length() - 1
    schedule = Schedule(n)
    if len(extra):
        schedule.add(Pattern.of(n, extra, extra - p, size if halving else size / n))
    ranks = np.arange(p)
    if halving:
        for j in range(m):
            schedule.add(Pattern.of(n, ranks, ranks ^ (p >> (j + 1)), size / (2 ** (j + 1))))
    if doubling:
        for j in range(m):
            schedule.add(Pattern.of(n, ranks, ranks ^ (1 << j), size / (2 ** (m - j))))
    if len(extra):
        schedule.add(Pattern.of(n, extra - p, extra, size))
    return schedule


# ---- direct (all pairs at once) ------------------------------------------------------------------------
def _direct_exchange(size: float, n: int, rounds: int = 1) -> Schedule:
    schedule = Schedule(n)
    src, dst = _all_pairs(n)
    pattern = Pattern.of(n, src, dst, size / n)
    schedule.add(pattern, rounds)
    return schedule


def _direct_broadcast(size: float, n: int) -> Schedule:
    schedule = Schedule(n)
    schedule.add(Pattern.of(n, np.zeros(n - 1, dtype=np.int64), np.arange(1, n), size))
    return schedule


def _incast(size: float, n: int) -> Schedule:
    schedule = Schedule(n)
    schedule.add(Pattern.of(n, np.arange(1, n), np.zeros(n - 1, dtype=np.int64), size))
    return schedule


def _pushpull(size: float, n: int, servers: int) -> Schedule:
    """Workers 0..W-1 push S/P to each of the P servers W..n-1; servers answer with the pull."""
    workers = n - servers
    w, s = np.divmod(np.arange(workers * servers), servers)
    s = s + workers
    schedule = Schedule(n)
    schedule.add(Pattern.of(n, w, s, size / servers))
    schedule.add(Pattern.of(n, s, w, size / servers))
    return schedule


# ---- hierarchical ----------------------------------------------------------------------------------------
def _hierarchical(op: str, size: float, n: int, per_node: int) -> Schedule:
    """Nodes of ``per_node`` consecutive ranks. allreduce: ring reduce-scatter inside each node, ring
    all-reduce of the S/G shard across nodes (one ring per local index), ring all-gather inside.
    reducescatter/allgather: the inside and across halves of that. alltoall: direct inside the node,
    then direct across nodes between ranks with the same local index, carrying the node's aggregate."""
    nodes = n // per_node
    ranks = np.arange(n)
    local_next = ranks - ranks % per_node + (ranks + 1) % per_node
    across_next = (ranks + per_node) % n
    schedule = Schedule(n)
    inside = Pattern.of(n, ranks, local_next, size / per_node)
    across = Pattern.of(n, ranks, across_next, size / per_node / nodes)
    if op == "alltoall":
        node, local = np.divmod(ranks, per_node)
        src, dst = _all_pairs(n)
        same_node = node[src] == node[dst]
        schedule.add(Pattern.of(n, src[same_node], dst[same_node], size / n))
        cross = (local[src] == local[dst]) & ~same_node
        schedule.add(Pattern.of(n, src[cross], dst[cross], size / n * per_node))
        return schedule
    if op in ("allreduce", "reducescatter"):
        schedule.add(inside, per_node - 1)
    if nodes > 1:
        rounds = {"allreduce": 2 * (nodes - 1)}.get(op, nodes - 1)
        schedule.add(across, rounds)
    if op in ("allreduce", "allgather"):
        schedule.add(inside, per_node - 1)
    return schedule


_BUILDERS = {
    ("allreduce", "ring"): _ring_allreduce,
    ("reducescatter", "ring"): _ring_pass,
    ("allgather", "ring"): _ring_pass,
    ("alltoall", "ring"): _ring_alltoall,
    ("broadcast", "ring"): _ring_broadcast,
    ("allreduce", "tree"): _tree_allreduce,
    ("broadcast", "tree"): _tree_broadcast,
    ("allreduce", "halving-doubling"): lambda s, n: _halving_doubling(s, n, True, True),
    ("reducescatter", "halving-doubling"): lambda s, n: _halving_doubling(s, n, True, False),
    ("allgather", "halving-doubling"): lambda s, n: _halving_doubling(s, n, False, True),
    ("allreduce", "direct"): lambda s, n: _direct_exchange(s, n, rounds=2),
    ("reducescatter", "direct"): _direct_exchange,
    ("allgather", "direct"): _direct_exchange,
    ("alltoall", "direct"): _direct_exchange,
    ("broadcast", "direct"): _direct_broadcast,
    ("incast", "direct"): _incast,
    ("pushpull", "direct"): _pushpull,
}
