"""Topology builders: plain functions returning networkx graphs, with units in every parameter name.

Conventions (the simulator relies on them): an undirected edge is a full-duplex cable with
``link_gbps`` (1e9 bits/s per direction) and ``latency_us``; nodes have ``kind`` ``host`` (a compute
endpoint: GPU or server, never forwards) or ``switch``; ``G.graph["hosts"]`` lists hosts in rank order;
``G.graph["spec"]`` is an inline string that rebuilds the graph.

>>> g = fattree(k=4, link_gbps=100)
>>> len(g.graph["hosts"]), g.number_of_nodes() - 16, g.number_of_edges()
(16, 20, 48)
"""

from __future__ import annotations

import itertools

import networkx as nx


def _graph(name: str, params: dict[str, object]) -> nx.Graph:
    spec = name + ":" + ",".join(f"{k}={_fmt(v)}" for k, v in params.items() if v is not None)
    return nx.Graph(name=name, spec=spec, hosts=[])


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _host(g: nx.Graph, name: str) -> str:
    g.add_node(name, kind="host")
    g.graph["hosts"].append(name)
    return name


def _switch(g: nx.Graph, name: str) -> str:
    g.add_node(name, kind="switch")
    return name


def _cable(g: nx.Graph, a: str, b: str, link_gbps: float, latency_us: float) -> None:
    g.add_edge(a, b, link_gbps=float(link_gbps), latency_us=float(latency_us))


def star(hosts: int = 8, link_gbps: float = 100.0, latency_us: float = 1.0) -> nx.Graph:
    """``hosts`` hosts on one switch ``sw0``."""
    g = _graph("star", {"hosts": hosts, "link_gbps": link_gbps, "latency_us": latency_us})
    _switch(g, "sw0")
    for i in range(hosts):
        _cable(g, _host(g, f"h{i}"), "sw0", link_gbps, latency_us)
    return g


def ring(hosts: int = 8, link_gbps: float = 100.0, latency_us: float = 1.0) -> nx.Graph:
    """One switch ``r{i}`` per host, switches cabled in a ring (a single cable when there are two)."""
    g = _graph("ring", {"hosts": hosts, "link_gbps": link_gbps, "latency_us": latency_us})
    for i in range(hosts):
        _cable(g, _host(g, f"h{i}"), _switch(g, f"r{i}"), link_gbps, latency_us)
    for i in range(hosts if hosts > 2 else hosts - 1):
        _cable(g, f"r{i}", f"r{(i + 1) % hosts}", link_gbps, latency_us)
    return g


def leafspine(leaves: int = 4, hosts_per_leaf: int = 4, spines: int = 2, host_gbps: float = 100.0,
              uplink_gbps: float = 200.0, latency_us: float = 1.0) -> nx.Graph:
    """Hosts on leaves (``host_gbps``), every leaf cabled to every spine (``uplink_gbps``).

    ``G.graph["oversubscription"] = hosts_per_leaf * host_gbps / (spines * uplink_gbps)``.
    """
    g = _graph("leafspine", {"leaves": leaves, "hosts_per_leaf": hosts_per_leaf, "spines": spines,
                             "host_gbps": host_gbps, "uplink_gbps": uplink_gbps, "latency_us": latency_us})
    for s in range(spines):
        _switch(g, f"spine{s}")
    for leaf in range(leaves):
        _switch(g, f"leaf{leaf}")
        for i in range(hosts_per_leaf):
            _cable(g, _host(g, f"h{leaf * hosts_per_leaf + i}"), f"leaf{leaf}", host_gbps, latency_us)
        for s in range(spines):
            _cable(g, f"leaf{leaf}", f"spine{s}", uplink_gbps, latency_us)
    g.graph["oversubscription"] = hosts_per_leaf * host_gbps / (spines * uplink_gbps) if spines else 0.0
    return g


def fattree(k: int = 4, link_gbps: float = 100.0, latency_us: float = 1.0, pods: int | None = None) -> nx.Graph:
    """k-ary three-level fat-tree (k even): k pods of k/2 edge and k/2 aggregation switches, k/2 hosts per
    edge switch, (k/2)^2 cores; aggregation switch a of every pod connects to cores a*k/2 .. a*k/2+k/2-1.
    ``pods`` < k keeps only the first pods (all cores stay): ``fattree(k=32, pods=16)`` has 4,096 hosts."""
    pods = k if pods is None else pods
    g = _graph("fattree", {"k": k, "link_gbps": link_gbps, "latency_us": latency_us,
                           "pods": pods if pods != k else None})
    half = k // 2
    for c in range(half * half):
        _switch(g, f"core{c}")
    for p in range(pods):
        for a in range(half):
            _switch(g, f"pod{p}/agg{a}")
            for j in range(half):
                _cable(g, f"pod{p}/agg{a}", f"core{a * half + j}", link_gbps, latency_us)
        for e in range(half):
            edge = _switch(g, f"pod{p}/edge{e}")
            for a in range(half):
                _cable(g, edge, f"pod{p}/agg{a}", link_gbps, latency_us)
            for i in range(half):
                _cable(g, _host(g, f"h{(p * half + e) * half + i}"), edge, link_gbps, latency_us)
    return g


def dgx(nodes: int = 2, gpus_per_node: int = 8, nvlink_gbps: float = 3600.0, nic_gbps: float = 400.0,
        rails: bool = True, spines: int | None = None, spine_gbps: float | None = None, latency_us: float = 1.0,
        nvlink_latency_us: float = 0.5, nodes_per_leaf: int | None = None) -> nx.Graph:
    """GPU cluster: per node, GPUs ``n{n}/gpu{g}`` on one NVSwitch (``nvlink_gbps`` each); one NIC per GPU,
    modelled as the GPU's link to its leaf (``nic_gbps``). ``rails``: GPU g of every node goes to leaf
    ``rail{g}``; otherwise all GPUs of a node go to ``leaf{n // nodes_per_leaf}``. Leaves connect to every
    spine; by default spines are non-blocking (leaf uplink capacity = its NIC capacity)."""
    g = _graph("dgx", {"nodes": nodes, "gpus_per_node": gpus_per_node, "nvlink_gbps": nvlink_gbps,
                       "nic_gbps": nic_gbps, "rails": rails, "spines": spines, "spine_gbps": spine_gbps,
                       "latency_us": latency_us, "nvlink_latency_us": nvlink_latency_us,
                       "nodes_per_leaf": nodes_per_leaf})
    g.graph["gpus_per_node"] = gpus_per_node
    per_leaf = nodes_per_leaf or nodes
    n_leaves = gpus_per_node if rails else -(-nodes // per_leaf)
    leaf_names = [f"rail{i}" if rails else f"leaf{i}" for i in range(n_leaves)]
    for leaf in leaf_names:
        _switch(g, leaf)
    for n in range(nodes):
        nvswitch = _switch(g, f"n{n}/nvswitch")
        for i in range(gpus_per_node):
            gpu = _host(g, f"n{n}/gpu{i}")
            _cable(g, gpu, nvswitch, nvlink_gbps, nvlink_latency_us)
            _cable(g, gpu, leaf_names[i] if rails else leaf_names[n // per_leaf], nic_gbps, latency_us)
    if n_leaves > 1:
        n_spines = spines if spines is not None else (gpus_per_node if rails else n_leaves)
        ports = nodes if rails else per_leaf * gpus_per_node
        uplink = spine_gbps if spine_gbps is not None else nic_gbps * ports / max(n_spines, 1)
        for s in range(n_spines):
            _switch(g, f"spine{s}")
            for leaf in leaf_names:
                _cable(g, leaf, f"spine{s}", uplink, latency_us)
    return g


def torus(dims: str | list[int] = "4x4", link_gbps: float = 100.0, latency_us: float = 1.0) -> nx.Graph:
    """2D/3D torus of routers ``t{i}_{j}[_{k}]`` with wraparound, one host ``h{index}`` per router
    (row-major order). A dimension of size 2 has a single cable between its two routers."""
    shape = [int(d) for d in (dims.split("x") if isinstance(dims, str) else dims)]
    g = _graph("torus", {"dims": "x".join(map(str, shape)), "link_gbps": link_gbps, "latency_us": latency_us})

    def name(coord: tuple[int, ...]) -> str:
        return "t" + "_".join(map(str, coord))

    coords = list(itertools.product(*(range(d) for d in shape)))
    for index, coord in enumerate(coords):
        _cable(g, _host(g, f"h{index}"), _switch(g, name(coord)), link_gbps, latency_us)
    for coord in coords:
        for axis, size in enumerate(shape):
            nxt = list(coord)
            nxt[axis] = (coord[axis] + 1) % size
            if size > 2 or coord[axis] == 0:
                _cable(g, name(coord), name(tuple(nxt)), link_gbps, latency_us)
    return g


def dragonfly(groups: int = 4, routers_per_group: int = 4, hosts_per_router: int = 2,
              global_links_per_router: int = 1, link_gbps: float = 100.0, global_gbps: float | None = None,
              latency_us: float = 1.0, global_latency_us: float | None = None) -> nx.Graph:
    """Dragonfly: routers ``g{g}/r{r}`` all-to-all inside a group; global cables between groups assigned
    round-robin so every pair of groups is joined (needs groups <= routers_per_group *
    global_links_per_router + 1); ``hosts_per_router`` hosts per router."""
    g = _graph("dragonfly", {"groups": groups, "routers_per_group": routers_per_group,
                             "hosts_per_router": hosts_per_router, "global_links_per_router": global_links_per_router,
                             "link_gbps": link_gbps, "global_gbps": global_gbps, "latency_us": latency_us,
                             "global_latency_us": global_latency_us})
    global_gbps = global_gbps or link_gbps
    global_latency_us = latency_us if global_latency_us is None else global_latency_us
    for grp in range(groups):
        routers = [_switch(g, f"g{grp}/r{r}") for r in range(routers_per_group)]
        for a, b in itertools.combinations(routers, 2):
            _cable(g, a, b, link_gbps, latency_us)
        for r, router in enumerate(routers):
            for h in range(hosts_per_router):
                _cable(g, _host(g, f"h{(grp * routers_per_group + r) * hosts_per_router + h}"), router,
                       link_gbps, latency_us)
    ports = {grp: 0 for grp in range(groups)}
    for a, b in itertools.combinations(range(groups), 2):
        ra, rb = ports[a] % routers_per_group, ports[b] % routers_per_group
        ports[a] += 1
        ports[b] += 1
        _cable(g, f"g{a}/r{ra}", f"g{b}/r{rb}", global_gbps, global_latency_us)
    return g


BUILDERS = {"star": star, "ring": ring, "leafspine": leafspine, "fattree": fattree, "dgx": dgx,
            "torus": torus, "dragonfly": dragonfly}
