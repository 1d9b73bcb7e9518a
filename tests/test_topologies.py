"""Topology builders against closed-form counts; parsing, presets, custom files and errors."""

import doctest
import itertools
import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from pydantic import ConfigDict, create_model

import topologies.builders
import topologies.spec
from simulator.errors import SpecError
from simulator.network.fabric import Fabric
from topologies import (
    BUILDERS,
    PARAMS,
    build,
    dgx,
    dragonfly,
    fattree,
    leafspine,
    list_presets,
    load_topology,
    parse_inline,
    ring,
    star,
    torus,
    validate_graph,
)
from topologies.builders import LINK_PARAMS


def counts(g: nx.Graph) -> tuple[int, int, int]:
    """(hosts, switches, cables)."""
    hosts = sum(1 for _, kind in g.nodes(data="kind") if kind == "host")
    return hosts, g.number_of_nodes() - hosts, g.number_of_edges()


def same_network(a: nx.Graph, b: nx.Graph) -> bool:
    return (a.graph["hosts"] == b.graph["hosts"] and dict(a.nodes(data=True)) == dict(b.nodes(data=True))
            and nx.utils.edges_equal(a.edges(data=True), b.edges(data=True)))


def hops(fabric: Fabric, src: int, dst: int) -> int:
    route = fabric.route_ids([src], [dst])[0]
    return int((fabric.route_links[route] >= 0).sum())


def test_docstring_examples() -> None:
    for module in (topologies.builders, topologies.spec):
        assert doctest.testmod(module).failed == 0


@pytest.mark.parametrize("n", [1, 2, 8])
def test_star(n: int) -> None:
    g = star(hosts=n, link_gbps=25, latency_us=2)
    assert counts(g) == (n, 1, n)
    assert g.degree["sw0"] == n
    assert g.graph["hosts"] == [f"h{i}" for i in range(n)]
    assert all(d == {"link_gbps": 25.0, "latency_us": 2.0, "gbps_param": "link_gbps", "latency_param": "latency_us"}
               for _, _, d in g.edges(data=True))
    assert g.graph["spec"] == f"star:hosts={n},link_gbps=25,latency_us=2"


@pytest.mark.parametrize(("n", "ring_cables"), [(1, 0), (2, 1), (3, 3), (8, 8)])
def test_ring(n: int, ring_cables: int) -> None:
    g = ring(hosts=n, link_gbps=100)
    assert counts(g) == (n, n, n + ring_cables)
    assert g.graph["hosts"] == [f"h{i}" for i in range(n)]
    if n > 2:
        assert all(g.degree[f"r{i}"] == 3 for i in range(n))
    if n == 8:
        assert nx.shortest_path(g, "h0", "h3") == ["h0", "r0", "r1", "r2", "r3", "h3"]
        assert hops(Fabric(g), 0, 4) == 2 + 4


@pytest.mark.parametrize(("leaves", "per_leaf", "spines", "host_gbps", "uplink_gbps", "oversub"), [
    (4, 4, 2, 100, 200, 1.0),
    (4, 4, 1, 100, 100, 4.0),
    (8, 16, 4, 100, 400, 1.0),
    (3, 6, 2, 100, 100, 3.0),
    (1, 5, 0, 100, 100, 1.0),
])
def test_leafspine(leaves: int, per_leaf: int, spines: int, host_gbps: float, uplink_gbps: float,
                   oversub: float) -> None:
    g = leafspine(leaves=leaves, hosts_per_leaf=per_leaf, spines=spines, host_gbps=host_gbps,
                  uplink_gbps=uplink_gbps)
    assert counts(g) == (leaves * per_leaf, leaves + spines, leaves * per_leaf + leaves * spines)
    assert g.graph["oversubscription"] == pytest.approx(oversub)
    assert all(g.degree[f"leaf{i}"] == per_leaf + spines for i in range(leaves))
    assert all(g.degree[f"spine{s}"] == leaves for s in range(spines))
    assert all(list(g[f"h{i}"]) == [f"leaf{i // per_leaf}"] for i in range(leaves * per_leaf))
    if spines:
        assert g["leaf0"]["spine0"]["link_gbps"] == uplink_gbps


@pytest.mark.parametrize("k", [2, 4, 6, 8, 16])
def test_fattree_full(k: int) -> None:
    half = k // 2
    g = fattree(k=k, link_gbps=400)
    assert counts(g) == (k**3 // 4, 5 * k * k // 4, 3 * k**3 // 4)
    assert g.graph["hosts"] == [f"h{i}" for i in range(k**3 // 4)]
    switches = [n for n, kind in g.nodes(data="kind") if kind == "switch"]
    assert all(g.degree[s] == k for s in switches)
    assert all(list(g[f"h{i}"]) == [f"pod{i // half**2}/edge{i // half % half}"] for i in range(k**3 // 4))
    for j in range(half):
        cores = {n for n in g[f"pod1/agg{j}"] if n.startswith("core")}
        assert cores == {f"core{c}" for c in range(j * half, (j + 1) * half)}


@pytest.mark.parametrize(("k", "pods"), [(4, 1), (4, 3), (8, 5), (16, 8)])
def test_fattree_partial(k: int, pods: int) -> None:
    half = k // 2
    g = fattree(k=k, link_gbps=100, pods=pods)
    assert counts(g) == (pods * half**2, pods * k + half**2, 3 * pods * half**2)
    assert all(g.degree[f"core{c}"] == pods for c in range(half**2))
    assert nx.is_connected(g)


def test_fattree_4096_hosts() -> None:
    """Its build time is a benchmark (benchmarks/scale.py), not a test: tests run on busy machines."""
    g = load_topology("fattree:k=32,pods=16,link_gbps=400")
    assert counts(g) == (4096, 16 * 32 + 16 * 16, 3 * 4096)
    assert g.degree["core0"] == 16


def test_dgx_rails() -> None:
    g = load_topology("dgx:nodes=4,gpus_per_node=8,nvlink_gbps=3600,nic_gbps=400,rails=true")
    assert counts(g) == (32, 4 + 32 + 8 + 8, 32 * 3 + 8 * 8)  # a NIC node per GPU: GPU-NIC and NIC-rail cables
    assert g.graph["hosts"][:9] == [f"n0/gpu{i}" for i in range(8)] + ["n1/gpu0"]
    assert set(g["n2/gpu5"]) == {"n2/nvswitch", "n2/nic5"} and set(g["n2/nic5"]) == {"n2/gpu5", "rail5"}
    assert g["n0/gpu0"]["n0/nvswitch"] == {"link_gbps": 3600.0, "latency_us": 0.5, "gbps_param": "nvlink_gbps",
                                           "latency_param": "nvlink_latency_us"}
    assert g["n0/nic0"]["rail0"] == g["n0/gpu0"]["n0/nic0"] == {"link_gbps": 400.0, "latency_us": 0.5,
                                                                "gbps_param": "nic_gbps", "latency_param": "latency_us",
                                                                "latency_share": 0.5}
    assert g["rail3"]["spine7"]["link_gbps"] == pytest.approx(400 * 4 / 8)
    assert g.graph["gpus_per_node"] == 8
    fabric = Fabric(g)
    assert hops(fabric, 0, 8) == 4  # GPU 0 of nodes 0 and 1: NIC, rail, NIC
    assert hops(fabric, 0, 9) == 6
    assert hops(fabric, 0, 1) == 2
    route = fabric.route_ids([0], [1])[0]
    assert fabric.route_bottleneck_Bps[route] == pytest.approx(3600e9 / 8)


def test_dgx_variants() -> None:
    tor = dgx(nodes=4, gpus_per_node=8, nic_gbps=400, rails=False, nodes_per_leaf=2)
    assert counts(tor) == (32, 4 + 32 + 2 + 2, 32 + 32 + 32 + 2 * 2)
    assert set(tor["n3/gpu7"]) == {"n3/nvswitch", "n3/nic7"} and set(tor["n3/nic7"]) == {"n3/gpu7", "leaf1"}
    assert tor["leaf0"]["spine1"]["link_gbps"] == pytest.approx(400 * 16 / 2)
    assert tor.degree["leaf1"] == 16 + 2
    uneven = dgx(nodes=5, gpus_per_node=2, rails=False, nodes_per_leaf=2)
    assert [n for n in uneven if str(n).startswith("leaf")] == ["leaf0", "leaf1", "leaf2"]
    one_leaf = dgx(nodes=2, gpus_per_node=8, rails=False)
    assert counts(one_leaf) == (16, 2 + 16 + 1, 16 + 16 + 16)
    one_node = dgx(nodes=1, gpus_per_node=4, nic_gbps=100)
    assert counts(one_node) == (4, 1 + 4 + 4 + 4, 4 + 4 + 4 + 16)
    assert one_node["rail0"]["spine0"]["link_gbps"] == pytest.approx(100 * 1 / 4)
    chosen = dgx(nodes=2, gpus_per_node=8, spines=2, spine_gbps=800)
    assert counts(chosen) == (16, 2 + 16 + 8 + 2, 16 + 16 + 16 + 16)
    assert chosen["rail0"]["spine1"]["link_gbps"] == 800


def torus_cables(sizes: list[int]) -> int:
    n = int(np.prod(sizes))
    return sum(n // s * (s if s > 2 else 1) for s in sizes)


@pytest.mark.parametrize("dims", ["4x4", "4x4x4", "2x3", "2x2", "3x5x2", [3, 4]])
def test_torus(dims: str | list[int]) -> None:
    g = torus(dims=dims, link_gbps=100)
    sizes = [int(s) for s in dims.split("x")] if isinstance(dims, str) else dims
    n = int(np.prod(sizes))
    assert counts(g) == (n, n, n + torus_cables(sizes))
    coords = list(itertools.product(*(range(s) for s in sizes)))
    assert [next(iter(g[h])) for h in g.graph["hosts"]] == ["t" + "_".join(map(str, c)) for c in coords]
    if all(s > 2 for s in sizes):
        assert all(g.degree[r] == 2 * len(sizes) + 1 for r in g if str(r).startswith("t"))
    assert g.graph["spec"] == f"torus:dims={'x'.join(map(str, sizes))},link_gbps=100,latency_us=1"


def global_cables(g: nx.Graph, global_gbps: float) -> dict[tuple[int, int], int]:
    """Cables per pair of groups, read from links between routers of different groups."""
    per_pair: dict[tuple[int, int], int] = {}
    for u, v, d in g.edges(data=True):
        if u.startswith("g") and v.startswith("g") and u.split("/")[0] != v.split("/")[0]:
            pair = tuple(sorted((int(u.split("/")[0][1:]), int(v.split("/")[0][1:]))))
            per_pair[pair] = per_pair.get(pair, 0) + round(d["link_gbps"] / global_gbps)
    return per_pair


@pytest.mark.parametrize(("groups", "routers", "hosts", "ports"), [
    (5, 4, 2, 1), (9, 4, 2, 2), (3, 2, 1, 2), (2, 2, 1, 3), (4, 3, 1, 2), (6, 2, 2, 3), (1, 3, 2, 1), (3, 3, 1, 1),
])
def test_dragonfly(groups: int, routers: int, hosts: int, ports: int) -> None:
    g = dragonfly(groups=groups, routers_per_group=routers, hosts_per_router=hosts,
                  global_links_per_router=ports, link_gbps=100, global_gbps=300, global_latency_us=3)
    assert counts(g)[:2] == (groups * routers * hosts, groups * routers)
    assert g.graph["hosts"] == [f"h{i}" for i in range(groups * routers * hosts)]
    assert list(g[f"h{hosts}"]) == [f"g0/r{1 % routers}"]
    for grp in range(groups):
        group = [f"g{grp}/r{r}" for r in range(routers)]
        assert all(g.has_edge(a, b) and g[a][b]["link_gbps"] == 100 for a, b in itertools.combinations(group, 2))
    per_pair = global_cables(g, 300)
    assert set(per_pair) == set(itertools.combinations(range(groups), 2))
    assert max(per_pair.values(), default=0) - min(per_pair.values(), default=0) <= 1
    assert sum(per_pair.values()) == g.graph["global_cables"] == (groups * routers * ports // 2 if groups > 1 else 0)
    for router in (r for r in g if r.startswith("g")):
        remote = [round(d["link_gbps"] / 300) for n, d in g[router].items()
                  if n.startswith("g") and n.split("/")[0] != router.split("/")[0]]
        assert sum(remote) <= ports
        assert all(g[router][n]["latency_us"] == 3 for n in g[router] if n.split("/")[0] != router.split("/")[0]
                   and n.startswith("g"))


def test_dragonfly_balanced_has_one_cable_per_pair() -> None:
    g = dragonfly(groups=9, routers_per_group=4, hosts_per_router=2, global_links_per_router=2)
    assert set(global_cables(g, 100).values()) == {1}
    assert all(g.degree[f"g{grp}/r{r}"] == 3 + 2 + 2 for grp in range(9) for r in range(4))


DEFAULT_HOSTS = {"star": 8, "ring": 8, "leafspine": 16, "fattree": 16, "dgx": 16, "torus": 16, "dragonfly": 40}

VARIANTS = [
    "star:hosts=1",
    "ring:hosts=2",
    "leafspine:leaves=1,hosts_per_leaf=3,spines=0",
    "fattree:k=2",
    "fattree:k=6,pods=1",
    "dgx:nodes=3,gpus_per_node=4,rails=false,nodes_per_leaf=2",
    "dgx:nodes=1,gpus_per_node=1",
    "torus:dims=2x2x2",
    "dragonfly:groups=2,routers_per_group=2,hosts_per_router=1,global_links_per_router=3",
]


@pytest.mark.parametrize("text", [*BUILDERS, *VARIANTS])
def test_every_builder_is_connected_valid_and_round_trips(text: str) -> None:
    g = load_topology(text)
    assert nx.is_connected(g)
    validate_graph(g)
    assert all(kind in ("host", "switch") for _, kind in g.nodes(data="kind"))
    assert all(d["link_gbps"] > 0 and d["latency_us"] >= 0 for _, _, d in g.edges(data=True))
    assert all(g.degree[h] >= 1 for h in g.graph["hosts"])
    assert g.graph["name"] == text.split(":")[0]
    if text in DEFAULT_HOSTS:
        assert len(g.graph["hosts"]) == DEFAULT_HOSTS[text]
    again = load_topology(g.graph["spec"])
    assert nx.utils.graphs_equal(g, again)  # same nodes, cables and attributes (stronger than isomorphic)


@pytest.mark.parametrize("text", [*BUILDERS, *VARIANTS, "dgx:nodes=2,gpus_per_node=2,spine_gbps=50",
                                  "dragonfly:global_gbps=50,global_latency_us=4"])
def test_every_link_names_the_parameters_its_rate_and_latency_come_from(text: str) -> None:
    """Built again with every rate and latency parameter doubled, every link has twice the rate and latency;
    its latency is ``latency_share`` times the parameter it names (a rate or latency parameter the builder set)."""
    g = load_topology(text)
    name, params = g.graph["name"], g.graph["params"]
    doubled = build(name, **{**params, **{k: 2 * params[k] for k in LINK_PARAMS[name] if params[k] is not None}})
    named = set()
    for u, v, d in g.edges(data=True):
        again = doubled.edges[u, v]
        assert (again["link_gbps"], again["latency_us"]) == pytest.approx((2 * d["link_gbps"], 2 * d["latency_us"]))
        assert d["latency_us"] == pytest.approx(d.get("latency_share", 1.0) * params[d["latency_param"]])
        assert params[d["gbps_param"]] > 0
        named |= {d["gbps_param"], d["latency_param"]}
    assert named <= {k for k in LINK_PARAMS[name] if params[k] is not None}


ARCHITECTURE_STRINGS = {
    "star:hosts=8,link_gbps=100,latency_us=1": ("star", {"hosts": 8, "link_gbps": 100, "latency_us": 1}),
    "leafspine:leaves=4,hosts_per_leaf=4,spines=2,host_gbps=100,uplink_gbps=200,latency_us=1": (
        "leafspine",
        {"leaves": 4, "hosts_per_leaf": 4, "spines": 2, "host_gbps": 100, "uplink_gbps": 200, "latency_us": 1}),
    "fattree:k=16,link_gbps=400,latency_us=1": ("fattree", {"k": 16, "link_gbps": 400, "latency_us": 1}),
    "dgx:nodes=4,gpus_per_node=8,nvlink_gbps=3600,nic_gbps=400,rails=true": (
        "dgx", {"nodes": 4, "gpus_per_node": 8, "nvlink_gbps": 3600, "nic_gbps": 400, "rails": True}),
    "torus:dims=4x4x4,link_gbps=100": ("torus", {"dims": "4x4x4", "link_gbps": 100}),
    "ring:hosts=8,link_gbps=100": ("ring", {"hosts": 8, "link_gbps": 100}),
    "dragonfly:groups=5,global_gbps=200.5,rails=FALSE": (
        "dragonfly", {"groups": 5, "global_gbps": 200.5, "rails": False}),
}


@pytest.mark.parametrize("text", ARCHITECTURE_STRINGS)
def test_inline_strings_parse(text: str) -> None:
    name, params = parse_inline(text)
    assert (name, params) == ARCHITECTURE_STRINGS[text]
    assert [type(v) for v in params.values()] == [type(v) for v in ARCHITECTURE_STRINGS[text][1].values()]


def test_architecture_strings_build_the_right_graphs() -> None:
    assert counts(load_topology("fattree:k=16,link_gbps=400,latency_us=1")) == (1024, 320, 3072)
    g = load_topology("leafspine:leaves=4,hosts_per_leaf=4,spines=2,host_gbps=100,uplink_gbps=200,latency_us=1")
    assert g.graph["params"] == {"leaves": 4, "hosts_per_leaf": 4, "spines": 2, "host_gbps": 100.0,
                                 "uplink_gbps": 200.0, "latency_us": 1.0}
    assert isinstance(g.graph["params"]["host_gbps"], float)
    assert load_topology(" star ").graph["spec"] == "star:hosts=8,link_gbps=100,latency_us=1"
    assert load_topology("star:").graph["spec"] == "star:hosts=8,link_gbps=100,latency_us=1"
    assert build("torus", dims=[4, 2]).graph["spec"] == "torus:dims=4x2,link_gbps=100,latency_us=1"


PRESET_HOSTS = {
    "star8": 8, "leafspine16": 16, "leafspine16-oversub": 16, "fattree-k16-400g": 1024,
    "fattree-4096-400g": 4096, "dgx-h100-4node": 32, "dgx-h100-128node": 1024, "torus-4x4x4": 64,
    "dragonfly-small": 40,
}


def test_presets_load_and_route() -> None:
    assert set(PRESET_HOSTS) <= set(list_presets())
    assert not set(list_presets()) & set(BUILDERS)
    for name in list_presets():
        g = load_topology(name)
        assert g.graph["preset"] == name and g.graph["description"]
        validate_graph(g)
        assert nx.is_connected(g)
        if name in PRESET_HOSTS:
            assert len(g.graph["hosts"]) == PRESET_HOSTS[name]
        assert same_network(load_topology(g.graph["spec"]), g)
        if len(g.graph["hosts"]) <= 64:
            fabric = Fabric(g)
            ranks = np.arange(fabric.n_hosts)
            routes = fabric.route_ids(ranks, (ranks + 1) % len(ranks))
            assert np.all(np.isfinite(fabric.route_latency_s[routes]))
    assert load_topology("leafspine16-oversub").graph["oversubscription"] == pytest.approx(4.0)
    assert load_topology("dgx-h100-4node").graph["params"]["nvlink_gbps"] == 3600


CUSTOM = """
description: two hosts through one switch, rank order reversed
nodes: [{name: a, kind: host}, {name: b, kind: host}, {name: s, kind: switch}]
links: [{src: a, dst: s, link_gbps: 10, latency_us: 2}, {src: s, dst: b, link_gbps: 40}]
hosts: [b, a]
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_custom_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "g.yaml", CUSTOM)
    g = load_topology(path)
    assert not g.is_directed()
    assert g.graph["hosts"] == ["b", "a"] and g.graph["spec"] == path and g.graph["name"] == "custom"
    assert g["s"]["b"] == {"link_gbps": 40.0, "latency_us": 0.0}
    assert nx.utils.graphs_equal(load_topology(g.graph["spec"]), g)
    fabric = Fabric(g)
    route = fabric.route_ids([1], [0])
    assert fabric.route_bottleneck_Bps[route][0] == pytest.approx(10e9 / 8)
    assert fabric.route_latency_s[route][0] == pytest.approx(2e-6)
    default_order = load_topology(write(tmp_path, "h.yaml", CUSTOM.replace("hosts: [b, a]", "")))
    assert default_order.graph["hosts"] == ["a", "b"]


def test_the_shipped_custom_graph_example_runs_as_the_builder_it_copies(capsys) -> None:
    """docs/examples/custom-graph.yaml (the format the docs show) loads and runs one step with the routes, rates and
    latencies of the leaf-spine its comment names: the same step time and bytes, through the command line."""
    from conftest import run_cli

    example = str(Path(__file__).resolve().parent.parent / "docs" / "examples" / "custom-graph.yaml")
    graph = load_topology(example)
    assert graph.graph["hosts"] == ["gpu0", "gpu1", "gpu2", "gpu3"] and counts(graph) == (4, 3, 6)
    docs = []
    copied = "leafspine:leaves=2,hosts_per_leaf=2,spines=1,host_gbps=100,uplink_gbps=100,latency_us=1"
    for topology in (example, copied):
        code, out, err = run_cli(capsys, "run", "--workload", "dlrm-small", "--strategy", "des", "--fidelity", "flow",
                                 "--topology", topology, "--json")
        assert code == 0, err
        docs.append(json.loads(out))
    assert docs[0]["workers"] == 4 and docs[0]["topology"] == example
    for key in ("step_time_s", "bytes_on_wire", "exposed_comm_s"):
        assert docs[0][key] == pytest.approx(docs[1][key], rel=1e-12), key


def test_custom_yaml_directed(tmp_path: Path) -> None:
    doc = ("nodes: [{name: a, kind: host}, {name: b, kind: host}, {name: s, kind: switch}]\n"
           "links:\n"
           "  - {src: a, dst: s, link_gbps: 10, directed: true}\n"
           "  - {src: s, dst: a, link_gbps: 20, directed: true}\n"
           "  - {src: s, dst: b, link_gbps: 40, latency_us: 1}\n")
    g = load_topology(write(tmp_path, "d.yaml", doc))
    assert g.is_directed()
    assert sorted(g.edges) == [("a", "s"), ("b", "s"), ("s", "a"), ("s", "b")]
    assert g["a"]["s"]["link_gbps"] == 10 and g["s"]["a"]["link_gbps"] == 20 and g["b"]["s"]["link_gbps"] == 40
    one_way = doc.replace("  - {src: s, dst: a, link_gbps: 20, directed: true}\n", "")
    with pytest.raises(SpecError, match="disconnected: b cannot reach a"):
        load_topology(write(tmp_path, "one_way.yaml", one_way))


def test_preset_format_file(tmp_path: Path) -> None:
    g = load_topology(write(tmp_path, "p.yml", "builder: star\nparams: {hosts: 3}\ndescription: tiny\n"))
    assert len(g.graph["hosts"]) == 3 and g.graph["description"] == "tiny"
    assert g.graph["spec"] == "star:hosts=3,link_gbps=100,latency_us=1"
    assert len(load_topology(write(tmp_path, "q.yaml", "builder: fattree\n")).graph["hosts"]) == 16


def test_node_link_json(tmp_path: Path) -> None:
    g = load_topology("dgx:nodes=2,gpus_per_node=4")
    for edges in ("links", "edges"):
        path = write(tmp_path, f"{edges}.json", json.dumps(nx.node_link_data(g, edges=edges)))
        loaded = load_topology(path)
        assert same_network(loaded, g) and loaded.graph["spec"] == path
    numbered = {"directed": False, "multigraph": False, "graph": {},
                "nodes": [{"id": 0, "kind": "host"}, {"id": 1, "kind": "switch"}, {"id": 2, "kind": "host"}],
                "edges": [{"source": 0, "target": 1, "link_gbps": 10}, {"source": 1, "target": 2, "link_gbps": 10}]}
    loaded = load_topology(write(tmp_path, "n.json", json.dumps(numbered)))
    assert loaded.graph["hosts"] == ["0", "2"]
    assert loaded["0"]["1"] == {"link_gbps": 10.0, "latency_us": 0.0}


def test_graphml(tmp_path: Path) -> None:
    g = load_topology("leafspine:leaves=2,hosts_per_leaf=2,spines=1")
    plain = nx.Graph(g)
    plain.graph = {"hosts": ",".join(g.graph["hosts"])}
    path = tmp_path / "g.graphml"
    nx.write_graphml(plain, path)
    assert same_network(load_topology(str(path)), g)


@pytest.mark.parametrize(("text", "field", "value", "allowed"), [
    ("mesh:hosts=4", "topology", "mesh", "known builders: star, ring"),
    ("nosuchthing", "topology", "nosuchthing", "star8"),
    ("star:hosts", "topology", "star:hosts", "key=value"),
    ("star:hosts=4,", "topology", "star:hosts=4,", "key=value"),
    ("star:hosts=4,colour=red", "topology.colour", "red", "allowed: hosts, link_gbps, latency_us"),
    ("star:hosts=4,hosts=5", "topology.hosts", "5", "more than once"),
    ("star:hosts=0", "topology.hosts", 0, "allowed: an integer > 0"),
    ("star:hosts=2.5", "topology.hosts", 2.5, "integer"),
    ("star:hosts=true", "topology.hosts", True, "integer"),
    ("star:link_gbps=-1", "topology.link_gbps", -1, "allowed: a number >= 1e-06"),
    ("star:link_gbps=0", "topology.link_gbps", 0, "allowed: a number >= 1e-06"),
    ("star:link_gbps=fast", "topology.link_gbps", "fast", "number"),
    ("star:link_gbps=inf", "topology.link_gbps", float("inf"), "finite"),
    ("star:latency_us=-1", "topology.latency_us", -1, "allowed: a number >= 0"),
    ("dgx:rails=maybe", "topology.rails", "maybe", "true or false"),
    ("fattree:k=5", "topology.k", 5, "even"),
    ("fattree:k=4,pods=9", "topology.pods", 9, "between 1 and k=4"),
    ("leafspine:leaves=2,spines=0", "topology.spines", 0, "more than one leaf"),
    ("leafspine:spines=-1", "topology.spines", -1, "allowed: an integer >= 0"),
    ("dgx:spines=0", "topology.spines", 0, "more than one leaf"),
    ("dgx:rails=true,nodes_per_leaf=2", "topology.nodes_per_leaf", 2, "rails=false"),
    ("torus:dims=4x1", "topology.dims", "4x1", "4x4x4"),
    ("torus:dims=4", "topology.dims", 4, "4x4x4"),
    ("torus:dims=4x4x4x4", "topology.dims", "4x4x4x4", "2 or 3 sizes"),
    ("dragonfly:groups=9,routers_per_group=2", "topology.groups", 9, "+ 1 = 3"),
    ("missing.yaml", "topology", "missing.yaml", "file not found"),
    ("some/dir/net.json", "topology", "some/dir/net.json", "file not found"),
])
def test_bad_topology_strings(text: str, field: str, value: object, allowed: str) -> None:
    with pytest.raises(SpecError) as error:
        load_topology(text)
    assert (error.value.field, error.value.value) == (field, value)
    message = str(error.value)
    assert message.startswith(f"{field}: got {value!r}; ") and allowed in message and "\n" not in message


def test_direct_builder_calls_are_validated() -> None:
    with pytest.raises(SpecError, match=r"topology\.hosts: got 'many'"):
        build("star", hosts="many")
    with pytest.raises(SpecError, match=r"topology\.hosts: got True"):
        star(hosts=True)
    with pytest.raises(SpecError, match=r"topology\.spines: got 1\.5"):
        dgx(spines=1.5)
    with pytest.raises(SpecError, match=r"topology\.global_gbps: got -5"):
        dragonfly(global_gbps=-5)
    with pytest.raises(SpecError, match="unknown parameter; allowed"):
        ring(hosts=4, nodes=2)


def test_missing_required_parameter_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    strict = create_model("StrictStar", __config__=ConfigDict(extra="forbid"), hosts=(int, ...), link_gbps=(float, 1.0))
    monkeypatch.setitem(PARAMS, "star", strict)
    with pytest.raises(SpecError, match=r"required; required parameters: hosts$"):
        load_topology("star")


NODES_AB = "nodes: [{name: a, kind: host}, {name: b, kind: host}, {name: s, kind: switch}]\n"


@pytest.mark.parametrize(("doc", "field", "allowed"), [
    (NODES_AB + "links: [{src: a, dst: s}, {src: s, dst: b, link_gbps: 1}]", "link a-s.link_gbps", "bandwidth from"),
    (NODES_AB + "links: [{src: a, dst: s, link_gbps: 0}, {src: s, dst: b, link_gbps: 1}]", "link a-s.link_gbps",
     "got 0"),
    (NODES_AB + "links: [{src: a, dst: s, link_gbps: fast}, {src: s, dst: b, link_gbps: 1}]", "link a-s.link_gbps",
     "got 'fast'"),
    (NODES_AB + "links: [{src: a, dst: s, link_gbps: 1, latency_us: -2}, {src: s, dst: b, link_gbps: 1}]",
     "link a-s.latency_us", "got -2"),
    (NODES_AB + "links: [{src: a, dst: s, link_gbps: 1}]", "topology", "disconnected: a cannot reach b"),
    (NODES_AB + "links: [{src: a, dst: x, link_gbps: 1}]", ":links[0].dst", "not a declared node"),
    (NODES_AB + "links: [{src: a, dst: s, link_gbps: 1}, {src: s, dst: a, link_gbps: 1}]", ":links[1]",
     "duplicate link"),
    (NODES_AB + "links: [{src: a, dst: a, link_gbps: 1}]", "link a-a", "two different nodes"),
    (NODES_AB + "links: [{src: a, dst: s, bandwidth_gbps: 1}]", ":links[0].bandwidth_gbps", "allowed: src, dst"),
    (NODES_AB + "links: [{src: a, dst: s, link_gbps: 1, directed: sure}]", ":links[0].directed", "true or false"),
    (NODES_AB + "links: [{src: a, link_gbps: 1}]", ":links[0].dst", "required"),
    (NODES_AB + "links: {src: a}", ":links", "list of mappings"),
    (NODES_AB + "links: [{src: a, dst: s, link_gbps: 1}, {src: s, dst: b, link_gbps: 1}]\nhosts: [a, s]",
     "topology.hosts", "got 's'"),
    (NODES_AB + "links: [{src: a, dst: s, link_gbps: 1}, {src: s, dst: b, link_gbps: 1}]\nhosts: [a]",
     "topology.hosts", "every host node must be listed"),
    (NODES_AB + "links: [{src: a, dst: s, link_gbps: 1}, {src: s, dst: b, link_gbps: 1}]\nhosts: [a, b, a]",
     "topology.hosts", "more than once"),
    ("nodes: [{name: a, kind: gpu}]\nlinks: []", "node a.kind", "'host' or 'switch'"),
    ("nodes: [{name: s, kind: switch}]\nlinks: []", "topology.hosts", "no hosts"),
    ("nodes: [{name: a, kind: host}, {name: a, kind: host}]\nlinks: []", ":nodes[1].name", "duplicate node"),
    (NODES_AB + "links: []\ncolour: red", ":colour", "allowed: nodes, links, hosts"),
    ("builder: star\nparams: {hosts: 2}\nextra: 1", ":extra", "allowed: builder, params, description"),
    ("builder: star\nparams: [1, 2]", ":params", "mapping"),
    ("builder: mesh", "topology", "unknown builder"),
    ("- just\n- a list", "topology", "must be a mapping"),
    ("nodes: [a: b: c", "topology", "invalid YAML"),
])
def test_bad_custom_yaml(tmp_path: Path, doc: str, field: str, allowed: str) -> None:
    path = write(tmp_path, "bad.yaml", doc)
    with pytest.raises(SpecError) as error:
        load_topology(path)
    message = str(error.value)
    assert error.value.field == (f"{path}{field}" if field.startswith(":") else field)
    assert allowed in message and "\n" not in message


def test_host_bridging_two_islands_is_disconnected(tmp_path: Path) -> None:
    doc = ("nodes: [{name: a, kind: host}, {name: b, kind: host}, {name: c, kind: host},"
           " {name: s1, kind: switch}, {name: s2, kind: switch}]\n"
           "links: [{src: b, dst: s1, link_gbps: 1}, {src: b, dst: s2, link_gbps: 1},"
           " {src: a, dst: s1, link_gbps: 1}, {src: c, dst: s2, link_gbps: 1}]\nhosts: [b, a, c]\n")
    path = write(tmp_path, "bridge.yaml", doc)
    assert nx.is_connected(nx.Graph([("a", "s1"), ("b", "s1"), ("b", "s2"), ("c", "s2")]))
    with pytest.raises(SpecError, match="disconnected: a cannot reach c"):
        load_topology(path)
    direct = doc.replace("{src: c, dst: s2, link_gbps: 1}]", "{src: c, dst: s2, link_gbps: 1}, {src: a, dst: c, "
                         "link_gbps: 1}]")
    assert len(load_topology(write(tmp_path, "direct.yaml", direct)).graph["hosts"]) == 3


def test_disconnected_message_lists_first_hosts() -> None:
    islands = nx.union(star(hosts=3), nx.relabel_nodes(star(hosts=8), lambda n: f"x{n}"))
    islands.graph = {"hosts": [n for n, k in islands.nodes(data="kind") if k == "host"], "spec": "two stars"}
    with pytest.raises(SpecError) as error:
        validate_graph(islands)
    assert str(error.value) == ("topology: got 'two stars'; is disconnected: h0 cannot reach xh0, xh1, xh2, xh3, "
                                "xh4 and 3 more (hosts do not forward traffic)")


@pytest.mark.parametrize(("name", "text", "allowed"), [
    ("bad.json", "{not json", "invalid JSON"),
    ("list.json", "[1, 2]", "node-link"),
    ("multi.json", json.dumps({"multigraph": True, "nodes": [], "edges": []}), "multigraphs"),
    ("bad.graphml", "<graphml><graph", "invalid GraphML"),
])
def test_bad_files(tmp_path: Path, name: str, text: str, allowed: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(SpecError) as error:
        load_topology(path)
    assert error.value.field == "topology" and error.value.value == path and allowed in str(error.value)
