"""Topology builders: each makes plain ``Cables`` (``CABLES[name]``, what ``Fabric`` compiles without networkx)
and, called by name (``fattree(k=4)``, ``BUILDERS[name]``), returns them as an ``nx.Graph``; edges are full-duplex
cables.

Conventions every builder follows (other packages depend on them):

- edge attributes ``link_gbps`` (1e9 bits/s per direction, > 0) and ``latency_us`` (microseconds, >= 0), and
  the parameters they come from: ``gbps_param`` (the link's rate is proportional to it: a multiple for
  bundled or derived links, a fraction after a fault) and ``latency_param`` (its latency is ``latency_share``
  times it, default 1), so that a fabric can price other values of them without being rebuilt
  (``LINK_PARAMS``: every parameter of a rate or a latency);
- node attribute ``kind``: ``"host"`` (a compute endpoint, never forwards) or ``"switch"`` (forwards);
- ``G.graph["hosts"]``: host names in rank order; ``G.graph["name"]``: the builder name;
  ``G.graph["spec"]``: a canonical inline string that rebuilds the graph; ``G.graph["params"]``: the
  validated parameters (``None`` where a value is derived from the others).

Parameters are keyword-only and validated by a pydantic model generated from each signature
(``PARAMS[name]``); bad input raises :class:`~simulator.errors.SpecError` naming ``topology.<param>``.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from simulator.errors import SpecError, from_validation
from topologies.cables import Cables

if TYPE_CHECKING:
    import networkx as nx

Count = Annotated[int, Field(strict=True, gt=0)]
NonNegCount = Annotated[int, Field(strict=True, ge=0)]
MAX_GBPS = 1e7  # 10 Pb/s: beyond any link, and far from float overflow once in bytes/s
MIN_GBPS = 1e-6  # 1 kb/s: below any real link, and far from overflowing a transfer time
MAX_US = 1e9  # 1,000 s of latency
Gbps = Annotated[float, Field(strict=True, ge=MIN_GBPS, le=MAX_GBPS, allow_inf_nan=False)]
Micros = Annotated[float, Field(strict=True, ge=0, le=MAX_US, allow_inf_nan=False)]
Flag = Annotated[bool, Field(strict=True)]


def _dims_text(value: object) -> object:
    """Normalize torus dims (``"4x4"``, ``"4X4x2"``, ``[4, 4]``) to ``"4x4"``; raise ValueError if invalid."""
    allowed = "expected 2 or 3 sizes >= 2, such as 4x4, 4x4x4 or [4, 4]"
    if isinstance(value, str):
        parts = value.lower().split("x")
        if not all(p.strip().isdigit() for p in parts):
            raise ValueError(allowed)
        sizes = [int(p) for p in parts]
    elif isinstance(value, list | tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        sizes = list(value)
    else:
        raise ValueError(allowed)
    if len(sizes) not in (2, 3) or min(sizes) < 2:
        raise ValueError(allowed)
    return "x".join(map(str, sizes))


Dims = Annotated[str | list[int], BeforeValidator(_dims_text)]

BUILDERS: dict[str, Callable[..., nx.Graph]] = {}
CABLES: dict[str, Callable[..., Cables]] = {}
PARAMS: dict[str, type[BaseModel]] = {}
LINK_PARAMS: dict[str, tuple[str, ...]] = {}  # per builder: its Gbps and Micros parameters

def describe(name: str) -> str:
    """Builder ``name``'s docstring without its examples, as plain text (inline-code marks removed)."""
    paragraphs = (inspect.getdoc(BUILDERS[name]) or "").split("\n\n")
    return "\n\n".join(p for p in paragraphs if not p.lstrip().startswith(">>>")).replace("``", "")


def format_value(value: object) -> str:
    """Format one parameter value the way the inline parser reads it back (``true``, ``100``, ``0.5``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def format_spec(name: str, params: dict[str, Any]) -> str:
    """Canonical inline string ``name:key=value,...`` (``None`` values, meaning derived, are left out)."""
    items = ",".join(f"{key}={format_value(value)}" for key, value in params.items() if value is not None)
    return f"{name}:{items}" if items else name


def validate_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate keyword parameters of builder ``name``; return them with defaults filled in.

    Raises SpecError naming ``topology.<param>``, the bad value and what is allowed.
    """
    model = PARAMS[name]
    try:
        return model(**params).model_dump()
    except ValidationError as exc:
        raise from_validation(exc, model, prefix="topology.", noun="parameter") from None


def _builder(func: Callable[..., Cables]) -> Callable[..., nx.Graph]:
    """Register ``func`` in CABLES (plain) and BUILDERS (a networkx graph), derive its parameter model and
    validate every call through it."""
    name = func.__name__
    hints = typing.get_type_hints(func, include_extras=True)
    fields: dict[str, Any] = {
        key: (hints[key], ... if p.default is inspect.Parameter.empty else p.default)
        for key, p in inspect.signature(func).parameters.items()
    }
    PARAMS[name] = create_model(f"{name.capitalize()}Params", __config__=ConfigDict(extra="forbid"), **fields)
    LINK_PARAMS[name] = tuple(key for key, (hint, _) in fields.items()
                              if hint in (Gbps, Micros) or {Gbps, Micros} & set(typing.get_args(hint)))

    def cables(**params: Any) -> Cables:
        checked = validate_params(name, params)
        elements = _elements(name, checked)
        if elements > MAX_ELEMENTS:
            raise SpecError("topology", format_spec(name, checked), f"about {elements:.3g} nodes and links; "
                            f"allowed: up to {MAX_ELEMENTS:,}")
        net = func(**checked)
        net.graph.update(name=name, spec=format_spec(name, checked), params=checked)
        return net

    @functools.wraps(func)
    def build(**params: Any) -> nx.Graph:
        return cables(**params).to_networkx()

    CABLES[name] = cables
    BUILDERS[name] = build
    return build


MAX_ELEMENTS = 2_000_000  # nodes plus links a builder may make: a 100,000-GPU DGX cluster fits


def _elements(name: str, p: dict[str, Any]) -> float:
    """Nodes plus links builder ``name`` would make with parameters ``p``, roughly (an upper estimate), so
    that absurd sizes are refused before any memory is used."""
    if name in ("star", "ring"):
        return 3.0 * p["hosts"]
    if name == "leafspine":
        return 3.0 * p["leaves"] * p["hosts_per_leaf"] + p["spines"] * (p["leaves"] + 1)
    if name == "fattree":
        return 2.0 * p["k"] ** 3 + 2.0 * p["k"] ** 2
    if name == "dgx":
        leaves = p["gpus_per_node"] * p["nodes"] / (p["nodes_per_leaf"] or p["nodes"])
        return 4.0 * p["nodes"] * p["gpus_per_node"] + (p["spines"] or p["gpus_per_node"]) * (leaves + 1)
    if name == "torus":
        sizes = [int(x) for x in str(p["dims"]).split("x")]
        return float(math.prod(sizes)) * (2 + 2 * len(sizes))
    if name == "dragonfly":
        routers = p["groups"] * p["routers_per_group"]
        return routers * (2.0 * p["hosts_per_router"] + p["routers_per_group"] + p["global_links_per_router"] + 1)
    return 0.0


def _from(gbps: str, latency: str = "latency_us", share: float = 1.0) -> dict[str, Any]:
    """Edge attributes naming the parameters a link's rate and latency come from (module docstring)."""
    return {"gbps_param": gbps, "latency_param": latency, **({"latency_share": share} if share != 1.0 else {})}


def _add_hosts(graph: Cables, hosts: list[str]) -> None:
    graph.add_nodes_from(hosts, kind="host")
    graph.graph["hosts"] = hosts


@_builder
def star(*, hosts: Count = 8, link_gbps: Gbps = 100.0, latency_us: Micros = 1.0) -> Cables:
    """Hosts ``h0..`` on one switch ``sw0``; each cable ``link_gbps`` (1e9 bits/s), ``latency_us`` (µs).

    >>> G = star(hosts=4, link_gbps=100)
    >>> G.graph["hosts"], G.degree["sw0"], G.graph["spec"]
    (['h0', 'h1', 'h2', 'h3'], 4, 'star:hosts=4,link_gbps=100,latency_us=1')
    """
    graph = Cables()
    _add_hosts(graph, [f"h{i}" for i in range(hosts)])
    graph.add_nodes_from(["sw0"], kind="switch")
    graph.add_edges_from(((h, "sw0") for h in graph.graph["hosts"]), link_gbps=link_gbps, latency_us=latency_us,
                         **_from("link_gbps"))
    return graph


@_builder
def ring(*, hosts: Count = 8, link_gbps: Gbps = 100.0, latency_us: Micros = 1.0) -> Cables:
    """Host ``h{i}`` on its own switch ``r{i}``; switches in a ring (``r{i}`` -- ``r{i+1 mod n}``).

    Every cable (host and ring) has ``link_gbps`` (1e9 bits/s) and ``latency_us`` (µs). With 2 hosts the
    ring is one cable.

    >>> import networkx as nx
    >>> G = ring(hosts=4, link_gbps=100)
    >>> G.number_of_edges(), nx.shortest_path(G, "h0", "h2")
    (8, ['h0', 'r0', 'r1', 'r2', 'h2'])
    """
    graph = Cables()
    _add_hosts(graph, [f"h{i}" for i in range(hosts)])
    switches = [f"r{i}" for i in range(hosts)]
    graph.add_nodes_from(switches, kind="switch")
    cables = list(zip(graph.graph["hosts"], switches, strict=True))
    if hosts > 1:
        cables += [(switches[i], switches[(i + 1) % hosts]) for i in range(hosts)]
    graph.add_edges_from(cables, link_gbps=link_gbps, latency_us=latency_us, **_from("link_gbps"))
    return graph


@_builder
def leafspine(*, leaves: Count = 4, hosts_per_leaf: Count = 4, spines: NonNegCount = 2, host_gbps: Gbps = 100.0,
              uplink_gbps: Gbps = 200.0, latency_us: Micros = 1.0) -> Cables:
    """Two-tier Clos: hosts on leaves ``leaf{l}`` (``host_gbps``), every leaf to every spine ``spine{s}``.

    Uplinks carry ``uplink_gbps`` (1e9 bits/s); all cables ``latency_us`` (µs). Hosts ``h{i}`` leaf-major.
    ``G.graph["oversubscription"]`` = hosts_per_leaf*host_gbps / (spines*uplink_gbps) (1.0 without spines,
    which is allowed only with a single leaf).

    >>> G = leafspine(leaves=4, hosts_per_leaf=4, spines=1, host_gbps=100, uplink_gbps=100)
    >>> len(G.graph["hosts"]), G.graph["oversubscription"]
    (16, 4.0)
    """
    if spines == 0 and leaves > 1:
        raise SpecError("topology.spines", spines, f"must be >= 1 when there is more than one leaf ({leaves})")
    graph = Cables()
    _add_hosts(graph, [f"h{i}" for i in range(leaves * hosts_per_leaf)])
    leaf_names = [f"leaf{i}" for i in range(leaves)]
    spine_names = [f"spine{i}" for i in range(spines)]
    graph.add_nodes_from(leaf_names + spine_names, kind="switch")
    graph.add_edges_from(((h, leaf_names[i // hosts_per_leaf]) for i, h in enumerate(graph.graph["hosts"])),
                         link_gbps=host_gbps, latency_us=latency_us, **_from("host_gbps"))
    graph.add_edges_from(itertools.product(leaf_names, spine_names), link_gbps=uplink_gbps, latency_us=latency_us,
                         **_from("uplink_gbps"))
    graph.graph["oversubscription"] = hosts_per_leaf * host_gbps / (spines * uplink_gbps) if spines else 1.0
    return graph


@_builder
def fattree(*, k: Count = 4, link_gbps: Gbps = 100.0, latency_us: Micros = 1.0, pods: Count | None = None) -> Cables:
    """Classic k-ary three-level fat-tree (k even); every cable ``link_gbps`` (1e9 bits/s), ``latency_us`` (µs).

    k pods of k/2 edge switches ``pod{p}/edge{e}`` (k/2 hosts each) and k/2 aggregation switches
    ``pod{p}/agg{a}``, all edge-agg pairs linked; agg j of every pod links to cores ``core{c}``,
    c = j*k/2 .. j*k/2 + k/2 - 1. ``pods`` (1..k, default k) keeps only the first pods (all (k/2)^2 cores).
    Full: k^3/4 hosts ``h{i}`` (pod-major, then edge, then host), 5k^2/4 switches, 3k^3/4 cables.

    >>> G = fattree(k=4, link_gbps=100)
    >>> len(G.graph["hosts"]), G.number_of_nodes() - 16, G.number_of_edges()
    (16, 20, 48)
    >>> len(fattree(k=32, link_gbps=400, pods=16).graph["hosts"])
    4096
    """
    if k % 2:
        raise SpecError("topology.k", k, "must be even")
    pods = k if pods is None else pods
    if pods > k:
        raise SpecError("topology.pods", pods, f"must be between 1 and k={k}")
    half = k // 2
    graph = Cables()
    _add_hosts(graph, [f"h{i}" for i in range(pods * half * half)])
    cores = [f"core{c}" for c in range(half * half)]
    graph.add_nodes_from(cores, kind="switch")
    cables: list[tuple[str, str]] = []
    for p in range(pods):
        edges = [f"pod{p}/edge{e}" for e in range(half)]
        aggs = [f"pod{p}/agg{a}" for a in range(half)]
        graph.add_nodes_from(edges + aggs, kind="switch")
        cables += [(f"h{(p * half + e) * half + h}", edges[e]) for e in range(half) for h in range(half)]
        cables += itertools.product(edges, aggs)
        cables += [(aggs[a], cores[a * half + c]) for a in range(half) for c in range(half)]
    graph.add_edges_from(cables, link_gbps=link_gbps, latency_us=latency_us, **_from("link_gbps"))
    return graph


@_builder
def dgx(*, nodes: Count = 2, gpus_per_node: Count = 8, nvlink_gbps: Gbps = 3600.0, nic_gbps: Gbps = 400.0,
        rails: Flag = True, spines: NonNegCount | None = None, spine_gbps: Gbps | None = None,
        latency_us: Micros = 1.0, nvlink_latency_us: Micros = 0.5, nodes_per_leaf: Count | None = None) -> Cables:
    """GPU cluster: GPUs ``n{n}/gpu{g}`` on an NVSwitch ``n{n}/nvswitch``, one NIC ``n{n}/nic{g}`` per GPU to a leaf.

    NVLink cables: ``nvlink_gbps`` (1e9 bits/s), ``nvlink_latency_us`` (µs). A NIC is its own node on its GPU's PCIe
    path: the GPU-NIC cable (``n{n}/gpu{g}-n{n}/nic{g}``) and the NIC's cable to its leaf both run at ``nic_gbps``
    with half of ``latency_us`` each, so a GPU reaches its leaf as fast as over one cable. A route between two GPUs
    of one node through a leaf is 4 links against NVLink's 2: intra-node traffic never touches a NIC, with or
    without rails. ``rails=True``: GPU g of every node on rail leaf ``rail{g}``; ``rails=False``: all GPUs of node n
    on ``leaf{n // nodes_per_leaf}`` (default one leaf). Every leaf links to every spine ``spine{s}`` with
    ``spine_gbps`` (default non-blocking: nic_gbps * NIC ports per leaf / spines). Default spines: gpus_per_node
    with rails, else the number of leaves, and none when there is a single leaf (0 spines is allowed only then).
    Hosts node-major; ``G.graph["gpus_per_node"]`` is set for hierarchical collectives.

    >>> G = dgx(nodes=4, gpus_per_node=8, nvlink_gbps=3600, nic_gbps=400, rails=True)
    >>> len(G.graph["hosts"]), G["rail0"]["spine0"]["link_gbps"], sorted(G["n0/nic3"])
    (32, 200.0, ['n0/gpu3', 'rail3'])
    """
    if rails and nodes_per_leaf is not None:
        raise SpecError("topology.nodes_per_leaf", nodes_per_leaf, "applies only with rails=false")
    if rails:
        leaves = [f"rail{g}" for g in range(gpus_per_node)]
        ports_per_leaf = nodes
    else:
        per_leaf = min(nodes_per_leaf or nodes, nodes)
        leaves = [f"leaf{i}" for i in range(math.ceil(nodes / per_leaf))]
        ports_per_leaf = per_leaf * gpus_per_node
    if spines is None:
        spines = 0 if len(leaves) == 1 else gpus_per_node if rails else len(leaves)
    if spines == 0 and len(leaves) > 1:
        raise SpecError("topology.spines", spines, f"must be >= 1 when there is more than one leaf ({len(leaves)})")
    spine_param = "spine_gbps" if spine_gbps is not None else "nic_gbps"
    if spine_gbps is None and spines:
        spine_gbps = nic_gbps * ports_per_leaf / spines

    graph = Cables()
    gpus = [[f"n{n}/gpu{g}" for g in range(gpus_per_node)] for n in range(nodes)]
    _add_hosts(graph, [gpu for node in gpus for gpu in node])
    spine_names = [f"spine{s}" for s in range(spines)]
    graph.add_nodes_from([f"n{n}/nvswitch" for n in range(nodes)] + leaves + spine_names, kind="switch")
    graph.add_edges_from(((gpu, f"n{n}/nvswitch") for n, node in enumerate(gpus) for gpu in node),
                         link_gbps=nvlink_gbps, latency_us=nvlink_latency_us,
                         **_from("nvlink_gbps", "nvlink_latency_us"))
    nics = [[f"n{n}/nic{g}" for g in range(gpus_per_node)] for n in range(nodes)]
    graph.add_nodes_from([nic for node in nics for nic in node], kind="switch")
    graph.add_edges_from(((gpu, nic) for gpu_node, nic_node in zip(gpus, nics, strict=True)
                          for gpu, nic in zip(gpu_node, nic_node, strict=True)),
                         link_gbps=nic_gbps, latency_us=latency_us / 2, **_from("nic_gbps", share=0.5))
    if rails:
        uplinks = [(nic, leaves[g]) for node in nics for g, nic in enumerate(node)]
    else:
        uplinks = [(nic, leaves[n // per_leaf]) for n, node in enumerate(nics) for nic in node]
    graph.add_edges_from(uplinks, link_gbps=nic_gbps, latency_us=latency_us / 2, **_from("nic_gbps", share=0.5))
    graph.add_edges_from(itertools.product(leaves, spine_names), link_gbps=spine_gbps, latency_us=latency_us,
                         **_from(spine_param))
    graph.graph["gpus_per_node"] = gpus_per_node
    return graph


@_builder
def torus(*, dims: Dims = "4x4", link_gbps: Gbps = 100.0, latency_us: Micros = 1.0) -> Cables:
    """2-D or 3-D torus: a router ``t{i}_{j}[_{k}]`` per coordinate with wraparound links to its neighbours.

    ``dims`` is ``"4x4"``, ``"4x4x4"`` or a list of sizes (each >= 2; a size-2 ring is one cable). One host
    ``h{index}`` per router, in row-major coordinate order. Every cable ``link_gbps`` (1e9 bits/s),
    ``latency_us`` (µs).

    >>> G = torus(dims="4x4", link_gbps=100)
    >>> len(G.graph["hosts"]), G.number_of_edges(), G.degree["t0_0"]
    (16, 48, 5)
    """
    sizes = [int(s) for s in str(dims).split("x")]
    coords = list(itertools.product(*(range(s) for s in sizes)))
    router = {c: "t" + "_".join(map(str, c)) for c in coords}
    graph = Cables()
    _add_hosts(graph, [f"h{i}" for i in range(len(coords))])
    graph.add_nodes_from(router.values(), kind="switch")
    cables = list(zip(graph.graph["hosts"], router.values(), strict=True))
    for c in coords:
        for axis, size in enumerate(sizes):
            neighbour = (*c[:axis], (c[axis] + 1) % size, *c[axis + 1 :])
            cables.append((router[c], router[neighbour]))
    graph.add_edges_from(cables, link_gbps=link_gbps, latency_us=latency_us, **_from("link_gbps"))
    return graph


def _round_robin(n: int) -> list[list[tuple[int, int]]]:
    """Circle-method schedule: rounds of disjoint pairs covering every pair of 0..n-1 once (odd n: byes)."""
    teams = list(range(n + n % 2))
    rounds = []
    for _ in range(len(teams) - 1):
        half = len(teams) // 2
        rounds.append([(a, b) for a, b in zip(teams[:half], reversed(teams[half:]), strict=True) if max(a, b) < n])
        teams = [teams[0], teams[-1], *teams[1:-1]]
    return rounds


def _global_cables(groups: int, ports: int) -> dict[int, list[tuple[int, int]]]:
    """Group-pair global cables, evenly spread: each group uses at most ``ports`` cables.

    Walks round-robin rounds cyclically, adding a cable for each pair whose groups both have a free port,
    so every group spends its ports at the same pace and all pairs are covered when ports >= groups - 1.
    Returns, for each group, its cables as (partner group, cable index) sorted by partner.
    """
    used = [0] * groups
    count: dict[tuple[int, int], int] = {}
    rounds = _round_robin(groups)
    added = True
    while added:
        added = False
        for pairs in rounds:
            for a, b in pairs:
                if used[a] < ports and used[b] < ports:
                    used[a] += 1
                    used[b] += 1
                    count[a, b] = count.get((a, b), 0) + 1
                    added = True
    cables: dict[int, list[tuple[int, int]]] = {g: [] for g in range(groups)}
    for (a, b), m in sorted(count.items()):
        cables[a] += [(b, i) for i in range(m)]
        cables[b] += [(a, i) for i in range(m)]
    for g in cables:
        cables[g].sort()
    return cables


@_builder
def dragonfly(*, groups: Count = 5, routers_per_group: Count = 4, hosts_per_router: Count = 2,
              global_links_per_router: Count = 1, link_gbps: Gbps = 100.0, global_gbps: Gbps | None = None,
              latency_us: Micros = 1.0, global_latency_us: Micros | None = None) -> Cables:
    """Dragonfly: routers ``g{g}/r{r}`` all-to-all inside a group, global cables between groups.

    Local and host cables: ``link_gbps`` (1e9 bits/s), ``latency_us`` (µs). Global cables: ``global_gbps``
    and ``global_latency_us`` (default: the local values). Each router has up to
    ``global_links_per_router`` global ports; cables are spread deterministically and evenly over group
    pairs so every pair has at least one, which needs groups <= routers_per_group*global_links_per_router + 1.
    Parallel cables between the same two routers are merged into one link with their summed bandwidth.
    Hosts ``h{i}``: group-major, then router. ``G.graph["global_cables"]``: the number of global cables.

    >>> G = dragonfly(groups=9, routers_per_group=4, hosts_per_router=2, global_links_per_router=2)
    >>> len(G.graph["hosts"]), G.graph["global_cables"]
    (72, 36)
    """
    ports = routers_per_group * global_links_per_router
    if groups > ports + 1:
        raise SpecError("topology.groups", groups,
                        f"must be <= routers_per_group*global_links_per_router + 1 = {ports + 1} "
                        "so that every pair of groups gets a global link")
    global_from = _from("link_gbps" if global_gbps is None else "global_gbps",
                        "latency_us" if global_latency_us is None else "global_latency_us")
    global_gbps = link_gbps if global_gbps is None else global_gbps
    global_latency_us = latency_us if global_latency_us is None else global_latency_us
    routers = [[f"g{g}/r{r}" for r in range(routers_per_group)] for g in range(groups)]
    graph = Cables()
    _add_hosts(graph, [f"h{i}" for i in range(groups * routers_per_group * hosts_per_router)])
    graph.add_nodes_from((r for group in routers for r in group), kind="switch")
    flat = [r for group in routers for r in group]
    local = [(h, flat[i // hosts_per_router]) for i, h in enumerate(graph.graph["hosts"])]
    local += [pair for group in routers for pair in itertools.combinations(group, 2)]
    graph.add_edges_from(local, link_gbps=link_gbps, latency_us=latency_us, **_from("link_gbps"))

    cables = _global_cables(groups, ports)
    port_of = {(g, partner, i): p for g, lst in cables.items() for p, (partner, i) in enumerate(lst)}
    bundle: dict[tuple[str, str], int] = {}
    for (g, partner, i), p in port_of.items():
        if g < partner:
            q = port_of[partner, g, i]
            key = (routers[g][p % routers_per_group], routers[partner][q % routers_per_group])
            bundle[key] = bundle.get(key, 0) + 1
    for (u, v), m in bundle.items():
        graph.add_edges_from([(u, v)], link_gbps=m * global_gbps, latency_us=global_latency_us, **global_from)
    graph.graph["global_cables"] = sum(bundle.values())
    return graph
