"""Embedding tables as the executor's workers hold them: table-batched, as TorchRec's fused embeddings.

Every table's rows live in one (rows, width) tensor, tables one after another, so one lookup serves all
tables of a step (tables must share a row width, as the executor's models do). Lookups give sparse
gradients: backward and the update touch only the looked-up rows, as the simulator's embedding update of
unique rows. A batch's ID columns are the tables' (fields x hotness) columns side by side (``Columns``).

- ``OwnedTables``: the rows one DES worker owns (``id mod N == rank``, ``simulator.strategies.base.shard_of``).
- ``ReplicatedTables``: DP's full copy, with one flat gradient bucket all-reduced in place.
- ``gather_ids`` and ``route_ids``: DES's ID exchanges, one collective for all tables (``des.ids``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from simulator.executor import tensors
from simulator.executor.comm import Communicator
from simulator.executor.tensors import from_numpy
from workloads import Workload


def initial_rows(workload: Workload) -> list[np.ndarray]:
    """Every table's rows, (rows, params_per_id) fp32, before training, from the workload's seed (the same
    for every strategy and the single-process reference)."""
    return [np.random.default_rng([workload.seed, 7, t]).normal(0.0, 0.1, (spec.rows, spec.params_per_id))
            .astype(np.float32) for t, spec in enumerate(workload.tables)]


def bag_sum(weight: torch.Tensor, index: torch.Tensor, bags: torch.Tensor, n_bags: int,
            sparse: bool) -> torch.Tensor:
    """Rows ``index`` of ``weight`` summed per bag, (n_bags, width): ``bags`` gives each row's bag, in
    nondecreasing order (empty bags sum to 0). One fused embedding-bag op looks up and pools at once, as
    TorchRec's kernels do; the gradient is sparse (the rows touched) when ``sparse``."""
    counts = torch.bincount(bags, minlength=n_bags)
    offsets = torch.cumsum(counts, 0) - counts
    return torch.nn.functional.embedding_bag(index, weight, offsets, mode="sum", sparse=sparse)


def apply_sparse(weight: torch.Tensor, grad: torch.Tensor, learning_rate: float) -> None:
    """SGD on the rows a sparse gradient touches; index_add sums duplicate rows without a sort (the values
    are scaled first: index_add_'s ``alpha`` takes a path ~20x slower on the CPU, torch 2.13)."""
    with torch.no_grad():
        weight.index_add_(0, grad._indices()[0], grad._values() * -learning_rate)


@dataclass(frozen=True)
class Columns:
    """Where each ID column of a batch belongs: ``table`` and ``field`` (fields numbered across tables) per
    column; ``field_table`` per field; ``field_starts``: each field's first column."""

    table: torch.Tensor
    field: torch.Tensor
    field_table: torch.Tensor
    field_starts: np.ndarray

    @property
    def fields(self) -> int:
        return len(self.field_starts)


def columns(workload: Workload) -> Columns:
    tables = workload.tables
    field_table = np.repeat(np.arange(len(tables)), [t.fields for t in tables])
    hotness = np.repeat([t.hotness for t in tables], [t.fields for t in tables])  # per field
    field = np.repeat(np.arange(len(field_table)), hotness)
    return Columns(from_numpy(np.repeat(np.arange(len(tables)), [t.fields * t.hotness for t in tables])),
                   from_numpy(field), from_numpy(field_table), np.concatenate([[0], np.cumsum(hotness)[:-1]]))


def _width(rows: list[np.ndarray]) -> int:
    widths = {r.shape[1] for r in rows}
    if len(widths) != 1:
        raise ValueError(f"table-batched embeddings need one row width across tables, not {sorted(widths)}")
    return widths.pop()


class _Batched:
    """Tables' rows in one trainable tensor; ``start[t]``: table t's first row."""

    def __init__(self, shards: list[np.ndarray]) -> None:
        _width(shards)
        self.sizes = [len(s) for s in shards]
        self.start = from_numpy(np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64))
        self.weight = from_numpy(np.concatenate(shards)).requires_grad_(True)

    def tables(self) -> list[torch.Tensor]:
        """Each table's rows (views)."""
        return list(self.weight.detach().split(self.sizes))


class OwnedTables(_Batched):
    """The rows worker ``rank`` of ``world`` owns of every table: table t's row ``id`` is its row
    ``start[t] + id // world``. ``owned``: per table, the IDs held, in order."""

    def __init__(self, rows: list[np.ndarray], rank: int, world: int) -> None:
        super().__init__([table[rank::world] for table in rows])
        self.rank, self.world = rank, world
        self.owned = [np.arange(rank, len(table), world) for table in rows]

    def index(self, ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Where the rows of ``ids`` (all owned here) of tables ``table`` (same shape) are in ``weight``."""
        return self.start[table] + ids // self.world

    def owned_in(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Of a batch's (n, columns) IDs, the ones held here: their sample, column and ID."""
        sample, column = torch.nonzero(ids % self.world == self.rank, as_tuple=True)
        return sample, column, ids[sample, column]


class ReplicatedTables(_Batched):
    """DP's tables: a full copy, and one flat gradient bucket into which the sparse gradients are added,
    all-reduced in place (``sparse.allreduce``, as DDP's buckets) and applied in one pass."""

    def __init__(self, rows: list[np.ndarray]) -> None:
        super().__init__(rows)
        self.owned = [np.arange(len(table)) for table in rows]
        self.grad = torch.zeros_like(self.weight)

    def index(self, ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Where the rows of ``ids`` of tables ``table`` (same shape) are in ``weight``."""
        return self.start[table] + ids

    def all_reduce_and_update(self, comm: Communicator, learning_rate: float) -> None:
        """Add the lookups' sparse row gradients into the zeroed bucket (the tables' dense gradient, as DDP's
        embedding backward makes it: timed as ``compute.backward``), all-reduce it, apply it."""
        with torch.no_grad():
            with comm.timer.op("compute.backward"):
                self.grad.zero_()
                self.grad.index_add_(0, self.weight.grad._indices()[0], self.weight.grad._values())
                self.weight.grad = None
            comm.all_reduce(self.grad, "sparse.allreduce")
            with comm.timer.op("compute.update"):
                self.weight.add_(self.grad, alpha=-learning_rate)


def gather_ids(ids: list[np.ndarray], comm: Communicator) -> torch.Tensor:
    """The global batch's (B, columns) IDs from this worker's tables' (b, columns) ones: one all-gather of all
    tables at once (``des.ids``)."""
    return comm.all_gather(from_numpy(np.concatenate(ids, axis=1)), "des.ids")


def route_ids(ids: list[np.ndarray], layout: Columns, comm: Communicator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each worker sends every owner (``id mod N``) the IDs of its batch that owner holds, in one all-to-all
    (``des.ids``, sample-major, fields in order), after how many per (sample, field) (``des.lengths``, b x
    fields int32 to every owner, as a KeyedJaggedTensor's lengths). Per requester: (the segment of each
    received ID, sample x fields + field; the IDs), as received here."""
    with comm.timer.op("compute.ids"):
        batch = np.concatenate(ids, axis=1)
        owner = batch % comm.world
        b = len(batch)
        to = [from_numpy(batch[owner == o]) for o in range(comm.world)]
        counts = [from_numpy(np.add.reduceat(owner == o, layout.field_starts, axis=1, dtype=np.int32))
                  for o in range(comm.world)]  # int32 lengths, as TorchRec's KeyedJaggedTensor
    got_counts = comm.all_to_all(counts, "des.lengths", [b] * comm.world)  # (b, fields) from each rank
    got_ids = comm.all_to_all(to, "des.ids", [int(c.sum()) for c in got_counts])
    with comm.timer.op("compute.ids"):
        return [(torch.repeat_interleave(tensors.arange(c.numel()), c.reshape(-1)), got) for c, got in
                zip(got_counts, got_ids, strict=True)]
