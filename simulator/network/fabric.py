"""A topology compiled for simulation: directed links as numpy arrays, hosts in rank order, ECMP routes.

Semantics (docs/NETWORK_MODEL.md, "Semantics"): a cable is two directed links; switches forward, hosts never do;
a flow follows one shortest path (fewest links); among equal-cost paths each switch picks a next hop by
hashing (src, dst, flow_index, switch), so the spread is deterministic and per flow. Routes are computed
in vectorized batches, one breadth-first search per chain base (an edge switch, a rail: ``_chain_parent_links``)
rather than per destination host, and cached.

>>> import networkx as nx
>>> g = nx.Graph(hosts=["h0", "h1"])
>>> g.add_nodes_from(["h0", "h1"], kind="host"); g.add_node("sw", kind="switch")
>>> g.add_edge("h0", "sw", link_gbps=100, latency_us=1); g.add_edge("sw", "h1", link_gbps=100, latency_us=1)
>>> fabric = Fabric(g)
>>> route = fabric.route_ids([0], [1])[0]
>>> float(fabric.route_latency_s[route]), float(fabric.route_bottleneck_Bps[route])
(2e-06, 12500000000.0)
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator.errors import SpecError
from simulator.units import gbps_to_Bps, us_to_s
from topologies.cables import Cables

if TYPE_CHECKING:
    import networkx as nx

_UNREACHED = np.iinfo(np.int16).max
_ROUTE_CHUNK = 1 << 16
_BFS_CHUNK = 256
_HOP_TABLE_ENTRIES = 50_000_000  # (distance rows) x (links into switches): beyond it, walks gather per flow


PAIR_TABLE_PAIRS = 1 << 25  # up to this many host pairs (5,792 hosts), first flows' routes may go to a table per pair
COMPILED_ENTRIES = 1 << 20  # link sums over more entries than this run compiled (``compiled.link_sums``)


def entries(per_row: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``per_row[f]`` for each real entry (f, h) of a padded link matrix whose mask is ``valid``."""
    return per_row[:, None].repeat(valid.shape[1], axis=1)[valid]


def link_sums(links: np.ndarray, per_flow: np.ndarray | None, n_links: int, rows: np.ndarray | None = None,
              coef: np.ndarray | None = None) -> np.ndarray:
    """Per link, the sum over flows f of ``per_flow[f]`` (x ``coef[rows[f], h]`` per entry when given) over the
    real entries of row ``rows[f]`` of a padded link matrix (row f when ``rows`` is None); a count when
    ``per_flow`` is None.

    Past ``COMPILED_ENTRIES``, or at any size once numba is loaded, in one compiled pass that gathers nothing and
    adds in the same order (the same bits): a bincount over millions of flows copies their rows, entries (as
    int64) and weights (one per entry), the largest arrays of a big rate solve, and takes 4-10x longer.
    """
    n_flows = len(links) if rows is None else len(rows)
    if n_flows * links.shape[1] > COMPILED_ENTRIES or "simulator.network.compiled" in sys.modules:
        from simulator.network import compiled

        return compiled.link_sums(links, per_flow, n_links, rows, coef)
    if rows is not None:
        links = links[rows]
        coef = None if coef is None else coef[rows]
    valid = links >= 0
    weights = None
    if per_flow is not None:
        weights = entries(per_flow, valid) if coef is None else (per_flow[:, None] * coef)[valid]
    return np.bincount(links[valid], weights, minlength=n_links)


def link_dtype(n_links: int) -> type:
    """The integer type of link ids in route tables: int16 while ids, the padding (-1) and id + 1 fit, int32 past
    32,766 links. Half the memory of int32, and half the memory traffic of the large solves, which read millions
    of route rows (a 4,096-host all-to-all: 16.7 M routes, 200 MB instead of 400)."""
    return np.int16 if n_links < np.iinfo(np.int16).max else np.int32


def distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` by a sort: numpy 2.4's ``unique`` hashes, 12x slower on millions of distinct int64
    keys (16.7 M: 18.5 s against 1.5 s).

    >>> distinct(np.array([3, 1, 3, 2])).tolist()
    [1, 2, 3]
    """
    ordered = np.sort(values)
    first = np.ones(len(ordered), dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return ordered[first]


def gather_ranges(ptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate CSR segments ``ptr[r]:ptr[r+1]`` for each r in ``rows``.

    Returns (positions, owner) where ``owner[j]`` is the index into ``rows`` that position j came from.
    """
    starts = ptr[rows]
    lengths = ptr[rows + 1] - starts
    owner = np.repeat(np.arange(len(rows)), lengths)
    if len(owner) == 0:
        return np.zeros(0, dtype=np.int64), owner
    offsets = np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + offsets, owner


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: a fast, well-spread integer hash (vectorized, wrapping uint64 arithmetic)."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


@dataclass(frozen=True)
class _HopTable:
    """Next hops toward every destination host, for ECMP walks, with a row per chain base (``Fabric._chains``): a
    host's route is the walk toward its base, then down its chain (a fat-tree: a row per edge switch; a rail cluster:
    a row per rail). ``near``, where some sources do not route through the base, says which flows walk on distance
    rows of their own (``Fabric._near_groups``).

    ``row``/``depth``: per host rank, its base's row and its chain's length in hops; ``down[rank, j]``: the link into
    its chain's node j (0: the host) from node j + 1; ``dist``: (rows, nodes) hop counts; candidate links one hop
    closer from node n toward row r: ``links[ptr[r * n_nodes + n]:...+1]``."""

    row: np.ndarray
    depth: np.ndarray
    down: np.ndarray
    near: np.ndarray | None
    dist: np.ndarray
    ptr: np.ndarray
    links: np.ndarray


@dataclass(frozen=True)
class LinkGrid:
    """A fabric's links at other rates and latencies, one configuration per row, against those it was built with.

    A link of rate class c (``Fabric.link_rate_class``) drains in ``drain_ratio[:, c]`` times its built time
    (the built rate over the configuration's; the last class, links no parameter sets, keeps 1). A route's
    latency (s) grows by ``latency_delta_s[:, k]`` per unit of its latency class k (its links' shares of the
    parameter: ``Fabric.link_latency_share``). Routes do not depend on rates or latencies, so one fabric's
    routes serve every row.
    """

    drain_ratio: np.ndarray
    latency_delta_s: np.ndarray

    def __len__(self) -> int:
        return len(self.drain_ratio)

    def take(self, rows: np.ndarray) -> LinkGrid:
        """The configurations ``rows``."""
        return LinkGrid(self.drain_ratio[rows], self.latency_delta_s[rows])


class KeyCache:
    """Ids of int64 keys, made by ``build`` the first time a key is seen; sorted arrays, no per-key objects."""

    def __init__(self) -> None:
        self._keys = np.zeros(0, dtype=np.int64)
        self._id_of_key = np.zeros(0, dtype=np.int64)

    def ids(self, keys: np.ndarray, build: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The id of each key; ``build(new sorted unique keys)`` returns the ids of keys not seen before."""
        known = np.zeros(len(keys), dtype=bool)
        if len(self._keys):
            pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
            known = self._keys[pos] == keys
        if not np.all(known):
            new_keys = distinct(keys[~known])
            new_ids = build(new_keys)
            if len(self._keys):
                merged = np.concatenate([self._keys, new_keys])
                order = np.argsort(merged, kind="stable")
                self._keys = merged[order]
                self._id_of_key = np.concatenate([self._id_of_key, new_ids])[order]
            else:  # already sorted
                self._keys, self._id_of_key = new_keys, np.asarray(new_ids, dtype=np.int64)
        return self._id_of_key[np.searchsorted(self._keys, keys)]

    def first_flow_table(self, n_pairs: int) -> np.ndarray:
        """Hand the ids of keys with flow index 0 (key = pair x 65,536) over to a table indexed by pair (-1: none),
        removing them from the cache."""
        table = np.full(n_pairs, -1, dtype=np.int32)
        first = self._keys % 65536 == 0
        table[self._keys[first] // 65536] = self._id_of_key[first]
        self._keys, self._id_of_key = self._keys[~first], self._id_of_key[~first]
        return table


def _graph_links(graph: nx.Graph | nx.DiGraph) -> tuple[list, list, tuple]:
    """(nodes, their kinds, directed links as ``Cables.links`` gives them) of a networkx graph, in its node and
    edge order (a cable is two links); a link's bandwidth or latency out of range is a SpecError."""
    nodes = list(graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    src, dst, gbps, lat_us, link_attrs = [], [], [], [], []
    directed = graph.is_directed()
    for u, v, attrs in graph.edges(data=True):
        bandwidth, latency = attrs.get("link_gbps"), attrs.get("latency_us", 0.0)
        if bandwidth is None or not float(bandwidth) > 0:
            raise SpecError(f"link {u}-{v}.link_gbps", bandwidth, "every link needs a bandwidth > 0")
        if not float(latency) >= 0:
            raise SpecError(f"link {u}-{v}.latency_us", latency, "latency must be >= 0")
        pairs = [(u, v)] if directed else [(u, v), (v, u)]
        for a, b in pairs:
            src.append(index[a])
            dst.append(index[b])
            gbps.append(float(bandwidth))
            lat_us.append(float(latency))
            link_attrs.append(attrs)
    links = (np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64), np.array(gbps, dtype=np.float64),
             np.array(lat_us, dtype=np.float64), link_attrs)
    return nodes, [graph.nodes[n].get("kind") for n in nodes], links


class Fabric:
    """Directed links, hosts and cached ECMP routes of one topology: a networkx graph, or a builder's plain
    ``Cables`` (the same links in the same order, without networkx).

    Attributes (arrays indexed by link id): ``link_src``, ``link_dst`` (node ids), ``capacity_Bps``
    (bytes/s), ``latency_s``; for a builder's topology, the parameters links take their rates and latencies
    from (its edges' ``gbps_param``, ``latency_param``): ``rate_params`` and per link ``link_rate_class`` (an
    index into them; ``len(rate_params)``: a rate no parameter sets), ``latency_params``,
    ``link_latency_class`` and ``link_latency_share`` (latency = share x the parameter; links no parameter
    sets are in class ``len(latency_params)``); ``param_values``: the values it was built with (Gb/s, us).
    Routes are rows of ``route_links`` (link ids padded with -1), with ``route_latency_s`` (sum over links,
    paid once per message) and ``route_bottleneck_Bps``.
    These arrays grow as new routes are computed: call ``route_ids`` first, then index them.
    """

    def __init__(self, graph: nx.Graph | nx.DiGraph | Cables, ecmp: str | None = None, ecmp_seed: int = 0) -> None:
        """``ecmp``: ``hash`` (per-flow hashing, the default) or ``dmodk`` (each multi-way hop picks
        ``digit`` of the destination rank in mixed radix: the deterministic fat-tree spread of InfiniBand
        static routing, collision-free for permutations and all-to-all on fat-trees). The graph attribute
        ``ecmp`` gives the default."""
        ecmp = ecmp or graph.graph.get("ecmp", "hash")
        if ecmp not in ("hash", "dmodk"):
            raise SpecError("ecmp", ecmp, "allowed: hash, dmodk")
        self.ecmp = ecmp
        self.graph = graph
        nodes, kinds, (self.link_src, self.link_dst, gbps, lat_us, link_attrs) = (
            (graph.nodes, graph.kinds, graph.links()) if isinstance(graph, Cables) else _graph_links(graph))
        self.node_names: list[str] = [str(n) for n in nodes]
        index = {n: i for i, n in enumerate(nodes)}
        hosts = graph.graph.get("hosts") or [n for n, kind in zip(nodes, kinds, strict=True) if kind == "host"]
        if not hosts:
            raise SpecError("topology", graph.graph.get("spec", "graph"), "needs at least one host (kind: host)")
        self.host_nodes = np.array([index[h] for h in hosts], dtype=np.int64)
        self.n_nodes = len(index)
        self.is_switch = np.array([kind != "host" for kind in kinds], dtype=bool)
        self.is_switch[self.host_nodes] = False
        self.capacity_Bps = gbps_to_Bps(gbps)
        self.latency_s = us_to_s(lat_us)
        self.n_links = len(self.link_src)

        params = graph.graph.get("params") or {}  # a builder's: its edges name the ones they come from
        rate_from = [a.get("gbps_param") if params.get(a.get("gbps_param")) is not None else None for a in link_attrs]
        tagged = [params.get(a.get("latency_param")) is not None for a in link_attrs]
        latency_from = [a["latency_param"] if t else None for a, t in zip(link_attrs, tagged, strict=True)]
        share = [float(a.get("latency_share", 1.0)) if t else 0.0 for a, t in zip(link_attrs, tagged, strict=True)]
        self.rate_params = tuple(dict.fromkeys(p for p in rate_from if p is not None))
        self.link_rate_class = np.array([self.rate_params.index(p) if p else len(self.rate_params) for p in rate_from],
                                        dtype=np.int64)
        self.latency_params = tuple(dict.fromkeys(p for p in latency_from if p is not None))
        self.link_latency_class = np.array([self.latency_params.index(p) if p else len(self.latency_params)
                                            for p in latency_from], dtype=np.int64)
        self.link_latency_share = np.array(share, dtype=np.float64)
        self.param_values = {p: float(params[p]) for p in self.rate_params + self.latency_params}

        to_switch = np.nonzero(self.is_switch[self.link_dst])[0]
        order = to_switch[np.argsort(self.link_src[to_switch], kind="stable")]
        self._out_sw_link = order
        self._out_sw_ptr = np.searchsorted(self.link_src[order], np.arange(self.n_nodes + 1))
        order = np.argsort(self.link_dst, kind="stable")
        self._in_link = order
        self._in_ptr = np.searchsorted(self.link_dst[order], np.arange(self.n_nodes + 1))
        order = np.argsort(self.link_src, kind="stable")
        self._by_src_dst = self.link_dst[order]
        self._by_src_ptr = np.searchsorted(self.link_src[order], np.arange(self.n_nodes + 1))
        pair_keys = self.link_src * self.n_nodes + self.link_dst
        self._pair_order = np.argsort(pair_keys, kind="stable")
        self._pair_keys = pair_keys[self._pair_order]
        into = np.diff(self._in_ptr)[self.host_nodes] == 1
        self._into_host = np.where(into, self._in_link[self._in_ptr[self.host_nodes]], -1).astype(np.int32)

        self._seed = np.uint64(ecmp_seed)
        self._parent_link = self._chain_parent_links()
        self._dist: dict[int, np.ndarray] = {}
        self._hop_table: _HopTable | bool | None = False  # False: not built yet
        self._clear_routes()
        self._check_connected()

    def _clear_routes(self) -> None:
        """Empty the route cache."""
        self._route_cache = KeyCache()
        self._pair_route: np.ndarray | None = None  # route id of each (src, dst) pair's first flow, -1: none yet;
        # made by the first call that asks for a 64th of all pairs at once (an all-to-all, not a ring)
        self.route_links = np.zeros((0, 1), dtype=link_dtype(self.n_links))
        self.route_latency_s = np.zeros(0)
        self.route_bottleneck_Bps = np.zeros(0)
        self.n_routes = 0

    def with_capacity(self, capacity_Bps: np.ndarray) -> Fabric:
        """The same fabric with link ``i`` at ``capacity_Bps[i]`` (bytes/s): the same hosts and the same
        routes (they never depend on rates), cached apart since each route's bottleneck does."""
        other = copy.copy(self)
        other.capacity_Bps = np.asarray(capacity_Bps, dtype=np.float64)
        other._clear_routes()
        return other

    def grid(self, values: Sequence[Mapping[str, Any]]) -> LinkGrid:
        """The fabric's links under each configuration of ``values`` (a mapping per configuration from rate
        parameters, Gb/s, and latency parameters, us, to their values; one it leaves out keeps the value the
        fabric was built with)."""
        def table(params: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
            """(configurations x params, the built values)."""
            built = [self.param_values[p] for p in params]
            rows = [[float(v.get(p, b)) for p, b in zip(params, built, strict=True)] for v in values]
            return np.array(rows).reshape(len(values), len(params)), np.array(built)

        gbps, built_gbps = table(self.rate_params)
        latency_us, built_us = table(self.latency_params)
        ratio = np.ones((len(values), len(self.rate_params) + 1))
        ratio[:, :-1] = built_gbps / gbps
        return LinkGrid(ratio, us_to_s(latency_us - built_us))

    @property
    def ranks_per_node(self) -> int | None:
        """GPUs per node when the topology has nodes (the dgx builder says so), else None."""
        value = self.graph.graph.get("gpus_per_node")
        return int(value) if value else None

    @property
    def n_hosts(self) -> int:
        return len(self.host_nodes)

    def _check_connected(self) -> None:
        """Every host must reach every other host through switches."""
        if self.n_hosts < 2:
            return
        dist = self._distances_to(int(self.host_nodes[0]))
        unreachable = [self.node_names[h] for h in self.host_nodes if dist[h] == _UNREACHED]
        if not unreachable and self.graph.is_directed():
            first = self.host_nodes[0]
            if any(self._distances_to(int(h))[first] == _UNREACHED for h in self.host_nodes):
                unreachable = ["(some hosts cannot send to host 0)"]
        if unreachable:
            shown = ", ".join(unreachable[:5]) + (" ..." if len(unreachable) > 5 else "")
            raise SpecError("topology", self.graph.graph.get("spec", "graph"),
                            f"is disconnected: no path between {self.node_names[self.host_nodes[0]]} and {shown}")

    def _distances_to(self, dst_node: int) -> np.ndarray:
        """Hop count from every node to ``dst_node`` over paths whose inner nodes are switches (cached)."""
        return self._distance_rows(np.array([dst_node]))[0]

    def _chain_parent_links(self) -> np.ndarray:
        """Per node, the link from its chain parent, or -1 where it has none (it is a chain base).

        A node's parent is the one switch linking into it (by one link) once switches only hosts link into
        ("host-fed", as a DGX node's NVSwitch) are set aside, or its only switch if that one is host-fed (a star's).
        Then from any node but a few next to it (``_near_groups``) its routes are its parent's plus that link: its
        distances are its parent's + 1 (``_one_down``) and its next hops its parent's. A GPU's parent is its NIC,
        whose parent is its rail; a fat-tree host's is its edge switch. Where parents form a cycle (a directed ring),
        the nodes reached after following parents n times lose theirs.
        """
        from_switch = self.is_switch[self.link_src]
        n_from_switch = np.bincount(self.link_dst[from_switch], minlength=self.n_nodes)
        host_fed = self.is_switch & (n_from_switch == 0)
        core = from_switch & ~host_fed[self.link_src]
        n_core = np.bincount(self.link_dst[core], minlength=self.n_nodes)[self.link_dst]
        chosen = (core & (n_core == 1)) | ((n_core == 0) & (n_from_switch[self.link_dst] == 1) & from_switch)
        parent_link = np.full(self.n_nodes, -1, dtype=np.int64)
        parent_link[self.link_dst[chosen]] = np.nonzero(chosen)[0]
        parent = np.where(parent_link >= 0, self.link_src[parent_link], np.arange(self.n_nodes))
        up = parent
        for _ in range(self.n_nodes.bit_length()):  # 2^bits > n_nodes parents up: a base, or a node on a cycle
            up = up[up]
        parent_link[up[parent[up] != up]] = -1
        return parent_link

    def _chains(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each node's chain up to its base: columns the node, its parent, ... (-1 past the base); and its depth."""
        columns = [np.asarray(nodes, dtype=np.int64)]
        while True:
            link = np.where(columns[-1] >= 0, self._parent_link[columns[-1]], -1)
            up = np.where(link >= 0, self.link_src[link], -1)
            if np.all(up < 0):
                chain = np.stack(columns, axis=1)
                return chain, np.count_nonzero(chain >= 0, axis=1) - 1
            columns.append(up)

    def _one_down(self, rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Distance rows toward each target's parent made rows toward the target: every node one hop more, but the
        target 0, the nodes linking into it 1, and the hosts of its host-fed in-switches at most 2."""
        rows = np.where(rows == _UNREACHED, rows, rows + 1)
        positions, owner = gather_ranges(self._in_ptr, targets)
        in_links = self._in_link[positions]
        into = self.link_src[in_links]
        fed = self.is_switch[into] & (in_links != self._parent_link[targets[owner]])
        positions, fed_owner = gather_ranges(self._in_ptr, into[fed])
        owner_of_host, host = owner[fed][fed_owner], self.link_src[self._in_link[positions]]
        rows[owner_of_host, host] = np.minimum(rows[owner_of_host, host], 2)
        rows[owner, into] = 1
        rows[np.arange(len(targets)), targets] = 0
        return rows

    def _distance_rows(self, dst_nodes: np.ndarray) -> np.ndarray:
        """Stacked distance rows for ``dst_nodes`` (cached). Chain bases' rows come from batched searches; a node on a
        chain takes its base's row down the chain, so a fat-tree needs a search per edge switch and a rail cluster
        one per rail, not one per host.
        """
        missing = np.array([d for d in np.unique(dst_nodes).tolist() if d not in self._dist], dtype=np.int64)
        if len(missing):
            chain, depth = self._chains(missing)
            base = chain[np.arange(len(missing)), depth]
            searched = np.array(sorted(set(base.tolist()) - self._dist.keys()), dtype=np.int64)
            for i in range(0, len(searched), _BFS_CHUNK):
                chunk = searched[i : i + _BFS_CHUNK]
                self._dist.update(zip(chunk.tolist(), self._bfs_rows(chunk), strict=True))
            rows = np.stack([self._dist[b] for b in base.tolist()])
            for level in range(chain.shape[1] - 2, -1, -1):
                on = np.nonzero(depth > level)[0]
                rows[on] = self._one_down(rows[on], chain[on, level])
            self._dist.update(zip(missing.tolist(), rows, strict=True))
        return np.stack([self._dist[int(d)] for d in dst_nodes])

    def _bfs_rows(self, targets: np.ndarray) -> np.ndarray:
        """Level-synchronous reverse BFS from many targets at once (boolean matrix per level)."""
        dist = np.full((len(targets), self.n_nodes), _UNREACHED, dtype=np.int16)
        rows = np.arange(len(targets))
        dist[rows, targets] = 0
        frontier = np.zeros((len(targets), self.n_nodes), dtype=bool)
        frontier[rows, targets] = True
        has_out = np.nonzero(np.diff(self._by_src_ptr) > 0)[0]
        level = 0
        while frontier.any():
            level += 1
            reached = np.zeros_like(frontier)
            reached[:, has_out] = np.logical_or.reduceat(
                frontier[:, self._by_src_dst], self._by_src_ptr[has_out], axis=1)
            new = reached & (dist == _UNREACHED)
            dist[new] = level
            frontier = new & self.is_switch
        return dist

    def route_ids(self, src_rank: np.ndarray | list[int], dst_rank: np.ndarray | list[int],
                  flow_index: np.ndarray | int = 0) -> np.ndarray:
        """Route id for each (src rank, dst rank, flow index); computes and caches routes it has not seen."""
        src = np.asarray(src_rank, dtype=np.int64)
        dst = np.asarray(dst_rank, dtype=np.int64)
        n = self.n_hosts
        pair = src * n + dst
        first = not np.ndim(flow_index) and not flow_index
        table = self._pair_route
        if table is None and first and n * n <= PAIR_TABLE_PAIRS and 64 * len(pair) >= n * n:
            table = self._pair_route = self._route_cache.first_flow_table(n * n)
        if table is None or not first:
            return self._route_cache.ids(pair * 65536 + np.asarray(flow_index, dtype=np.int64), self._build_routes)
        # A message's first flow, in calls of many messages: an array lookup rather than binary searches
        ids = table[pair]
        missing = ids < 0
        if missing.any():
            new = distinct(pair[missing])
            table[new] = self._build_routes(new * 65536)  # (the key cache no longer holds first flows)
            ids = table[pair]
        return ids.astype(np.int64)

    def _build_routes(self, keys: np.ndarray) -> np.ndarray:
        """Compute, store and return ids of new routes for sorted unique keys (in chunks to bound memory)."""
        links = self._walk_chunked(keys)
        width = max(self.route_links.shape[1], links.shape[1])
        links = pad_columns(links, width)
        first_id = self.n_routes
        self.route_links = np.concatenate([pad_columns(self.route_links, width), links])
        latency_s, bottleneck_Bps = self.route_metrics(links)
        self.route_latency_s = np.concatenate([self.route_latency_s, latency_s])
        self.route_bottleneck_Bps = np.concatenate([self.route_bottleneck_Bps, bottleneck_Bps])
        self.n_routes += len(keys)
        return np.arange(first_id, self.n_routes, dtype=np.int64)

    def route_metrics(self, links: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(latency s, bottleneck bytes/s) of each row of a padded link matrix."""
        # padding (-1) reads one extra entry at the end: no latency, no bound
        return (np.append(self.latency_s, 0.0)[links].sum(axis=1),
                np.append(self.capacity_Bps, np.inf)[links].min(axis=1))

    def uncached_routes(self, src_rank: np.ndarray, dst_rank: np.ndarray) -> np.ndarray:
        """Padded link matrix (``link_dtype``) for each pair, computed without touching the cache.

        For one-off batches of millions of pairs (an all-to-all's analytical profile), where caching
        every route would cost gigabytes. Same choices as ``route_ids`` with flow index 0.
        """
        keys = (np.asarray(src_rank, dtype=np.int64) * self.n_hosts + np.asarray(dst_rank, dtype=np.int64)) * 65536
        return self._walk_chunked(keys)

    def _walk_chunked(self, keys: np.ndarray) -> np.ndarray:
        """``_walk`` in bounded-memory chunks, rows padded to a common width: flows within a near group
        (``_near_groups``) on their destinations' distance rows, the others on the next-hop table."""
        table = self._hops()
        near = None
        if table is not None and table.near is not None:
            pair = keys >> 16  # keys are (src x n + dst) x 65536 + flow: a shift divides them
            src_rank = pair // self.n_hosts
            near = table.near[src_rank] == table.near[pair - src_rank * self.n_hosts]
        chunks = [self._walk(keys[i : i + _ROUTE_CHUNK], table, None if near is None else near[i : i + _ROUTE_CHUNK])
                  for i in range(0, max(len(keys), 1), _ROUTE_CHUNK)]
        rows = np.nonzero(near)[0] if near is not None else np.zeros(0, dtype=np.int64)
        starts = range(0, len(rows), _ROUTE_CHUNK)
        near_chunks = [self._walk(keys[rows[i : i + _ROUTE_CHUNK]], None) for i in starts]
        width = max(c.shape[1] for c in chunks + near_chunks)
        links = np.concatenate([pad_columns(c, width) for c in chunks])
        for i, chunk in zip(starts, near_chunks, strict=True):
            links[rows[i : i + _ROUTE_CHUNK]] = pad_columns(chunk, width)
        return links

    def _hops(self) -> _HopTable | None:
        """The next-hop table (built once), or None where it would exceed ``_HOP_TABLE_ENTRIES``."""
        if self._hop_table is False:
            chain, depth = self._chains(self.host_nodes)
            targets, row = np.unique(chain[np.arange(self.n_hosts), depth], return_inverse=True)
            links = self._out_sw_link
            if len(targets) * max(len(links), self.n_nodes) > _HOP_TABLE_ENTRIES:
                self._hop_table = None
            else:
                dist = self._distance_rows(targets).astype(np.int32)
                closer = dist[:, self.link_dst[links]] == dist[:, self.link_src[links]] - 1
                counted = np.zeros((len(targets), len(links) + 1), dtype=np.int64)
                np.cumsum(closer, axis=1, out=counted[:, 1:])
                count = counted[:, self._out_sw_ptr[1:]] - counted[:, self._out_sw_ptr[:-1]]
                ptr = np.zeros(count.size + 1, dtype=np.int64)
                np.cumsum(count.ravel(), out=ptr[1:])
                above = chain[:, : max(chain.shape[1] - 1, 1)]  # a column at least: the host's own link in
                down = np.where(above >= 0, self._parent_link[above], -1).astype(np.int32)
                self._hop_table = _HopTable(row, depth, down, self._near_groups(chain, depth), dist, ptr,
                                            links[np.nonzero(closer)[1]].astype(np.int32))
        return self._hop_table

    def _near_groups(self, chain: np.ndarray, depth: np.ndarray) -> np.ndarray | None:
        """Per host rank, a group; a flow within a group may not route through its destination's chain base.

        A host's distances and next hops are its base's (plus its chain) from every node but those next to its chain
        below the base (``_chain_parent_links``): its chain's nodes and their host-fed in-switches, and the hosts
        linking into them. So a source linking into one of those nodes (a GPU into its NVSwitch, which feeds every GPU
        of its node) walks on the destination's own distance row. Groups are the connected parts of those links;
        None where no source is next to another host's chain (a fat-tree).
        """
        host, level = np.nonzero(np.arange(chain.shape[1]) < depth[:, None])
        node = chain[host, level]
        positions, owner = gather_ranges(self._in_ptr, node)
        in_links = self._in_link[positions]
        fed = self.is_switch[self.link_src[in_links]] & (in_links != self._parent_link[node[owner]])
        local_host = np.concatenate([host[level > 0], host[owner[fed]]])
        local = np.concatenate([node[level > 0], self.link_src[in_links[fed]]])
        joins = ~self.is_switch  # a host linking to a host or to a node next to a chain joins its group
        joins[local] = True
        from_host = np.nonzero(~self.is_switch[self.link_src] & joins[self.link_dst])[0]
        if not len(local) and not len(from_host):
            return None
        a = np.concatenate([self.host_nodes[local_host], self.link_src[from_host]])
        b = np.concatenate([local, self.link_dst[from_host]])
        label = np.arange(self.n_nodes)
        while True:
            spread = label.copy()
            np.minimum.at(spread, a, label[b])
            np.minimum.at(spread, b, label[a])
            spread = spread[spread]
            if np.array_equal(spread, label):
                return label[self.host_nodes]
            label = spread

    def _walk(self, keys: np.ndarray, table: _HopTable | None, skip: np.ndarray | None = None) -> np.ndarray:
        """Walk each (src, dst, flow) key hop by hop from source to destination, hashing among next hops; flows
        ``skip`` marks get no links.

        Inner hops choose among switch neighbours one hop closer (in the order of ``_out_sw_link``); the last
        hop is the direct link. With the next-hop table a hop is a lookup toward the destination's chain base, then
        the links down its chain; without it (huge multi-homed fabrics, near flows) the candidates are gathered per
        flow. Both choose the same links. Flows are walked longest route first, so those still walking are a prefix
        and those on their last hop the end of it; a hop where every flow has one candidate hashes nothing.
        """
        src_rank, dst_rank = np.divmod(keys >> 16, self.n_hosts)
        cur, dst = self.host_nodes[src_rank], self.host_nodes[dst_rank]
        if skip is not None:
            cur[skip] = dst[skip]  # as if there already
        if table is not None:
            dst_row, dist = table.row[dst_rank], table.dist
            hops = dist[dst_row, cur]
        else:
            dst_unique, dst_row = np.unique(dst, return_inverse=True)
            dist = self._distance_rows(dst_unique)
            hops = dist[dst_row, cur]
        unreached = (hops == _UNREACHED) & (cur != dst)
        if np.any(unreached):
            bad = int(np.argmax(unreached))
            raise SpecError("topology", self.graph.graph.get("spec", "graph"),
                            f"has no path from {self.node_names[cur[bad]]} to {self.node_names[dst[bad]]}")
        hops = np.where(cur == dst, 0, hops + (table.depth[dst_rank] if table is not None else 0)).astype(np.int16)
        order = np.argsort(-hops, kind="stable")  # longest routes first
        hops, cur, dst, dst_rank, dst_row = hops[order], cur[order], dst[order], dst_rank[order], dst_row[order]
        flow_hash = _mix64(keys[order].astype(np.uint64) ^ self._seed) if self.ecmp == "hash" else None
        digits = dst_rank.copy()
        max_hops = int(hops[0]) if len(keys) else 0
        walking = np.searchsorted(-hops, -np.arange(max_hops + 1), side="left")  # flows with more than h hops
        walked = np.full((len(keys), max(max_hops, 1)), -1, dtype=link_dtype(self.n_links))
        chained = table is not None and table.down.shape[1] > 1  # some chain is longer than the last hop
        if chained:
            at_base = hops - table.depth[dst_rank]  # the hop a flow reaches its destination's chain base
        into_host = self._into_host if table is None else table.down[:, 0]  # -1: several links in
        for hop in range(max_hops):
            inner, last = slice(0, walking[hop + 1]), slice(walking[hop + 1], walking[hop])
            if chained and walking[hop + 1]:  # at or below the base: down the chain
                on_chain = at_base[inner] <= hop
                tail = np.nonzero(on_chain)[0]
                if len(tail):
                    chosen = table.down[dst_rank[tail], hops[tail] - hop - 1]
                    walked[tail, hop] = chosen
                    cur[tail] = self.link_dst[chosen]
                    # flows on a chain are usually the shortest, the end of those walking
                    inner = slice(0, tail[0]) if tail[0] == len(on_chain) - len(tail) else np.nonzero(~on_chain)[0]
            node = cur[inner]
            if len(node):
                if table is not None:
                    cell = dst_row[inner] * self.n_nodes + node
                    first = table.ptr[cell]
                    n_cand = table.ptr[cell + 1] - first
                    cand_link = table.links
                else:
                    positions, owner = gather_ranges(self._out_sw_ptr, node)
                    cand_link = self._out_sw_link[positions]
                    row = dst_row[owner]
                    ok = dist[row, self.link_dst[cand_link]] == dist[row, node[owner]] - 1
                    cand_link, owner = cand_link[ok], owner[ok]
                    n_cand = np.bincount(owner, minlength=len(node))
                    first = np.cumsum(n_cand) - n_cand
                if n_cand.max() == 1:  # no choice to make (a dmodk digit divided by 1 is unchanged)
                    choice = 0
                elif self.ecmp == "dmodk":
                    choice = digits[inner] % n_cand
                    digits[inner] //= n_cand
                else:
                    salt = _mix64(flow_hash[inner] + np.uint64(0x9E3779B97F4A7C15) * node.astype(np.uint64))
                    choice = (salt % n_cand.astype(np.uint64)).astype(np.int64)
                chosen = cand_link[first + choice]
                walked[inner, hop] = chosen
                cur[inner] = self.link_dst[chosen]
            into = into_host[dst_rank[last]]  # a host with one link in, or at the end of its chain: that link
            several = np.nonzero(into < 0)[0]
            if len(several):
                into[several] = self._pair_order[np.searchsorted(
                    self._pair_keys, cur[last][several] * self.n_nodes + dst[last][several])]
            walked[last, hop] = into
        links = np.empty_like(walked)
        links[order] = walked
        return links

    def min_route_latency_s(self) -> float:
        """Smallest latency of any host-to-host route: the lookahead of the flow backend."""
        if self.n_hosts < 2:
            return 0.0
        from_host = ~self.is_switch[self.link_src]
        into_host = ~self.is_switch[self.link_dst]
        bound = self.latency_s[from_host].min() + self.latency_s[into_host].min()
        direct = from_host & into_host
        if np.any(direct):
            bound = min(bound, self.latency_s[direct].min())
        return float(bound)


def pad_columns(matrix: np.ndarray, width: int, fill: float = -1) -> np.ndarray:
    """``matrix`` widened to ``width`` columns of ``fill`` (link matrices pad with -1)."""
    if matrix.shape[1] == width:
        return matrix
    out = np.full((matrix.shape[0], width), fill, dtype=matrix.dtype)
    out[:, : matrix.shape[1]] = matrix
    return out
