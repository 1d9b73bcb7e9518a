"""What every strategy shares: the cluster it runs on, the IDs a step touches, and op helpers.

A strategy lowers (workload, cluster) to a ``StepGraph`` and a memory breakdown. The IDs a step touches
come from ``workloads.ids``: expected counts (``ids=expected``) or the actual IDs drawn by the seeded
generator the executor also uses (``ids=sampled``). Rows are owned by ``shard_of(id, parts)``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from simulator.collectives.algorithms import build_schedule
from simulator.collectives.tuner import choose_algorithm
from simulator.compute.roofline import CollectiveCost, Device
from simulator.core.stepgraph import StepGraph
from simulator.network.fabric import Fabric
from simulator.network.schedule import Pattern, Schedule
from workloads import Workload
from workloads.ids import expected_unique, make_rng, sample_batch_ids


def shard_of(ids: np.ndarray, parts: int) -> np.ndarray:
    """The owner (0..parts-1) of each row id: ``id mod parts``, as the executor shards tables."""
    return np.asarray(ids, dtype=np.int64) % parts


@dataclass
class Cluster:
    """Where a step runs: host indices of workers and PS servers (may overlap: co-located), devices."""

    fabric: Fabric
    workers: np.ndarray
    device: Device
    servers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    server_device: Device | None = None
    collective_algorithm: str | None = None  # None: the fastest (as NCCL's tuner); a name forces it (NCCL_ALGO)
    collective_costs: dict[str, CollectiveCost] = field(default_factory=dict)  # per call, by op (calibrated)

    @property
    def n_workers(self) -> int:
        return len(self.workers)


@dataclass
class Demand:
    """Rows one step touches, per table t (columns) and worker w (rows of 2-D arrays).

    ``lookups[t]``: IDs a worker looks up per step (b x fields x hotness). ``unique[w, t]``: distinct IDs in
    worker w's batch. ``unique_global[t]``: distinct IDs in the global batch. ``ids[w][t]``: the sampled IDs
    (None for expected counts).
    """

    lookups: np.ndarray
    unique: np.ndarray
    unique_global: np.ndarray
    ids: list[list[np.ndarray]] | None = None
    _splits: dict[tuple[int, bool], np.ndarray] = field(default_factory=dict, repr=False)
    _owned: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def split(self, parts: int, unique: bool = True) -> np.ndarray:
        """(workers, parts, tables): a worker's distinct IDs (or all its lookups) owned by each part.

        Expected counts split evenly (a uniform hash); sampled IDs are counted by ``shard_of`` (once).
        """
        n_workers, n_tables = self.unique.shape
        if self.ids is None:
            per = self.unique if unique else np.broadcast_to(self.lookups, self.unique.shape)
            return np.repeat(per[:, None, :] / parts, parts, axis=1)
        out = self._splits.get((parts, unique))
        if out is None:
            out = np.zeros((n_workers, parts, n_tables))
            for w, tables in enumerate(self.ids):
                for t, ids in enumerate(tables):
                    ids = np.unique(ids) if unique else ids.ravel()
                    out[w, :, t] = np.bincount(shard_of(ids, parts), minlength=parts)
            self._splits[(parts, unique)] = out
        return out

    def split_totals(self, parts: int, unique: bool = True, weights: np.ndarray | None = None,
                     ) -> tuple[np.ndarray, np.ndarray]:
        """``split``'s two reductions without its (workers, parts, tables) array where counts are expected:
        (workers, parts) sums over tables weighted by ``weights`` (default 1), and (parts, tables) sums
        over workers."""
        w = np.ones(len(self.lookups)) if weights is None else weights
        if self.ids is None:
            per = self.unique if unique else np.broadcast_to(self.lookups, self.unique.shape)
            by_pair = np.repeat((per @ w)[:, None] / parts, parts, axis=1)
            return by_pair, np.repeat(per.sum(axis=0)[None, :] / parts, parts, axis=0)
        counts = self.split(parts, unique)
        return counts @ w, counts.sum(axis=0)

    def requested(self, parts: int, workers: np.ndarray) -> np.ndarray:
        """(parts, tables): distinct IDs of each of ``workers``' batches owned by each part, summed."""
        if self.ids is None:
            return np.repeat(self.unique[workers].sum(axis=0)[None, :] / parts, parts, axis=0)
        return self.split(parts)[workers].sum(axis=0)

    def owned_global(self, parts: int) -> np.ndarray:
        """(parts, tables): distinct IDs of the global batch owned by each part."""
        if self.ids is None:
            return np.repeat(self.unique_global[None, :] / parts, parts, axis=0)
        out = self._owned.get(parts)
        if out is None:
            n_tables = len(self.unique_global)
            out = np.zeros((parts, n_tables))
            for t in range(n_tables):
                ids = np.unique(np.concatenate([tables[t].ravel() for tables in self.ids]))
                out[:, t] = np.bincount(shard_of(ids, parts), minlength=parts)
            self._owned[parts] = out
        return out


def demand(workload: Workload, n_workers: int, step: int = 0) -> Demand:
    """The rows step ``step`` touches on ``n_workers`` workers of ``batch_per_worker`` samples each."""
    b = workload.batch_per_worker
    lookups = np.array([float(b * t.fields * t.hotness) for t in workload.tables])
    if workload.ids == "expected":
        unique = np.array([expected_unique(t.rows, n, t.popularity, t.zipf_alpha)
                           for t, n in zip(workload.tables, lookups, strict=True)])
        unique_global = np.array([expected_unique(t.rows, n_workers * n, t.popularity, t.zipf_alpha)
                                  for t, n in zip(workload.tables, lookups, strict=True)])
        return Demand(lookups, np.repeat(unique[None, :], n_workers, axis=0), unique_global)
    key = (workload.model_dump_json(), n_workers, step)
    if key in _SAMPLED:  # a calibration fit or a sweep over fabrics lowers the same step many times
        _SAMPLED.move_to_end(key)
        return _SAMPLED[key]
    ids = []
    for w in range(n_workers):
        batch = sample_batch_ids(workload, b, make_rng(workload.seed, w, step))
        ids.append([np.asarray(batch[t.name]) for t in workload.tables])
    unique = np.array([[len(np.unique(x)) for x in tables] for tables in ids], dtype=np.float64)
    unique_global = np.array([len(np.unique(np.concatenate([tables[t].ravel() for tables in ids])))
                              for t in range(len(workload.tables))], dtype=np.float64)
    _SAMPLED[key] = Demand(lookups, unique, unique_global, ids)
    if len(_SAMPLED) > SAMPLED_CACHE:
        _SAMPLED.popitem(last=False)
    return _SAMPLED[key]


SAMPLED_CACHE = 64  # sampled steps kept (their IDs: a step of a small workload is a few MB)
_SAMPLED: OrderedDict[tuple[str, int, int], Demand] = OrderedDict()


def whole_nodes(cluster: Cluster, ranks: np.ndarray) -> int | None:
    """Ranks per node when ``ranks`` are whole nodes (consecutive hosts from a node boundary), else None."""
    per_node = cluster.fabric.ranks_per_node
    if per_node is not None and not (ranks[0] % per_node == 0 and np.all(np.diff(ranks) == 1)):
        return None
    return per_node


def collective(graph: StepGraph, cluster: Cluster, category: str, op: str, size_bytes: float, ranks: np.ndarray,
               deps: tuple[int, ...], step: int, name: str | None = None) -> tuple[int, ...]:
    """Add an nccl-sized collective over ``ranks`` (op name: ``name`` or the category); returns its op index
    as deps (or ``deps`` unchanged when there is nothing to send: < 2 ranks or no bytes).

    The algorithm is the fastest by the analytical model (``choose_algorithm``, as NCCL's tuner picks).
    Over whole nodes (consecutive hosts from a node boundary) rings follow the rails (``ring_order``) and
    the hierarchical algorithm is a candidate.
    """
    if len(ranks) < 2 or size_bytes <= 0:
        return deps
    per_node = whole_nodes(cluster, ranks)
    algo = cluster.collective_algorithm or choose_algorithm(op, size_bytes, cluster.fabric, hosts=ranks,
                                                            ranks_per_node=per_node)[0]
    schedule = build_schedule(op, algo, size_bytes, len(ranks), ranks_per_node=per_node)
    deps = call(graph, name or category, category, ranks, cluster.collective_costs.get(op), size_bytes, deps, step)
    return (graph.comm(name or category, category, ranks, schedule, deps=deps, step=step),)


def call(graph: StepGraph, name: str, category: str, ranks: np.ndarray, cost: CollectiveCost | None,
         buffer_bytes: np.ndarray | float, deps: tuple[int, ...], step: int, stream: str = "comm",
         worker: int | None = None) -> tuple[int, ...]:
    """Before a collective or an exchange: each rank's cost of the call beyond moving bytes over the fabric
    (``cost.call_us`` plus ``cost.ns_per_byte`` per byte of its buffer), an op of the collective's category on
    its stream; ``deps`` unchanged without a cost (the default: uncalibrated)."""
    if cost is None or not (cost.call_us or cost.ns_per_byte):
        return deps
    seconds = cost.call_us * 1e-6 + cost.ns_per_byte * 1e-9 * np.asarray(buffer_bytes, dtype=np.float64)
    return (graph.compute(f"{name}.call", category, ranks, seconds, deps=deps, step=step, stream=stream, role="comm",
                          worker=worker),)


def ids_op(graph: StepGraph, name: str, ranks: np.ndarray, seconds: np.ndarray | float, deps: tuple[int, ...],
           step: int, stream: str = "compute") -> tuple[int, ...]:
    """Add a ``compute.ids`` op (finding where a batch's IDs live: owner, dedup, routing) costing ``seconds``;
    returns its index as deps, or ``deps`` unchanged when it costs nothing (``id_ns`` 0, as in presets)."""
    if not np.any(seconds):
        return deps
    return (graph.compute(name, "compute.ids", ranks, seconds, deps=deps, step=step, stream=stream),)


def host_op(graph: StepGraph, workers: np.ndarray, device: Device, step: int) -> None:
    """A step's host time outside its ops (``device.step_overhead_us``: the framework's loop and the glue
    between ops, category ``other``), first on each worker's compute stream; none when it is 0 (presets)."""
    if device.step_overhead_us:
        graph.compute("step.host", "other", workers, device.step_overhead_us * 1e-6, step=step)


LENGTH_BYTES = 4  # one length of a KeyedJaggedTensor (int32): how many IDs a (sample, field) routes


def exchange(graph: StepGraph, name: str, category: str, src: np.ndarray, dst: np.ndarray,
             size_bytes: np.ndarray, deps: tuple[int, ...], step: int, stream: str = "comm",
             cost: CollectiveCost | None = None, worker: int | None = None) -> tuple[int, ...]:
    """Add one round of point-to-point messages between hosts (``src[i] -> dst[i]``, ``size_bytes[i]``), after
    each rank's ``cost`` of the call (``call``; its buffer: the bytes it sends, or receives if more); ``worker``:
    the worker whose own request stream it is part of (``Op.worker``)."""
    keep = (size_bytes > 0) & (src != dst)
    if not keep.all():
        src, dst, size_bytes = src[keep], dst[keep], size_bytes[keep]
    if not len(src):
        return deps
    present = np.zeros(graph.n_ranks, dtype=bool)
    present[src] = present[dst] = True
    ranks = np.nonzero(present)[0]
    position = np.cumsum(present) - 1  # host -> index among the op's ranks, without sorting
    pattern = Pattern.of(len(ranks), position[src], position[dst], size_bytes)
    schedule = Schedule(len(ranks))
    schedule.add(pattern)
    if cost is not None:
        sent, received = schedule.bytes_by_rank()
        deps = call(graph, name, category, ranks, cost, np.maximum(sent, received), deps, step, stream, worker)
    return (graph.comm(name, category, ranks, schedule, deps=deps, step=step, kind="p2p", stream=stream,
                       worker=worker),)


@dataclass(frozen=True)
class Strategy:
    """One strategy, as the registry (``simulator.strategies.REGISTRY``) holds it: ``name`` and
    ``description`` (``dessim list strategies``), the workload kind it lowers (``recommender`` or
    ``classification``), whether it needs PS servers, the ``StrategyOptions`` field it reads (``ps``, ``des``,
    ``sharding``, ``fc``; None: none), ``lower(workload, cluster, steps, options) -> Lowered`` and, where the
    analytical step is a fixed chain, ``closed_form(terms) -> figures per batch size`` (``strategies.closed``),
    which must equal the engine on ``lower``'s graph."""

    name: str
    description: str
    kind: str
    lower: Callable[..., Lowered]
    needs_servers: bool = False
    options: str | None = None
    closed_form: Callable[..., dict] | None = None


@dataclass
class Lowered:
    """A strategy's step graph, memory per device (role ("worker", "server") -> component -> bytes) and the
    choices it made that the summary reports (``details``: DES's ``des_partial`` and ``partial_width``)."""

    graph: StepGraph
    memory: dict[str, dict[str, float]]
    details: dict[str, object] = field(default_factory=dict)


def worker_memory(workload: Workload, dense_copies: float, batch_per_worker: float | np.ndarray | None = None,
                  **buffers_bytes: float | np.ndarray) -> dict[str, float | np.ndarray]:
    """A worker's memory: dense parameters (``dense_copies`` x: weights, gradients, optimizer state),
    activations of its batch (``batch_per_worker``, default the workload's), and strategy-specific buffers
    (bytes)."""
    b = workload.batch_per_worker if batch_per_worker is None else batch_per_worker
    return {"dense": workload.dense_params * workload.dtype_bytes * dense_copies,
            "activations": b * workload.activation_bytes_per_sample, **buffers_bytes}
