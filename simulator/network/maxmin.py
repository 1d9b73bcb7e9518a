"""Max-min fair rates by progressive filling (water-filling), vectorized with numpy.

All flows start at rate 0 and rise together; when a link fills, the flows crossing it freeze at that
rate and the rest keep rising. The result is the unique max-min fair allocation: no flow can get more
without taking from a flow that has no more than it.

Two exact implementations, picked by size (measured on a 2-core machine):

- ``by_local_minima``: each iteration freezes every *locally minimal* link at once, i.e. a link whose
  fair share (capacity left / unfrozen flows) is no larger than the share of any other link its flows
  cross. Such a link saturates exactly at its share (none of its flows can freeze earlier, since shares
  only grow as flows freeze elsewhere). Iterations = depth of the bottleneck chain; each costs O(entries).
  Best for the many small solves of the flow backend (alltoall on 128 hosts: 0.98 s vs 1.83 s).
- ``by_levels``: classic one-level-at-a-time filling over a link-sorted incidence list; each level costs
  O(links) and each incidence is touched a constant number of times. Best for huge solves (1 M flows,
  3,248 levels: 1.6 s vs 8.8 s).
"""

import numpy as np

from simulator.fabric import gather_ranges

REL_TOL = 1e-12
LARGE_SOLVE_ENTRIES = 200_000


def max_min_rates(flow_links: np.ndarray, capacity_Bps: np.ndarray) -> np.ndarray:
    """Max-min fair rate (bytes/s) of each flow.

    ``flow_links`` is an (F, H) int array: row f lists the link ids flow f crosses, padded with -1.
    ``capacity_Bps`` gives each link's capacity (or what is left of it). A flow with no links gets ``inf``.

    >>> max_min_rates(np.array([[0, 1], [1, -1], [2, -1]]), np.array([10.0, 4.0, 6.0])).tolist()
    [2.0, 2.0, 6.0]
    """
    if flow_links.size > LARGE_SOLVE_ENTRIES:
        return by_levels(flow_links, capacity_Bps)
    return by_local_minima(flow_links, capacity_Bps)


def by_local_minima(flow_links: np.ndarray, capacity_Bps: np.ndarray) -> np.ndarray:
    """``max_min_rates`` freezing all locally minimal links per iteration."""
    n_flows, width = flow_links.shape
    rate = np.full(n_flows, np.inf)
    valid = flow_links >= 0
    if not valid.any():
        return rate
    links, local = np.unique(flow_links[valid], return_inverse=True)
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


def by_levels(flow_links: np.ndarray, capacity_Bps: np.ndarray) -> np.ndarray:
    """``max_min_rates`` one rate level per iteration, over a link-sorted incidence list."""
    n_flows = flow_links.shape[0]
    rate = np.full(n_flows, np.inf)
    valid = flow_links >= 0
    if not valid.any():
        return rate
    links, local = np.unique(flow_links[valid], return_inverse=True)
    local_links = np.full(flow_links.shape, -1, dtype=np.int64)
    local_links[valid] = local
    entry_flow = np.nonzero(valid)[0]
    order = np.argsort(local, kind="stable")
    link_flows = entry_flow[order]
    link_ptr = np.searchsorted(local[order], np.arange(len(links) + 1))
    remaining_Bps = np.maximum(capacity_Bps[links].astype(np.float64), 0.0)
    unfrozen = np.diff(link_ptr).astype(np.float64)
    frozen = np.zeros(n_flows, dtype=bool)
    share = np.empty(len(links))
    while True:
        share.fill(np.inf)
        np.divide(remaining_Bps, unfrozen, out=share, where=unfrozen > 0)
        level = share.min()
        if level == np.inf:
            return rate
        saturated = np.nonzero(share <= level * (1 + REL_TOL))[0]
        positions, _ = gather_ranges(link_ptr, saturated)
        newly = link_flows[positions]
        newly = np.unique(newly[~frozen[newly]])
        rate[newly] = level
        frozen[newly] = True
        touched = local_links[newly]
        counts = np.bincount(touched[touched >= 0], minlength=len(links))
        remaining_Bps = np.maximum(remaining_Bps - level * counts, 0.0)
        unfrozen -= counts
        unfrozen[saturated] = 0
