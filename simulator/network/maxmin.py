"""Max-min fair rates by progressive filling (water-filling).

All flows start at rate 0 and rise together; when a link fills, the flows crossing it freeze at that
rate and the rest keep rising. The result is the unique max-min fair allocation: no flow can get more
without taking from a flow that has no more than it.

Two exact implementations, picked by size (``SolverTier``):

- ``by_local_minima`` (numpy, small solves): each iteration freezes every *locally minimal* link at once,
  i.e. a link whose fair share (capacity left / unfrozen flows) is no larger than the share of any other
  link its flows cross. Such a link saturates exactly at its share (none of its flows can freeze earlier,
  since shares only grow as flows freeze elsewhere), and two such links share no unfrozen flow unless their
  shares are equal. Iterations = depth of the bottleneck chain; each costs O(entries).
- ``compiled.fill_levels`` (numba, large solves): one bottleneck at a time from a heap of shares,
  O(entries + pops x log links) whatever the number of distinct rates. Imported on first use, so runs
  without large solves never load numba.
"""

import numpy as np

REL_TOL = 1e-12
LARGE_SOLVE_ENTRIES = 15_000  # past it the compiled heap is faster per solve (4 ms vs 1 ms at 24,000 entries)
HEAVY_SOLVE_ENTRIES = 60_000  # past it always compiled (numpy: 27 ms at 96,000 entries with 2,000 levels)
WARMUP_ENTRIES = 2_000_000  # mid-size entries a simulation solves in numpy first: about numba's 0.4 s load


class SolverTier:
    """Which solver each of one simulation's solves uses, tiered as a JIT is: numpy up to
    ``LARGE_SOLVE_ENTRIES``, compiled past ``HEAVY_SOLVE_ENTRIES``, and in between numpy until such solves have
    summed ``WARMUP_ENTRIES`` flow entries, compiled after. Loading numba costs 0.4 s and 100 MB once, which a
    few mid-size solves never pay back (a 64-host DLRM step makes 7-45 of up to 24,000 entries; a 128-host ps
    step 1,233 of up to 97,536). Deterministic: a simulation's solves take the same path on every run.
    """

    def __init__(self) -> None:
        self.mid_entries = 0
        self.always = False  # set once the simulation runs compiled anyway (``FluidCore.use_compiled``)

    def compiled(self, entries: int) -> bool:
        """Whether a solve over ``entries`` flow entries runs compiled."""
        if self.always:
            return True
        if entries <= LARGE_SOLVE_ENTRIES or entries > HEAVY_SOLVE_ENTRIES:
            return entries > HEAVY_SOLVE_ENTRIES
        self.mid_entries += entries
        return self.mid_entries > WARMUP_ENTRIES


def max_min_rates(flow_links: np.ndarray, capacity_Bps: np.ndarray, rows: np.ndarray | None = None,
                  compiled: bool | None = None) -> np.ndarray:
    """Max-min fair rate (bytes/s) of each flow.

    ``flow_links`` is an (F, H) int array: row f lists the link ids flow f crosses, padded with -1; with ``rows``
    (a route table's rows), flow f crosses row ``rows[f]``. ``capacity_Bps`` gives each link's capacity (or what
    is left of it). A flow with no links gets ``inf``. ``compiled``: which solver (None: compiled past
    ``LARGE_SOLVE_ENTRIES``; a simulation asks its ``SolverTier``).

    >>> max_min_rates(np.array([[0, 1], [1, -1], [2, -1]]), np.array([10.0, 4.0, 6.0])).tolist()
    [2.0, 2.0, 6.0]
    """
    if compiled is None:
        compiled = entries_of(flow_links, rows) > LARGE_SOLVE_ENTRIES
    if compiled:
        from simulator.network.compiled import fill_levels

        return fill_levels(flow_links, capacity_Bps, rows)
    return by_local_minima(flow_links if rows is None else flow_links[rows], capacity_Bps)


def entries_of(flow_links: np.ndarray, rows: np.ndarray | None) -> int:
    """Entries (flows x width) of a solve over ``flow_links`` or its ``rows``."""
    return (len(flow_links) if rows is None else len(rows)) * flow_links.shape[1]


def _local_link_ids(entries: np.ndarray, n_links: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct link ids in ``entries`` (sorted) and each entry's index among them; no sort needed."""
    count = np.bincount(entries, minlength=n_links)
    links = np.nonzero(count)[0]
    local = (np.cumsum(count > 0, dtype=np.int32) - 1)[entries]
    return links, local


def by_local_minima(flow_links: np.ndarray, capacity_Bps: np.ndarray) -> np.ndarray:
    """``max_min_rates`` freezing all locally minimal links per iteration."""
    n_flows, width = flow_links.shape
    rate = np.full(n_flows, np.inf)
    valid = flow_links >= 0
    if not valid.any():
        return rate
    links, local = _local_link_ids(flow_links[valid], len(capacity_Bps))
    matrix = np.full(flow_links.shape, len(links), dtype=np.int64)  # padding -> a sentinel link
    matrix[valid] = local
    remaining_Bps = np.append(np.maximum(capacity_Bps[links].astype(np.float64), 0.0), np.inf)
    unfrozen = np.append(np.bincount(local, minlength=len(links)).astype(np.float64), 0.0)
    share = np.empty(len(links) + 1)
    flows = np.nonzero(valid.any(axis=1))[0]
    matrix = matrix[flows]
    while len(flows):
        share.fill(np.inf)
        np.divide(remaining_Bps, unfrozen, out=share, where=unfrozen > 0)
        flow_share = share[matrix]  # (F, H); padding reads the sentinel's inf
        flow_min = flow_share.min(axis=1)
        # The smallest bottleneck share among the flows crossing each link.
        link_floor = np.full(len(share), np.inf)
        np.minimum.at(link_floor, matrix.ravel(), np.repeat(flow_min, width))
        local_min = share <= link_floor * (1 + REL_TOL)
        local_min[-1] = False
        freeze = local_min[matrix].any(axis=1)
        rate[flows[freeze]] = flow_min[freeze]
        frozen_links = matrix[freeze].ravel()
        counts = np.bincount(frozen_links, minlength=len(share))
        used = np.bincount(frozen_links, weights=np.repeat(flow_min[freeze], width), minlength=len(share))
        remaining_Bps = np.maximum(remaining_Bps - used, 0.0)
        remaining_Bps[-1] = np.inf
        unfrozen -= counts
        unfrozen[-1] = 0.0
        flows, matrix = flows[~freeze], matrix[~freeze]
    return rate


def weighted_max_min_rates(flow_links: np.ndarray, capacity_Bps: np.ndarray, coef: np.ndarray,
                           weight: np.ndarray, bound_Bps: np.ndarray, rows: np.ndarray | None = None,
                           compiled: bool | None = None) -> np.ndarray:
    """Weighted max-min fair rates (bytes/s) with per-entry consumption and per-flow bounds, as SimGrid's
    lmm solver defines them.

    Flow f's rate is ``weight[f] * level`` while a common level rises; entry (f, h) loads link
    ``flow_links[f, h]`` with ``coef[f, h]`` bytes per byte of the flow (an ACK stream: 0.05); a flow also
    stops at ``bound_Bps[f]`` (inf: none). A link freezes its flows when full, as in ``by_local_minima``:
    link l is full at level ``remaining_l / sum(coef * weight)`` over its unfrozen flows, and a flow whose
    bound level ``bound / weight`` is below every share of its links freezes at its bound. With ``rows``, flow f
    crosses row ``rows[f]`` of ``flow_links`` with that row's ``coef``, and ``compiled`` picks the solver, as in
    ``max_min_rates``.

    >>> weighted_max_min_rates(np.array([[0], [0]]), np.array([9.0]), np.ones((2, 1)), np.array([2.0, 1.0]),
    ...                        np.full(2, np.inf)).tolist()
    [6.0, 3.0]
    """
    if compiled is None:
        compiled = entries_of(flow_links, rows) > LARGE_SOLVE_ENTRIES
    if compiled:
        from simulator.network.compiled import fill_levels

        return fill_levels(flow_links, capacity_Bps, rows, coef, weight, bound_Bps / weight) * weight
    if rows is not None:
        flow_links, coef = flow_links[rows], coef[rows]
    n_flows, width = flow_links.shape
    rate = np.minimum(np.full(n_flows, np.inf), bound_Bps)
    valid = flow_links >= 0
    if not valid.any():
        return rate
    links, local = _local_link_ids(flow_links[valid], len(capacity_Bps))
    sentinel = len(links)
    matrix = np.full(flow_links.shape, sentinel, dtype=np.int64)
    matrix[valid] = local
    demand = np.where(valid, coef, 0.0) * weight[:, None]  # bytes/s a link carries per unit of level
    remaining_Bps = np.append(np.maximum(capacity_Bps[links].astype(np.float64), 0.0), np.inf)
    load = np.bincount(matrix.ravel(), weights=demand.ravel(), minlength=sentinel + 1)
    unfrozen = np.bincount(matrix[valid], minlength=sentinel + 1)
    bound_level = bound_Bps / weight
    flows = np.nonzero(valid.any(axis=1))[0]
    matrix, demand, bound_level = matrix[flows], demand[flows], bound_level[flows]
    share = np.empty(sentinel + 1)
    while len(flows):
        share.fill(np.inf)
        np.divide(remaining_Bps, load, out=share, where=(unfrozen > 0) & (load > 0))
        share[-1] = np.inf
        flow_min = np.minimum(share[matrix].min(axis=1), bound_level)
        link_floor = np.full(sentinel + 1, np.inf)
        np.minimum.at(link_floor, matrix.ravel(), np.repeat(flow_min, width))
        local_min = share <= link_floor * (1 + REL_TOL)
        local_min[-1] = False
        freeze = local_min[matrix].any(axis=1) | (bound_level <= flow_min * (1 + REL_TOL))
        level = flow_min[freeze]
        rate[flows[freeze]] = level * weight[flows[freeze]]
        frozen_links = matrix[freeze].ravel()
        remaining_Bps -= np.bincount(frozen_links, weights=(demand[freeze] * level[:, None]).ravel(),
                                     minlength=sentinel + 1)
        np.maximum(remaining_Bps, 0.0, out=remaining_Bps)
        remaining_Bps[-1] = np.inf
        load -= np.bincount(frozen_links, weights=demand[freeze].ravel(), minlength=sentinel + 1)
        unfrozen -= np.bincount(frozen_links, minlength=sentinel + 1)
        keep = ~freeze
        flows, matrix, demand, bound_level = flows[keep], matrix[keep], demand[keep], bound_level[keep]
    return rate
