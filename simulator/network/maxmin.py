"""Max-min fair rates by progressive filling (water-filling), vectorized with numpy.

All flows start at rate 0 and rise together; when a link fills, the flows crossing it freeze at that
rate and the rest keep rising. The result is the unique max-min fair allocation: no flow can get more
without taking from a flow that has no more than it.

Cost: one sort of the (flow, link) incidences, then O(links) per distinct rate level; each incidence is
touched a constant number of times.
"""

import numpy as np

from simulator.fabric import gather_ranges

REL_TOL = 1e-12


def max_min_rates(flow_links: np.ndarray, capacity_Bps: np.ndarray) -> np.ndarray:
    """Max-min fair rate (bytes/s) of each flow.

    ``flow_links`` is an (F, H) int array: row f lists the link ids flow f crosses, padded with -1.
    ``capacity_Bps`` gives each link's capacity (or what is left of it). A flow with no links gets ``inf``.

    >>> max_min_rates(np.array([[0, 1], [1, -1], [2, -1]]), np.array([10.0, 4.0, 6.0])).tolist()
    [2.0, 2.0, 6.0]
    """
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
        open_links = unfrozen > 0
        share.fill(np.inf)
        np.divide(remaining_Bps, unfrozen, out=share, where=open_links)
        level = share.min()
        if level == np.inf:
            break
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
    return rate
