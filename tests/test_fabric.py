"""Fabric: compiled links, ECMP routes and their cache."""

import networkx as nx
import numpy as np
import pytest
from conftest import fattree_graph

from simulator.collectives.algorithms import build_schedule
from simulator.network import fabric as fabric_module
from simulator.network import make_network
from simulator.network.compiled import fill_levels
from simulator.network.fabric import Fabric, KeyCache, link_dtype, pad_columns
from topologies import Cables, load_cables, load_topology


def test_the_key_cache_builds_each_key_once_and_keeps_ids() -> None:
    built: list[list[int]] = []

    def build(keys: np.ndarray) -> np.ndarray:
        built.append(keys.tolist())
        return np.arange(len(keys)) + 10 * len(built)

    cache = KeyCache()
    first = cache.ids(np.array([5, 3, 5, 9]), build)
    again = cache.ids(np.array([9, 3, 7]), build)
    assert built == [[3, 5, 9], [7]]  # sorted unique new keys, once each
    assert first.tolist() == [11, 10, 11, 12] and again.tolist() == [12, 10, 20]


def test_pad_columns_widens_with_the_fill_and_keeps_the_dtype() -> None:
    links = np.array([[1, 2], [3, -1]], dtype=np.int32)
    wide = pad_columns(links, 4)
    assert wide.dtype == np.int32 and wide.tolist() == [[1, 2, -1, -1], [3, -1, -1, -1]]
    assert pad_columns(np.ones((1, 1)), 2, 0.0).tolist() == [[1.0, 0.0]]
    assert pad_columns(links, 2) is links


def test_route_tables_hold_int16_link_ids_while_they_fit() -> None:
    """Link ids are int16 below 32,767 links (half the memory of route tables, and of what large solves read),
    int32 from there; the compiled kernels take either and give the same levels."""
    assert link_dtype(32_766) == np.int16 and link_dtype(32_767) == np.int32
    fabric = Fabric(load_topology("fattree:k=4"))
    src = np.arange(fabric.n_hosts)
    ids = fabric.route_ids(src, np.roll(src, 3))
    assert fabric.route_links.dtype == np.int16 and fabric.uncached_routes(src, src[::-1]).dtype == np.int16
    levels = fill_levels(fabric.route_links, fabric.capacity_Bps / 7, rows=ids)
    wide = fill_levels(fabric.route_links.astype(np.int64), fabric.capacity_Bps / 7, rows=ids)
    np.testing.assert_array_equal(wide, levels)
    big = Fabric(load_topology("star:hosts=16384"))  # 32,768 directed links
    big.route_ids(np.array([0, 16383]), np.array([16383, 0]))
    assert big.n_links == 32_768 and big.route_links.dtype == np.int32


@pytest.mark.parametrize("text", ["star", "ring:hosts=2", "leafspine16-oversub", "fattree:k=4,pods=3", "dgx-h100-4node",
                                  "dgx:nodes=3,gpus_per_node=2,rails=false,nodes_per_leaf=2,spines=2,spine_gbps=800",
                                  "torus:dims=2x3x4", "dragonfly:groups=9,routers_per_group=4,hosts_per_router=2,"
                                  "global_links_per_router=2,global_gbps=300,global_latency_us=3"])
def test_builder_cables_compile_to_the_fabric_of_their_graph(text: str) -> None:
    """A builder's plain Cables (no networkx) give the fabric of its networkx graph, link for link in the same order
    (the order decides ECMP's choices): cables given twice (a 2-ring, a torus side of 2) and parallel global cables
    merged as networkx merges them; each link's rate and latency classes (the parameters they come from) alike."""
    plain = load_cables(text)
    assert isinstance(plain, Cables)
    a, b = Fabric(plain), Fabric(load_topology(text))
    assert a.node_names == b.node_names and a.n_links == b.n_links
    assert (a.rate_params, a.latency_params, a.param_values) == (b.rate_params, b.latency_params, b.param_values)
    for name in ("link_src", "link_dst", "capacity_Bps", "latency_s", "host_nodes", "is_switch", "link_rate_class",
                 "link_latency_class", "link_latency_share"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    ranks = np.arange(a.n_hosts)
    routes = [fabric.route_ids(ranks, ranks[::-1], 3) for fabric in (a, b)]
    assert np.array_equal(a.route_links[routes[0]], b.route_links[routes[1]])


@pytest.mark.parametrize("text", ["dgx:nodes=1,rails=false", "dgx:nodes=2,rails=false", "dgx:nodes=1,rails=true",
                                  "dgx:nodes=4,gpus_per_node=4,rails=false,nodes_per_leaf=2", "dgx:nodes=2"])
def test_intra_node_traffic_never_touches_a_nic(text: str) -> None:
    """Every route between two GPUs of one node runs GPU -> NVSwitch -> GPU (a NIC is its own node, so a
    detour through a leaf is 4 links against 2), and a ring all-reduce inside one node takes the NVLink
    closed form whether the GPUs have rails or not: 2(n-1) steps of 2 NVLink hops and S/n at 3600 Gb/s."""
    fabric = Fabric(load_topology(text))
    per_node = fabric.graph.graph["gpus_per_node"]
    src, dst = np.divmod(np.arange(per_node * per_node), per_node)
    for node in range(fabric.n_hosts // per_node):
        pairs = src != dst
        routes = fabric.route_ids(node * per_node + src[pairs], node * per_node + dst[pairs])
        nodes = fabric.node_names
        for route in np.unique(routes):
            links = fabric.route_links[route][fabric.route_links[route] >= 0]
            via = {nodes[n] for n in np.concatenate([fabric.link_src[links], fabric.link_dst[links]])}
            assert len(links) == 2 and f"n{node}/nvswitch" in via and not any("nic" in v for v in via), via
    ring = build_schedule("allreduce", "ring", 256 * 2**20, per_node)
    network = make_network(fabric, "analytical")
    done = network.start(ring, np.arange(per_node))
    network.env.run(until=done)
    size, bandwidth = 256 * 2**20, 3600e9 / 8
    expected = 2 * (per_node - 1) * (2 * 0.5e-6 + size / per_node / bandwidth)
    assert float(done.value.rank_end_s.max()) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("text", "ecmp"), [
    ("fattree:k=8,link_gbps=400,latency_us=1", "hash"), ("fattree:k=8,link_gbps=400,latency_us=1", "dmodk"),
    ("dgx:nodes=4,gpus_per_node=8,nvlink_gbps=3600,nic_gbps=400,rails=true", "hash"),
    ("leafspine:leaves=4,hosts_per_leaf=4,spines=3,host_gbps=100,uplink_gbps=100,latency_us=1", "hash"),
    ("torus:dims=4x4x2,link_gbps=100,latency_us=1", "hash"),
    ("dragonfly:groups=3,routers_per_group=3,hosts_per_router=2", "hash"),
])
def test_the_next_hop_table_chooses_the_links_the_per_flow_walk_chooses(text: str, ecmp: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Walks look next hops up in a table per (node, destination row); past its size limit they gather each
    flow's candidates instead. Every route, every flow index, is the same either way."""
    import simulator.network.fabric as fabric_module

    n = Fabric(load_topology(text)).n_hosts
    src, dst = np.divmod(np.arange(n * n), n)
    flow = np.arange(n * n) % 3
    tabled = Fabric(load_topology(text), ecmp=ecmp)
    assert tabled._hops() is not None
    ids = tabled.route_ids(src, dst, flow)  # first: it grows the route arrays
    by_table = tabled.route_links[ids]
    monkeypatch.setattr(fabric_module, "_HOP_TABLE_ENTRIES", 0)
    gathered = Fabric(load_topology(text), ecmp=ecmp)
    assert gathered._hops() is None
    ids = gathered.route_ids(src, dst, flow)
    assert np.array_equal(gathered.route_links[ids], by_table)


_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """splitmix64's finalizer on a Python int (docs/NETWORK_MODEL.md: the ECMP hash)."""
    x &= _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _brute_force_route(fabric: Fabric, graph: nx.DiGraph, src: int, dst: int) -> list[int]:
    """The links of flow 0 from host rank src to dst, one pair at a time: networkx distances over switch-forwarded
    links, and at each node the closer switch neighbours in link order, chosen by the ECMP rule."""
    target = fabric.node_names[fabric.host_nodes[dst]]
    dist = nx.single_source_shortest_path_length(graph.reverse(copy=False), target)  # over links out of switches
    node, route = fabric.node_names[fabric.host_nodes[src]], []
    out = {}  # node name -> its links in id order
    for link, (u, v) in enumerate(zip(fabric.link_src, fabric.link_dst, strict=True)):
        out.setdefault(fabric.node_names[u], []).append((link, fabric.node_names[v], bool(fabric.is_switch[v])))
    left = 1 + min(dist.get(v, np.inf) if switch else (0 if v == target else np.inf) for _, v, switch in out[node])
    flow_hash, digits = _splitmix64((src * fabric.n_hosts + dst) * 65536), dst
    while left > 1:
        closer = [(link, v) for link, v, switch in out[node] if switch and dist.get(v) == left - 1]
        if fabric.ecmp == "dmodk":
            choice, digits = digits % len(closer), digits // len(closer)
        else:
            choice = _splitmix64(flow_hash + 0x9E3779B97F4A7C15 * fabric.node_names.index(node)) % len(closer)
        link, node = closer[choice]
        route.append(link)
        left -= 1
    route.append(next(link for link, v, _ in out[node] if v == target))
    return route


def _islands() -> nx.Graph:
    """12 hosts, each on its island's host-fed switch (as GPUs on an NVSwitch) and on a NIC of its own up to one of
    three leaves, which two spines join; one host-to-host cable."""
    graph = nx.Graph(hosts=[f"h{i}" for i in range(12)])
    graph.add_nodes_from(graph.graph["hosts"], kind="host")
    cables = [(f"h{i}", f"island{i // 4}", 300) for i in range(12)] + [("h0", "h5", 50)]
    cables += [(f"h{i}", f"nic{i}", 100) for i in range(12)] + [(f"nic{i}", f"leaf{i % 3}", 100) for i in range(12)]
    cables += [(f"leaf{leaf}", f"spine{spine}", 100) for leaf in range(3) for spine in range(2)]
    for u, v, gbps in cables:
        graph.add_edge(u, v, link_gbps=gbps, latency_us=0.5)
    nx.set_node_attributes(graph, {n: "switch" for n in graph if n not in graph.graph["hosts"]}, "kind")
    return graph


@pytest.mark.parametrize(("text", "ecmp", "rows"), [
    ("dgx:nodes=4,gpus_per_node=8,nvlink_gbps=3600,nic_gbps=400,rails=true", "hash", 8),
    ("dgx:nodes=4,gpus_per_node=4,nvlink_gbps=3600,nic_gbps=400,rails=true", "dmodk", 4),
    ("leafspine:leaves=3,hosts_per_leaf=4,spines=1", "hash", 1),
    ("islands", "hash", 3),
])
def test_the_analytical_all_to_all_routes_every_pair_as_a_brute_force_walk(text: str, ecmp: str, rows: int) -> None:
    """The next-hop table has a row per chain base (a rail's leaf, the one spine, a leaf above NICs), not one per
    host: a GPU routes as its NIC, its NIC as its rail, and GPUs of one node (hosts of one leaf under one spine, of
    one island, or cabled together) route on their own distances. The analytical all-to-all's bytes per link equal
    those of every pair walked on its own (networkx distances, splitmix64 among closer switches or dmodk digits),
    and its time is the slowest message's route latency plus its busiest link's load over capacity."""
    fabric = Fabric(_islands() if text == "islands" else load_topology(text), ecmp=ecmp)
    assert fabric._hops().dist.shape[0] == rows
    n = fabric.n_hosts
    schedule = build_schedule("alltoall", "direct", 64 * 2**20, n)
    time_s, link_bytes = make_network(fabric, "analytical").schedule_time_s(schedule)
    switched = nx.DiGraph([(fabric.node_names[u], fabric.node_names[v])
                           for u, v in zip(fabric.link_src, fabric.link_dst, strict=True) if fabric.is_switch[u]])
    (step,) = schedule.steps
    routes = [_brute_force_route(fabric, switched, int(s), int(d))
              for s, d in zip(step.pattern.src, step.pattern.dst, strict=True)]
    (size,) = set(step.pattern.size_bytes)  # every message S / n: a link carries (messages crossing it) x that
    load = np.bincount(np.concatenate(routes), minlength=fabric.n_links) * size
    assert np.array_equal(link_bytes, load)
    slowest = max(fabric.latency_s[route].sum() + (load[route] / fabric.capacity_Bps[route]).max() for route in routes)
    assert time_s == pytest.approx(slowest, rel=1e-12)


def test_first_flow_routes_come_from_a_table_per_pair_as_the_key_cache_gives_them(monkeypatch) -> None:
    """Up to ``PAIR_TABLE_PAIRS`` host pairs, once a call asks for a 64th of them, a message's first flow is looked
    up per pair: the same ids, in the same order of creation, and the same links as the sorted key cache gives,
    the routes made before the table included."""
    rng = np.random.default_rng(3)
    calls = [(rng.integers(0, 16, n), rng.integers(0, 16, n)) for n in (3, 40, 3, 40)]  # 4 = 256 pairs / 64
    tabled, cached = Fabric(fattree_graph(4)), Fabric(fattree_graph(4))
    monkeypatch.setattr(fabric_module, "PAIR_TABLE_PAIRS", 0)
    want = [cached.route_ids(src, dst) for src, dst in calls]
    monkeypatch.undo()
    got = [tabled.route_ids(*calls[0])]
    assert tabled._pair_route is None  # a few messages: the key cache
    got += [tabled.route_ids(src, dst) for src, dst in calls[1:]]
    assert tabled._pair_route is not None and cached._pair_route is None
    for mine, theirs in zip(got, want, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(tabled.route_links, cached.route_links)
    np.testing.assert_array_equal(tabled.route_ids([1], [2], flow_index=3), cached.route_ids([1], [2], flow_index=3))
