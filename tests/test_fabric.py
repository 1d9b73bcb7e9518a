"""Fabric: compiled links, ECMP routes and their cache."""

import numpy as np
import pytest

from simulator.collectives.algorithms import build_schedule
from simulator.network import make_network
from simulator.network.fabric import Fabric, KeyCache, pad_columns
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
