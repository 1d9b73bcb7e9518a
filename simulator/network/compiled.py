"""The flow level's compiled kernels (numba): max-min filling and per-link sums over millions of flow entries,
and per-rank schedule progress over many lookahead windows.

Modules import this one only for large inputs (``maxmin.SolverTier``, ``fabric.COMPILED_ENTRIES``) or long runs
(``flow.COMPILED_WINDOWS``), so small runs never load numba: its import and the cached machine code take
about 0.4 s; the first compile, cached in ``__pycache__``, about 2 s a kernel.

**Progress** (``complete_progress``, ``advance_progress``, ``release_progress``): ``progress.ScheduleProgress``'s
updates, rank by rank in the order numpy's vectorized waves take them, so they release the same messages in the
same order (tests/test_progress.py compares every call).

**Filling** (``fill_levels``): the same allocation as ``maxmin.by_local_minima`` (progressive filling),
computed one bottleneck at a time in O(entries + pops x log links). A heap holds each link's fair share
(capacity left / demand of its unfrozen flows); the least share is the next bottleneck, and its unfrozen
flows freeze at that level. Freezing a flow at level s takes s x demand from each of its links and never
lowers their shares (every share is >= s), so a share in the heap is a lower bound of the link's current
one: a popped link whose share has grown is pushed back at the new value (lazy keys, no decrease-key). A
flow's bound enters the heap as an item of its own, at its bound level.

**Re-solves** (``resolve_rates``, ``resolve_indexed``): ``FluidCore._resolve_rates`` in one call, the filling inside;
the largest over a ``LinkIndex`` kept from solve to solve rather than an index built each time. A filling reads the
rows of the flows it freezes ``PREFETCH_AHEAD`` index entries ahead (``_prefetch``), so their cache misses overlap.
``batch_guess`` guesses where a completion batch ends, for ``FluidCore._completion_batch`` to confirm.

Why compiled: under hash ECMP a million-flow solve has thousands of distinct levels; in numpy each level (or
batch of levels) is a round of array operations over many links and flows, 30-450 ms a solve, and a
1,024-host ps step makes 5,203 of them (237,000 flows each on average); a bincount over a million flows'
entries makes copies of them, 10x slower than one compiled pass (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

PREFETCH_AHEAD = 16  # index entries: a filling reads a flow's row this far ahead of freezing it


@intrinsic
def _prefetch(typingctx, array, i, j):
    """Ask the CPU to fetch ``array[i, j]`` (``array[i]`` when 1-D: j unused) into cache, a hint that never faults
    or changes a value. A filling reads the rows of flows in the order of a link's index, scattered over millions
    of rows: fetching them ahead makes those misses overlap (docs/BENCHMARKS.md: a third off the largest solves)."""

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        data = context.make_array(array_type)(context, builder, args[0])
        index = [context.cast(builder, a, t, types.intp) for a, t in zip(args[1:], signature.args[1:], strict=True)]
        pointer = cgutils.get_item_pointer2(context, builder, data=data.data,
                                            shape=cgutils.unpack_tuple(builder, data.shape),
                                            strides=cgutils.unpack_tuple(builder, data.strides),
                                            layout=array_type.layout, inds=index[: array_type.ndim], wraparound=False)
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), "llvm.prefetch.p0i8")
        # read, keep in all cache levels, data cache
        builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, i, j), codegen


@numba.njit(cache=True, inline="always")
def _push(keys: np.ndarray, items: np.ndarray, n: int, key: float, item: int) -> int:
    """Add ``item`` at ``key`` to the binary min-heap in ``keys[:n]``/``items[:n]``; the new size."""
    i = n
    while i > 0:
        parent = (i - 1) >> 1
        if keys[parent] <= key:
            break
        keys[i], items[i] = keys[parent], items[parent]
        i = parent
    keys[i], items[i] = key, item
    return n + 1


@numba.njit(cache=True, inline="always")
def _pop(keys: np.ndarray, items: np.ndarray, n: int) -> int:
    """Remove the heap's least item (read ``keys[0]``/``items[0]`` first); the new size."""
    n -= 1
    key, item = keys[n], items[n]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and keys[child + 1] < keys[child]:
            child += 1
        if key <= keys[child]:
            break
        keys[i], items[i] = keys[child], items[child]
        i = child
    keys[i], items[i] = key, item
    return n


@numba.njit(cache=True, inline="always")
def _demand(coef: np.ndarray, weight: np.ndarray, row: int, f: int, h: int) -> float:
    """Bytes/s entry (f, h) puts on its link per unit of level: ``coef[row, h] x weight[f]`` (empty arrays: 1)."""
    return (coef[row, h] if coef.size else 1.0) * (weight[f] if weight.size else 1.0)


@numba.njit(cache=True)
def _fill(
    table: np.ndarray,
    rows: np.ndarray,
    direct: bool,
    capacity: np.ndarray,
    coef: np.ndarray,
    weight: np.ndarray,
    bound_level: np.ndarray,
    work: tuple,
) -> np.ndarray:
    """``fill_levels`` on prepared arrays; ``direct``: every row of ``table``, in order (``rows`` unused).
    ``work``: (rows' links, link-to-flow index, levels, frozen bits) buffers to use when large enough (``Workspace``),
    else new arrays; the levels returned are then a view of the buffer."""
    n_flows = len(table) if direct else len(rows)
    width = table.shape[1]
    n_links = len(capacity)
    work_links, work_index, work_level, work_frozen = work
    # The flows' rows side by side, in flow order: a link's flows are then read from nearby rows (consecutive
    # flows mostly share a source), 2.5x faster on a million flows than reading them from the whole table.
    if direct:
        flow_links = table
    else:
        flow_links = work_links[:n_flows] if len(work_links) >= n_flows else np.empty((n_flows, width), table.dtype)
        for f in range(n_flows):
            flow_links[f] = table[rows[f]]
    ptr = np.zeros(n_links + 1, np.int64)  # CSR of the flows on each link
    load = np.zeros(n_links)
    for f in range(n_flows):
        row = f if direct else rows[f]
        for h in range(width):
            link = flow_links[f, h]
            if link >= 0:
                ptr[link + 1] += 1
                load[link] += _demand(coef, weight, row, f, h)
    for link in range(n_links):
        ptr[link + 1] += ptr[link]
    free = ptr[:-1].copy()
    link_flows = work_index[: ptr[-1]] if len(work_index) >= ptr[-1] else np.empty(ptr[-1], np.int32)
    for f in range(n_flows):
        for h in range(width):
            link = flow_links[f, h]
            if link >= 0:
                link_flows[free[link]] = f
                free[link] += 1
    left = np.maximum(capacity, 0.0)
    level = work_level[:n_flows] if len(work_level) >= n_flows else np.empty(n_flows)
    # A bit a flow: 2 MB for 16.7 M flows stays in cache, where a byte a flow did not.
    n_words = (n_flows + 63) >> 6
    frozen = work_frozen[:n_words] if len(work_frozen) >= n_words else np.empty(n_words, np.uint64)
    for w in range(n_words):
        frozen[w] = 0
    for f in range(n_flows):
        level[f] = np.inf
    unfrozen = ptr[1:] - ptr[:-1]
    size = n_links + bound_level.size + 1  # every push after the first ones follows a pop: the heap never grows
    keys = np.empty(size)
    items = np.empty(size, np.int64)  # a link id, or n_links + f for flow f's bound
    n = 0
    for link in range(n_links):
        if unfrozen[link] > 0 and load[link] > 0:
            n = _push(keys, items, n, left[link] / load[link], link)
    for f in range(bound_level.size):
        if bound_level[f] < np.inf:
            n = _push(keys, items, n, bound_level[f], n_links + f)
    while n > 0:
        key, item = keys[0], items[0]
        n = _pop(keys, items, n)
        if item >= n_links:  # a bound: no link of the flow fills below it
            first = last = item - n_links
            share = key
        else:
            if unfrozen[item] == 0 or load[item] <= 0:
                continue
            share = left[item] / load[item]
            if share > key:  # grew since it was pushed: not yet the least
                n = _push(keys, items, n, share, item)
                continue
            first, last = ptr[item], ptr[item + 1] - 1
        for i in range(first, last + 1):
            if item < n_links and i + PREFETCH_AHEAD < len(link_flows):
                ahead = link_flows[i + PREFETCH_AHEAD]
                _prefetch(flow_links, ahead, 0)
                _prefetch(level, ahead, 0)
            f = i if item >= n_links else link_flows[i]
            bit = np.uint64(1) << np.uint64(f & 63)
            if frozen[f >> 6] & bit:
                continue
            frozen[f >> 6] |= bit
            level[f] = share
            row = f if direct else rows[f]
            for h in range(width):
                link = flow_links[f, h]
                if link >= 0:
                    d = _demand(coef, weight, row, f, h)
                    left[link] = max(left[link] - d * share, 0.0)
                    load[link] -= d
                    unfrozen[link] -= 1
    return level


def _links(table: np.ndarray) -> np.ndarray:
    """A link table as the kernels take it: int16 (``fabric.link_dtype``) as it is, anything else as int32."""
    return np.ascontiguousarray(table, dtype=np.int16 if table.dtype == np.int16 else np.int32)


def _array(values: np.ndarray | None, dtype: type | None, ndim: int) -> np.ndarray:
    """``values`` as a contiguous array of ``dtype`` (None: keep an integer dtype, int32 or int64, so that row ids
    are not copied); None as an empty one (the kernels' "absent")."""
    if values is None:
        return np.zeros((0,) * ndim, dtype=dtype or np.int32)
    return np.ascontiguousarray(values, dtype=dtype if dtype or values.dtype == np.int32 else np.int64)


def fill_levels(
    table: np.ndarray,
    capacity_Bps: np.ndarray,
    rows: np.ndarray | None = None,
    coef: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    bound_level: np.ndarray | None = None,
) -> np.ndarray:
    """Each flow's max-min fair level. Flow f crosses the links of ``table[rows[f]]`` (padded with -1; every
    row in order when ``rows`` is None); at level s, its entry h loads that link with ``coef[rows[f], h] x
    weight[f] x s`` bytes/s (1 x s when None, so the level is the rate); it stops at ``bound_level[f]``.
    ``capacity_Bps``: what each link has left. A flow with no links and no bound gets ``inf``.

    >>> fill_levels(np.array([[0, 1], [1, -1], [2, -1]]), np.array([10.0, 4.0, 6.0])).tolist()
    [2.0, 2.0, 6.0]
    """
    table = _links(np.asarray(table))
    return _fill(
        table,
        _array(rows, None, 1),
        rows is None,
        _array(capacity_Bps, np.float64, 1),
        _array(coef, np.float64, 2),
        _array(weight, np.float64, 1),
        _array(bound_level, np.float64, 1),
        Workspace(0, 0, table.dtype).fill,
    )


@numba.njit(cache=True)
def _sums(
    table: np.ndarray, rows: np.ndarray, direct: bool, per_flow: np.ndarray, coef: np.ndarray, n_links: int
) -> np.ndarray:
    """``link_sums`` on prepared arrays (``direct``: every row of ``table``; empty arrays: absent)."""
    n_flows = len(table) if direct else len(rows)
    total = np.zeros(n_links)
    for f in range(n_flows):
        row = f if direct else rows[f]
        for h in range(table.shape[1]):
            link = table[row, h]
            if link >= 0:
                total[link] += _demand(coef, per_flow, row, f, h) if per_flow.size else 1.0
    return total


def link_sums(
    table: np.ndarray,
    per_flow: np.ndarray | None,
    n_links: int,
    rows: np.ndarray | None = None,
    coef: np.ndarray | None = None,
) -> np.ndarray:
    """``fabric.link_sums`` in one pass, without temporaries: per link, the sum over flows f (the links of
    ``table[rows[f]]``) of ``per_flow[f] x coef[rows[f], h]``; a count (int64) when ``per_flow`` is None.

    >>> link_sums(np.array([[0, 1], [1, -1]]), np.array([2.0, 3.0]), 3).tolist()
    [2.0, 5.0, 0.0]
    """
    total = _sums(
        _links(table),
        _array(rows, None, 1),
        rows is None,
        _array(per_flow, np.float64, 1),
        _array(coef if per_flow is not None else None, np.float64, 2),
        n_links,
    )
    return total if per_flow is not None else total.astype(np.int64)


class Workspace:
    """Buffers for the large re-solves of one simulation (``resolve_rates``), kept from one solve to the next:
    a million-flow solve would otherwise take about 70 MB of fresh pages from the system, and the kernel's
    zeroing of them showed up as a quarter of a 4,096-host all-to-all's time (docs/BENCHMARKS.md)."""

    def __init__(self, flows: int, width: int, link_dtype: type = np.int32) -> None:
        self.fill = (np.empty((flows, width), link_dtype), np.empty(flows * width, np.int32), np.empty(flows),
                     np.empty((flows + 63) >> 6, np.uint64))
        self.rows = np.empty(flows, np.int32)

    def fits(self, flows: int) -> bool:
        return len(self.rows) >= flows


@numba.njit(cache=True, error_model="numpy")
def resolve_rates(
    table: np.ndarray,
    redo_mask: np.ndarray,
    n_redo: int,
    every: bool,
    route: np.ndarray,
    rate: np.ndarray,
    rem: np.ndarray,
    t_upd: np.ndarray,
    t_fin: np.ndarray,
    t_e: float,
    capacity_Bps: np.ndarray,
    load_Bps: np.ndarray,
    peak_util: np.ndarray,
    work_rows: np.ndarray,
    work_fill: tuple,
) -> None:
    """``FluidCore._resolve_rates`` under max-min sharing for the ``n_redo`` coupled-table rows of ``redo_mask``
    (``every``: all the alive ones), in place: their progress up to ``t_e``, their old rates out of the links'
    load ``load_Bps``, their max-min rates on what is left, their finish times, their new rates in, and each
    link's peak utilization. The same operations in the same order as the numpy path (``fill_levels`` and
    ``link_sums`` between array updates), so the same bits, without the copies and passes in between; its
    arrays in a ``Workspace`` (``work_*``) that holds ``n_redo`` flows.
    """
    n_links = len(capacity_Bps)
    redo = work_rows[:n_redo]
    j = 0
    for i in range(len(redo_mask)):
        if redo_mask[i]:
            redo[j] = i
            j += 1
    # The flows' links side by side, in flow order (``_fill`` reads them there); the sums read them there too, in
    # order, rather than each flow's row of the route table.
    flow_links = work_fill[0][:n_redo]
    old = work_fill[2][:n_redo]  # the levels' buffer: the old rates are summed out before the filling writes it
    for j in range(len(redo)):
        i = redo[j]
        flow_links[j] = table[route[i]]
        old[j] = rate[i]
        rem[i] -= rate[i] * (t_e - t_upd[i])
        t_upd[i] = t_e
    none = np.zeros(0, np.int32)
    if every:
        load_Bps[:] = 0.0
    else:
        load_Bps -= _sums(flow_links, none, True, old, np.zeros((0, 0)), n_links)
    left = np.empty(n_links)
    for link in range(n_links):
        load_Bps[link] = max(load_Bps[link], 0.0)
        left[link] = capacity_Bps[link] - load_Bps[link]
    new = _fill(flow_links, none, True, left, np.zeros((0, 0)), np.zeros(0), np.zeros(0), work_fill)
    for j in range(len(redo)):
        i = redo[j]
        t_fin[i] = t_e + max(rem[i], 0.0) / new[j]
        rate[i] = new[j]
    load_Bps += _sums(flow_links, none, True, new, np.zeros((0, 0)), n_links)
    for link in range(n_links):
        peak_util[link] = max(peak_util[link], load_Bps[link] / capacity_Bps[link])


@numba.njit(cache=True)
def batch_guess(table: np.ndarray, route: np.ndarray, rate: np.ndarray, ends: np.ndarray, allowed: np.ndarray,
                first: int) -> int:
    """``FluidCore._completion_batch``'s answer from one pass: the largest k >= ``first`` such that the first k
    finishers (on ``table[route]``, at ``rate``, ending at ``ends``: the first ``first`` in any order, then
    ascending, none before them) leave each link idle for at most ``allowed`` bytes until the k-th of them ends;
    ``len(route)`` when all do. With a link's sums R of rates and S of rate x end, its idle bytes at end u are
    u R - S: past ``allowed`` once u > (allowed + S) / R, a bound that a flow ending at u before it only lowers
    (towards u). Sums in another order than the exact check's, so a guess, which ``_largest_true`` confirms in two
    exact checks (or corrects, when rounding differs)."""
    n_links = len(allowed)
    total_rate = np.zeros(n_links)
    total_rate_s = np.zeros(n_links)
    bound_s = np.inf
    for i in range(len(route)):
        u = ends[i] - ends[0]
        for link in table[route[i]]:
            if link >= 0:
                total_rate[link] += rate[i]
                total_rate_s[link] += rate[i] * u
                if i >= first:
                    bound_s = min(bound_s, (allowed[link] + total_rate_s[link]) / total_rate[link])
        if i + 1 == first:  # the first ones in any order: their links' bounds once they are all in
            for link in range(n_links):
                if total_rate[link] > 0:
                    bound_s = min(bound_s, (allowed[link] + total_rate_s[link]) / total_rate[link])
        if i >= first and u > bound_s:
            return i
    return len(route)


class LinkIndex:
    """The coupled table's rows on each link (CSR, rows ascending) and each row's links, kept from one large
    re-solve to the next while the table adds or moves no row (its ``layout``): between two releases of a ps
    step its millions of flows only leave, and 85% of its re-solved flows are re-solved after completions
    (docs/BENCHMARKS.md). A re-solve then skips the routes' gather and the index's scattered writes, the bulk of
    ``resolve_rates``; rows that left or keep their rate stay in the index, skipped by a bit."""

    def __init__(self) -> None:
        self.layout = -1  # the table layout it indexes; -1: none
        self.ptr = np.zeros(1, np.int64)
        self.rows = np.zeros(0, np.int32)
        self.links = np.zeros((0, 0), np.int16)
        self.active = np.zeros(0, np.uint64)

    def build(self, table: np.ndarray, route: np.ndarray, alive: np.ndarray, n_alive: int, n_links: int,
              layout: int) -> None:
        """Index the alive rows of a table whose rows take the routes ``route`` (rows of the link table ``table``)."""
        n, width = len(route), table.shape[1]
        if len(self.links) < n or self.links.shape[1] != width or self.links.dtype != table.dtype:
            self.links = self.rows = None  # give the old buffers back first
            self.links = np.empty((2 * n, width), table.dtype)  # room for the table to grow
            self.active = np.empty((2 * n + 63) >> 6, np.uint64)
        if self.rows is None or len(self.rows) < n_alive * width:
            self.rows = None
            self.rows = np.empty(2 * n_alive * width, np.int32)
        self.ptr = np.zeros(n_links + 1, np.int64)
        _build_index(table, route, alive, self.links, self.ptr, self.rows)
        self.layout = layout


@numba.njit(cache=True)
def _build_index(table: np.ndarray, route: np.ndarray, alive: np.ndarray, links: np.ndarray, ptr: np.ndarray,
                 rows: np.ndarray) -> None:
    """``LinkIndex.build``'s arrays: each alive row's links (a dead row's all -1), then the CSR of rows per link."""
    for i in range(len(route)):
        if alive[i]:
            links[i] = table[route[i]]
            for link in links[i]:
                if link >= 0:
                    ptr[link + 1] += 1
        else:
            links[i] = -1
    for link in range(len(ptr) - 1):
        ptr[link + 1] += ptr[link]
    free = ptr[:-1].copy()
    for i in range(len(route)):
        for link in links[i]:
            if link >= 0:
                rows[free[link]] = i
                free[link] += 1


@numba.njit(cache=True, error_model="numpy")
def resolve_indexed(
    ptr: np.ndarray,
    index_rows: np.ndarray,
    links: np.ndarray,
    active: np.ndarray,
    redo_mask: np.ndarray,
    every: bool,
    rate: np.ndarray,
    rem: np.ndarray,
    t_upd: np.ndarray,
    t_fin: np.ndarray,
    t_e: float,
    capacity_Bps: np.ndarray,
    load_Bps: np.ndarray,
    peak_util: np.ndarray,
) -> None:
    """``resolve_rates`` over a ``LinkIndex`` of the table (``ptr``, ``index_rows``, ``links``; ``active``: its bit
    buffer): the same operations in the same order, so the same bits. The redo rows are marked in ``active``;
    filling a link reads its index entries and skips unmarked ones; a row's new rate is written as it freezes
    (its old one was summed out before)."""
    n_links = len(capacity_Bps)
    n = len(redo_mask)
    for w in range((n + 63) >> 6):
        active[w] = 0
    out = np.zeros(n_links)
    unfrozen = np.zeros(n_links, np.int64)
    for i in range(n):
        if redo_mask[i]:
            active[i >> 6] |= np.uint64(1) << np.uint64(i & 63)
            for link in links[i]:
                if link >= 0:
                    out[link] += rate[i]
                    unfrozen[link] += 1
            rem[i] -= rate[i] * (t_e - t_upd[i])
            t_upd[i] = t_e
    if every:
        load_Bps[:] = 0.0
    else:
        load_Bps -= out
    # Per link, side by side (one cache line an update): capacity left, and unfrozen flows (a flow's demand is 1
    # under max-min, so this is both ``_fill``'s load and its unfrozen count, exact in a float)
    state = np.empty((n_links, 2))
    for link in range(n_links):
        load_Bps[link] = max(load_Bps[link], 0.0)
        state[link, 0] = max(capacity_Bps[link] - load_Bps[link], 0.0)
        state[link, 1] = unfrozen[link]
    keys = np.empty(n_links + 1)
    items = np.empty(n_links + 1, np.int64)
    n_heap = 0
    for link in range(n_links):
        if state[link, 1] > 0:
            n_heap = _push(keys, items, n_heap, state[link, 0] / state[link, 1], link)
    n_entries = ptr[n_links]  # past it the index buffer holds no row
    while n_heap > 0:
        key, link = keys[0], items[0]
        n_heap = _pop(keys, items, n_heap)
        if state[link, 1] <= 0:
            continue
        share = state[link, 0] / state[link, 1]
        if share > key:  # grew since it was pushed: not yet the least
            n_heap = _push(keys, items, n_heap, share, link)
            continue
        for k in range(ptr[link], ptr[link + 1]):
            if k + PREFETCH_AHEAD < n_entries:
                ahead = index_rows[k + PREFETCH_AHEAD]
                _prefetch(links, ahead, 0)
                _prefetch(rate, ahead, 0)
            i = index_rows[k]
            bit = np.uint64(1) << np.uint64(i & 63)
            if not active[i >> 6] & bit:
                continue
            active[i >> 6] &= ~bit
            rate[i] = share
            for other in links[i]:
                if other >= 0:
                    state[other, 0] = max(state[other, 0] - share, 0.0)
                    state[other, 1] -= 1.0
    into = np.zeros(n_links)
    for i in range(n):
        if redo_mask[i]:
            if active[i >> 6] & (np.uint64(1) << np.uint64(i & 63)):
                rate[i] = np.inf  # on no link
            t_fin[i] = t_e + max(rem[i], 0.0) / rate[i]
            for link in links[i]:
                if link >= 0:
                    into[link] += rate[i]
    load_Bps += into
    for link in range(n_links):
        peak_util[link] = max(peak_util[link], load_Bps[link] / capacity_Bps[link])


@numba.njit(cache=True)
def _append(buffer: np.ndarray, n: int, value: float) -> np.ndarray:
    """``buffer`` with ``value`` at ``n`` (a copy of twice the size when full)."""
    if n == len(buffer):
        grown = np.empty(2 * len(buffer), buffer.dtype)
        for i in range(n):  # loops, not slices or array expressions: numba compiles those for seconds each
            grown[i] = buffer[i]
        buffer = grown
    buffer[n] = value
    return buffer


@numba.njit(cache=True)
def _entry_of(step_ends: np.ndarray, step: int) -> int:
    """Index of the schedule entry holding (expanded) step ``step``: the first whose end is past it."""
    low, high = 0, len(step_ends)
    while low < high:
        middle = (low + high) // 2
        if step_ends[middle] <= step:
            low = middle + 1
        else:
            high = middle
    return low


@numba.njit(cache=True)
def _resident(steps: np.ndarray, n_new: int, state: tuple, flat: tuple) -> tuple:
    """``ScheduleProgress._resident``: ring-buffer slots for ``steps[:n_new]``, grown when they would wrap."""
    cursor, outstanding, last_arrival, slot_step = state
    if n_new == 0:
        return state
    width, n_ranks = outstanding.shape
    highest, clash = steps[0], False
    for i in range(n_new):
        highest = max(highest, steps[i])
        held = slot_step[steps[i] % width]
        clash |= held != steps[i] and held >= 0  # the slot held an older step: is that one still live?
    lowest = highest
    if clash:  # the least step a rank is at, found only then (O(ranks))
        for r in range(n_ranks):
            lowest = min(lowest, cursor[r])
    if highest - lowest >= width:
        new_width = width
        while new_width < highest - lowest + 1:
            new_width *= 2
        grown_out = np.zeros((new_width, n_ranks), outstanding.dtype)
        grown_last = np.zeros((new_width, n_ranks))
        grown_slot = np.full(new_width, -1, slot_step.dtype)
        for slot in range(width):
            k = slot_step[slot]
            if k >= lowest:
                grown_slot[k % new_width] = k
                for r in range(n_ranks):
                    grown_out[k % new_width, r] = outstanding[slot, r]
                    grown_last[k % new_width, r] = last_arrival[slot, r]
        outstanding, last_arrival, slot_step, width = grown_out, grown_last, grown_slot, new_width
    for i in range(n_new):
        k = steps[i]
        slot = k % width
        if slot_step[slot] != k:
            p = flat.entry_pattern[_entry_of(flat.step_ends, k)]
            for r in range(n_ranks):
                outstanding[slot, r] = flat.involvement[p, r]
                last_arrival[slot, r] = -np.inf
            slot_step[slot] = k
    return cursor, outstanding, last_arrival, slot_step


@numba.njit(cache=True)
def _release(ranks: np.ndarray, steps: np.ndarray, n: int, rank_time: np.ndarray, flat: tuple,
             out: tuple, n_out: int) -> tuple:
    """``ScheduleProgress._release`` for ``ranks[:n]`` entering ``steps[:n]``: their sends, grouped by schedule entry
    (ranks in order within one), appended to the ``out`` buffers (step, message, ready time) at ``n_out``."""
    out_step, out_msg, out_ready = out
    entries = np.empty(n, np.int64)
    entry, last = len(flat.step_ends), -1
    for i in range(n):
        entries[i] = _entry_of(flat.step_ends, steps[i])
        entry, last = min(entry, entries[i]), max(last, entries[i])
    while entry <= last:  # each entry in turn, from the lowest: a wave spans few of them
        p = flat.entry_pattern[entry]
        for i in range(n):
            if entries[i] != entry:
                continue
            r = ranks[i]
            for pos in range(flat.sender_ptr[p, r], flat.sender_ptr[p, r + 1]):
                out_step = _append(out_step, n_out, steps[i])
                out_msg = _append(out_msg, n_out, flat.sender_order[flat.msg_off[p] + pos])
                out_ready = _append(out_ready, n_out, rank_time[r])
                n_out += 1
        entry += 1
    return (out_step, out_msg, out_ready), n_out


@numba.njit(cache=True)
def _buffers() -> tuple:
    """Empty (step, message, ready time) buffers for ``_release``."""
    return np.empty(16, np.int64), np.empty(16, np.int64), np.empty(16)


@numba.njit(cache=True)
def release_progress(ranks: np.ndarray, rank_time: np.ndarray, state: tuple, flat: tuple) -> tuple:
    """The first sends of ranks that just joined (``ScheduleProgress.release``): (state, steps, messages, ready)."""
    steps = np.empty(len(ranks), np.int64)
    for i in range(len(ranks)):
        steps[i] = state[0][ranks[i]]
    state = _resident(steps, len(ranks), state, flat)
    out, n_out = _release(ranks, steps, len(ranks), rank_time, flat, _buffers(), 0)
    return state, out[0][:n_out], out[1][:n_out], out[2][:n_out]


@numba.njit(cache=True)
def advance_progress(
    ranks: np.ndarray,
    released: np.ndarray,
    rank_time: np.ndarray,
    n_steps: int,
    state: tuple,
    flat: tuple,
) -> tuple:
    """``ScheduleProgress._advance`` (``progress.py``), in the same order, so the same messages come out in the
    same order: move ``ranks`` past every step they completed, releasing the sends of each step entered.

    ``state``: (cursor, outstanding, last_arrival, slot_step), the ring buffer possibly grown (returned);
    ``flat``: the schedule as arrays (``progress.FlatSchedule``). Returns (state, released steps, messages,
    ready times, finished ranks).
    """
    out, n_out = _buffers(), 0
    finished = np.empty(16, np.int64)
    n_done = 0
    n_wave = len(ranks)
    wave = np.empty(n_wave, np.int64)
    for i in range(n_wave):
        wave[i] = ranks[i]
    steps = np.empty(len(wave), np.int64)
    going = np.empty(len(wave), np.int64)
    while True:
        cursor = state[0]
        n = 0
        for i in range(n_wave):  # ranks with steps left
            r = wave[i]
            if released[r] and cursor[r] < n_steps:
                wave[n] = r
                steps[n] = cursor[r]
                n += 1
        if n == 0:
            break
        state = _resident(steps, n, state, flat)
        cursor, outstanding, last_arrival, slot_step = state
        n_wave = 0
        for i in range(n):  # those whose current step is complete move on
            r = wave[i]
            slot = steps[i] % len(slot_step)
            if outstanding[slot, r] == 0:
                rank_time[r] = max(rank_time[r], last_arrival[slot, r])
                cursor[r] += 1
                wave[n_wave] = r
                n_wave += 1
        if n_wave == 0:
            break
        n_going = 0
        for i in range(n_wave):
            r = wave[i]
            if cursor[r] < n_steps:
                going[n_going] = r
                steps[n_going] = cursor[r]
                n_going += 1
            else:
                finished = _append(finished, n_done, r)
                n_done += 1
        if n_going:
            state = _resident(steps, n_going, state, flat)
            out, n_out = _release(going, steps, n_going, rank_time, flat, out, n_out)
    return state, out[0][:n_out], out[1][:n_out], out[2][:n_out], finished[:n_done]


@numba.njit(cache=True)
def complete_progress(
    step: np.ndarray,
    message: np.ndarray,
    arrival: np.ndarray,
    released: np.ndarray,
    rank_time: np.ndarray,
    sent: np.ndarray,
    received: np.ndarray,
    n_steps: int,
    state: tuple,
    flat: tuple,
) -> tuple:
    """``ScheduleProgress.complete`` (``progress.py``): count the arrived messages, then ``advance_progress``."""
    outstanding, last_arrival, slot_step = state[1], state[2], state[3]
    width = len(slot_step)
    n_ranks = len(released)
    ends = np.empty(2 * len(step), np.int64)
    for i in range(len(step)):
        at = flat.msg_off[flat.entry_pattern[_entry_of(flat.step_ends, step[i])]] + message[i]
        ends[i], ends[len(step) + i] = flat.src[at], flat.dst[at]
        sent[flat.src[at]] += flat.size[at]
    for i in range(len(step)):
        received[ends[len(step) + i]] += flat.size[flat.msg_off[flat.entry_pattern[_entry_of(flat.step_ends, step[i])]]
                                                   + message[i]]
    for i in range(2 * len(step)):
        j = i % len(step)
        slot, r = step[j] % width, ends[i]
        outstanding[slot, r] -= 1
        last_arrival[slot, r] = max(last_arrival[slot, r], arrival[j])
    return advance_progress(_distinct(ends, n_ranks), released, rank_time, n_steps, state, flat)


@numba.njit(cache=True)
def _distinct(values: np.ndarray, bound: int) -> np.ndarray:
    """The distinct ``values`` (in 0..bound-1), ascending: by insertion when few (a window's completions touch
    a handful of ranks), by a pass over 0..bound-1 when many."""
    if len(values) * len(values) > bound:
        seen = np.zeros(bound, np.bool_)
        for v in values:
            seen[v] = True
        out = np.empty(len(values), np.int64)
        n = 0
        for v in range(bound):
            if seen[v]:
                out[n] = v
                n += 1
        return out[:n]
    out = np.empty(len(values), np.int64)
    n = 0
    for v in values:
        i = n
        while i > 0 and out[i - 1] > v:
            i -= 1
        if i > 0 and out[i - 1] == v:
            continue
        for j in range(n, i, -1):
            out[j] = out[j - 1]
        out[i] = v
        n += 1
    return out[:n]


@numba.njit(cache=True)
def _start_lone(limit: float, pending: tuple, pending_alive: np.ndarray, n_pending: int, iso: tuple,
                iso_alive: np.ndarray, n_iso: int, cpl_t_fin: np.ndarray, route_links: np.ndarray,
                bottleneck_Bps: np.ndarray, capacity_Bps: np.ndarray, link_count: np.ndarray, link_owner: np.ndarray,
                link_busy_s: np.ndarray, link_peak_util: np.ndarray) -> tuple:
    """``isolated_window``'s first half: move the window's arrivals into the isolated table (rows from ``n_iso``),
    if every one is alone and no coupled flow finishes before ``limit``. Returns (arrivals moved, or -1 when the
    window is not of that kind and nothing changed; new ``n_iso``; the least coupled finish and pending arrival
    time left)."""
    p_route, p_size, p_t_act, p_owner, p_tag = pending
    i_route, i_size, i_t_act, i_owner, i_tag, i_t_fin = iso
    next_s = np.inf
    for t in cpl_t_fin:
        if t < limit:
            return -1, n_iso, next_s
        next_s = min(next_s, t)
    rows = np.empty(n_pending, np.int64)
    n_rows = 0
    for r in range(n_pending):
        if p_t_act[r] < limit:
            rows[n_rows] = r
            n_rows += 1
    rows = rows[:n_rows]
    width = route_links.shape[1]
    shared = False
    for sign in (1, -1):  # count the arrivals in; out again if one shares a link
        for r in rows:
            for h in range(width):
                link = route_links[p_route[r], h]
                if link >= 0:
                    link_count[link] += sign
                    shared |= link_count[link] > 1
        if not shared:
            break
    if shared:
        return -1, n_iso, next_s
    for r in rows:  # start them, alone at their route's bottleneck rate
        route = p_route[r]
        rate = bottleneck_Bps[route]
        duration = p_size[r] / rate
        i_route[n_iso], i_size[n_iso], i_t_act[n_iso] = route, p_size[r], p_t_act[r]
        i_owner[n_iso], i_tag[n_iso], i_t_fin[n_iso] = p_owner[r], p_tag[r], p_t_act[r] + duration
        iso_alive[n_iso] = True
        for h in range(width):
            link = route_links[route, h]
            if link >= 0:
                link_owner[link] = n_iso
                link_busy_s[link] += duration
                link_peak_util[link] = max(link_peak_util[link], rate / capacity_Bps[link])
        pending_alive[r] = False
        p_t_act[r] = np.inf
        n_iso += 1
    for r in range(n_pending):
        next_s = min(next_s, p_t_act[r])
    return n_rows, n_iso, next_s


@numba.njit(cache=True)
def _finish_lone(rows: np.ndarray, iso: tuple, iso_alive: np.ndarray, route_links: np.ndarray,
                 link_count: np.ndarray, link_owner: np.ndarray, route_bytes: np.ndarray) -> tuple:
    """``isolated_window``'s second half: isolated ``rows`` (ascending) finish; their (owner, tag, finish time)."""
    i_route, i_size, i_t_act, i_owner, i_tag, i_t_fin = iso
    owner, tag, t_fin = np.empty(len(rows), i_owner.dtype), np.empty(len(rows), np.int64), np.empty(len(rows))
    for k in range(len(rows)):
        i = rows[k]
        route = i_route[i]
        for h in range(route_links.shape[1]):
            link = route_links[route, h]
            if link >= 0:
                link_count[link] -= 1
                link_owner[link] = -1
        route_bytes[route] += i_size[i]
        owner[k], tag[k], t_fin[k] = i_owner[i], i_tag[i], i_t_fin[i]
        iso_alive[i] = False
        i_t_act[i] = np.inf
        i_t_fin[i] = np.inf
    return owner, tag, t_fin


@numba.njit(cache=True)
def isolated_window(
    limit: float,
    pending: tuple,
    pending_alive: np.ndarray,
    n_pending: int,
    iso: tuple,
    iso_alive: np.ndarray,
    n_iso: int,
    cpl_t_fin: np.ndarray,
    route_links: np.ndarray,
    bottleneck_Bps: np.ndarray,
    capacity_Bps: np.ndarray,
    link_count: np.ndarray,
    link_owner: np.ndarray,
    link_busy_s: np.ndarray,
    link_peak_util: np.ndarray,
    route_bytes: np.ndarray,
) -> tuple:
    """``FluidCore.run_window`` for a window where every arrival is alone on its links and no coupled flow
    finishes (almost every window of a training step's collectives): the same updates, in the same order.

    ``pending``: (route, size, t_act, owner, tag) columns at full capacity, ``iso`` the same plus t_fin, with room
    for every pending flow after row ``n_iso``. Returns (moved, finished rows' owner, tag, t_fin, new ``n_iso``,
    the next event time after the window); ``moved`` is -1, and nothing changed, when the window is not of that
    kind (an arrival shares a link, or a coupled flow finishes before ``limit``).
    """
    moved, n_iso, next_s = _start_lone(limit, pending, pending_alive, n_pending, iso, iso_alive, n_iso, cpl_t_fin,
                                       route_links, bottleneck_Bps, capacity_Bps, link_count, link_owner,
                                       link_busy_s, link_peak_util)
    if moved < 0:
        return -1, np.zeros(0, iso[3].dtype), np.zeros(0, np.int64), np.zeros(0), n_iso, next_s
    i_t_fin = iso[5]
    rows = np.empty(n_iso, np.int64)
    n_done = 0
    for i in range(n_iso):
        if i_t_fin[i] < limit:
            rows[n_done] = i
            n_done += 1
        else:
            next_s = min(next_s, i_t_fin[i])
    owner, tag, t_fin = _finish_lone(rows[:n_done], iso, iso_alive, route_links, link_count, link_owner, route_bytes)
    return moved, owner, tag, t_fin, n_iso, next_s


@numba.njit(cache=True)
def _submit(step: np.ndarray, message: np.ndarray, ready: np.ndarray, owner: int, tag_shift: int,
            message_route: np.ndarray, route_latency_s: np.ndarray, flat: tuple, pending: tuple,
            pending_alive: np.ndarray, n_pending: int) -> int:
    """``FlowNetwork._submit`` of released messages into the pending table at ``n_pending`` (which has room):
    grouped by schedule entry, in release order within one. Returns the new ``n_pending``."""
    p_route, p_size, p_t_act, p_owner, p_tag = pending
    entries = np.empty(len(step), np.int64)
    entry, last = len(flat.step_ends), -1
    for i in range(len(step)):
        entries[i] = _entry_of(flat.step_ends, step[i])
        entry, last = min(entry, entries[i]), max(last, entries[i])
    while entry <= last:
        off = flat.msg_off[flat.entry_pattern[entry]]
        for i in range(len(step)):
            if entries[i] != entry:
                continue
            route = message_route[off + message[i]]
            p_route[n_pending], p_size[n_pending] = route, flat.size[off + message[i]]
            p_t_act[n_pending] = ready[i] + route_latency_s[route]
            p_owner[n_pending], p_tag[n_pending] = owner, (step[i] << tag_shift) | message[i]
            pending_alive[n_pending] = True
            n_pending += 1
        entry += 1
    return n_pending



@numba.njit(cache=True)
def _move_rows(column: np.ndarray, kept: np.ndarray) -> None:
    """Row ``kept[i]`` of ``column`` moves to row i."""
    for i in range(len(kept)):
        column[i] = column[kept[i]]


@numba.njit(cache=True)
def _compact(arriving: tuple, alive: np.ndarray, n: int, t_fin: np.ndarray) -> int:
    """``_Table.compact`` in place of a table's (route, size, t_act, owner, tag) columns and ``t_fin`` (empty: none):
    the alive rows of the first ``n`` moved to the front, in order; their count."""
    kept = np.empty(n, np.int64)
    k = 0
    for i in range(n):
        if alive[i]:
            kept[k] = i
            k += 1
    alive[:k] = True
    alive[k:n] = False
    kept = kept[:k]
    route, size, t_act, owner, tag = arriving
    for column in (size, t_act):
        _move_rows(column, kept)
    _move_rows(route, kept)
    _move_rows(owner, kept)
    _move_rows(tag, kept)
    if t_fin.size:
        _move_rows(t_fin, kept)
    return k


@numba.njit(cache=True)
def _heap_of(t_fin: np.ndarray, alive: np.ndarray, n: int, heap_s: np.ndarray, heap_row: np.ndarray) -> int:
    """A min-heap of the alive rows' finish times among the first ``n``; its size."""
    n_heap = 0
    for i in range(n):
        if alive[i]:
            n_heap = _push(heap_s, heap_row, n_heap, t_fin[i], i)
    return n_heap


@numba.njit(cache=True)
def lone_windows(
    now: float,
    stop_s: float,
    lookahead_s: float,
    max_windows: int,
    pending: tuple,
    pending_alive: np.ndarray,
    n_pending: int,
    iso: tuple,
    iso_alive: np.ndarray,
    n_iso: int,
    cpl_t_fin: np.ndarray,
    fabric: tuple,
    links: tuple,
    owner: int,
    tag_shift: int,
    message_route: np.ndarray,
    progress: tuple,
) -> tuple:
    """``FlowNetwork``'s loop over the windows of one run's lone messages, in one call: each window as
    ``isolated_window`` does it, its completions through ``complete_progress``, the messages they release into the
    pending table as ``_submit`` puts them there, the next window at the next event, on the simpy clock's
    arithmetic (``now`` + (t - ``now``)): the same updates in the same order, without 40 us of Python and calls
    a window. Tables are compacted as ``_Table.compact`` does it (rows keep their order; isolated flows' links
    point at their new rows).

    It stops before a window at or after ``stop_s`` (the next event of anything else: nothing can add traffic
    before it), before one that is not lone (``isolated_window`` declines it), when a table lacks room, after
    ``max_windows``, and after a window in which a rank finished (its owner must hear of it first).
    ``fabric``: (route_links, route_bottleneck_Bps, capacity_Bps, route_latency_s); ``links``: (link_count,
    link_owner, link_busy_s, link_peak_util, route_bytes); ``progress``: (released, rank_time, sent, received,
    n_steps, state, flat) of the run (owner id ``owner``), its messages' routes ``message_route`` in flat order.
    Returns (windows, n_pending, n_iso, now, next event time, progress state, finished ranks, (step, message,
    ready) released but not yet in the pending table for want of room)."""
    route_links, bottleneck_Bps, capacity_Bps, route_latency_s = fabric
    link_count, link_owner, link_busy_s, link_peak_util, route_bytes = links
    released, rank_time, sent, received, n_steps, state, flat = progress
    width = route_links.shape[1]
    finished = np.zeros(0, np.int64)
    left = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    n_pending_alive, n_iso_alive = 0, 0
    next_s = np.inf
    for i in range(n_pending):
        n_pending_alive += pending_alive[i]
        next_s = min(next_s, pending[2][i])
    for i in range(n_iso):
        n_iso_alive += iso_alive[i]
        next_s = min(next_s, iso[5][i])
    for t in cpl_t_fin:
        next_s = min(next_s, t)
    # The isolated flows' finish times in a heap, where ``isolated_window`` scans them: built once the first window
    # turns out lone (a call that runs none costs a scan), rebuilt after a compaction
    heap_s, heap_row = np.empty(len(iso_alive)), np.empty(len(iso_alive), np.int64)
    n_heap = -1
    rows = np.empty(16, np.int64)  # a window's finishers
    windows = 0
    while windows < max_windows:
        if n_heap >= 0 and n_iso >= 256 and 2 * n_iso_alive <= n_iso:
            n_iso = _compact(iso[:5], iso_alive, n_iso, iso[5])
            for i in range(n_iso):
                for h in range(width):
                    link = route_links[iso[0][i], h]
                    if link >= 0:
                        link_owner[link] = i
            n_heap = _heap_of(iso[5], iso_alive, n_iso, heap_s, heap_row)
        if n_heap > 0:
            next_s = min(next_s, heap_s[0])
        if not next_s < stop_s or n_iso + n_pending_alive > len(iso_alive):
            break
        if next_s > now + (1e-12 * abs(now) + 1e-18):  # simpy's clock moves to the event, as a timeout moves it
            now = now + (next_s - now)
        limit = max(now + lookahead_s, now + 2 * (1e-12 * abs(now) + 1e-18))
        start = n_iso
        moved, n_iso, after_s = _start_lone(limit, pending, pending_alive, n_pending, iso, iso_alive, n_iso,
                                            cpl_t_fin, route_links, bottleneck_Bps, capacity_Bps, link_count,
                                            link_owner, link_busy_s, link_peak_util)
        if moved < 0:  # nothing changed, nor the next event
            break
        next_s = after_s  # the coupled flows' and pending ones'; the heap's is taken at the loop's head or end
        if n_heap < 0:
            n_heap = _heap_of(iso[5], iso_alive, n_iso, heap_s, heap_row)
        else:
            for i in range(start, n_iso):
                n_heap = _push(heap_s, heap_row, n_heap, iso[5][i], i)
        n_rows = 0
        while n_heap and heap_s[0] < limit:
            rows = _append(rows, n_rows, heap_row[0])
            n_rows += 1
            n_heap = _pop(heap_s, heap_row, n_heap)
        done = np.sort(rows[:n_rows])  # ``isolated_window``'s order
        _, tag, t_fin = _finish_lone(done, iso, iso_alive, route_links, link_count, link_owner, route_bytes)
        windows += 1
        n_pending_alive -= moved
        n_iso_alive += moved - len(tag)
        if not len(tag):
            continue
        state, step, message, ready, finished = complete_progress(
            tag >> tag_shift, tag & ((1 << tag_shift) - 1), t_fin, released, rank_time, sent, received, n_steps,
            state, flat)
        if n_pending >= 256 and 2 * n_pending_alive <= n_pending:
            n_pending = _compact(pending, pending_alive, n_pending, np.zeros(0))
        if n_pending + len(step) > len(pending_alive):
            left = (step, message, ready)
            break
        n_pending = _submit(step, message, ready, owner, tag_shift, message_route, route_latency_s, flat, pending,
                            pending_alive, n_pending)
        n_pending_alive += len(step)
        for i in range(n_pending - len(step), n_pending):
            next_s = min(next_s, pending[2][i])
        if len(finished):
            break
    if n_heap > 0:
        next_s = min(next_s, heap_s[0])
    return windows, n_pending, n_iso, now, next_s, state, finished, left
