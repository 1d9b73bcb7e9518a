"""Turn a topology string into a validated graph: inline builder, preset name, or a YAML/JSON/GraphML file.

Inline strings are ``name:key=value,key=value`` (``fattree:k=16,link_gbps=400,latency_us=1``); a bare
builder name uses its defaults. Every problem raises one :class:`~simulator.errors.SpecError` line naming
the field, the bad value and what is allowed.

Custom YAML graphs::

    nodes: [{name: a, kind: host}, {name: b, kind: host}, {name: s, kind: switch}]
    links: [{src: a, dst: s, link_gbps: 100, latency_us: 1}, {src: s, dst: b, link_gbps: 100}]
    hosts: [b, a]          # optional rank order; default: host nodes in the order listed

A link is a full-duplex cable unless ``directed: true`` (then the graph is an ``nx.DiGraph`` and undirected
links become two directed ones); ``latency_us`` defaults to 0 in custom files.

Builder strings, presets and preset-format files are built as plain ``Cables``; ``load_plain`` returns them as
they are (``Fabric`` takes them), so networkx loads only for custom graphs, faults and callers that want a graph.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import re
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.errors import SpecError, check_keys, read_text
from topologies.builders import (
    BUILDERS,
    CABLES,
    LINK_PARAMS,
    MAX_GBPS,
    MAX_US,
    MIN_GBPS,
    format_spec,
    validate_params,
)
from topologies.cables import Cables

if TYPE_CHECKING:
    import networkx as nx

PRESET_DIR = Path(__file__).parent / "presets"
FILE_SUFFIXES = (".yaml", ".yml", ".json", ".graphml")
_INT = re.compile(r"[+-]?\d+")
_PRESET_KEYS = ("builder", "params", "description")
_CUSTOM_KEYS = ("nodes", "links", "hosts", "description")
_SHOWN = 5


#: The custom-graph file format, as ``dessim list topologies`` and docs/KEYS.md state it.
CUSTOM_FORMAT = ("a YAML file of nodes [{name, kind: host|switch}] (hosts compute and never forward; switches "
                 "forward), links [{src, dst, link_gbps: 1e9 bits/s each way, required; latency_us: µs, default "
                 "0; directed: default false, a full-duplex cable}] and optional hosts [names in rank order; "
                 "default: the host nodes as listed]; or a networkx node-link .json or a .graphml file with the "
                 "same attributes")


def list_presets() -> list[str]:
    """Names of the YAML presets shipped in ``topologies/presets``."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_descriptions() -> dict[str, str]:
    """Each preset's name and description (read from its file, nothing built)."""
    import yaml

    return {name: str(yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text()).get("description", ""))
            for name in list_presets()}


def build(name: str, **params: Any) -> nx.Graph:
    """Build topology ``name`` from keyword parameters (validated; SpecError on unknown names or values)."""
    return as_graph(build_cables(name, **params))


def build_cables(name: str, **params: Any) -> Cables:
    """``build`` as plain ``Cables`` (no networkx)."""
    if name not in BUILDERS:
        raise SpecError("topology", name, f"unknown builder; known builders: {', '.join(BUILDERS)}")
    return CABLES[name](**params)


def parse_value(text: str) -> bool | int | float | str:
    """``"true"`` -> True, ``"8"`` -> 8, ``"0.5"`` -> 0.5, anything else stays a string (``"4x4"``)."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if _INT.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def parse_inline(text: str) -> tuple[str, dict[str, Any]]:
    """Split ``"star:hosts=8,link_gbps=100"`` into ``("star", {"hosts": 8, "link_gbps": 100})``.

    >>> parse_inline("dgx:nodes=4,rails=true,nvlink_gbps=3600.5")
    ('dgx', {'nodes': 4, 'rails': True, 'nvlink_gbps': 3600.5})
    """
    name, _, rest = text.partition(":")
    name = name.strip()
    if name not in BUILDERS:
        raise SpecError("topology", name, f"unknown builder; known builders: {', '.join(BUILDERS)}")
    params: dict[str, Any] = {}
    for item in rest.split(",") if rest.strip() else []:
        key, eq, value = (part.strip() for part in item.partition("="))
        if not (eq and key and value):
            raise SpecError("topology", text, f"malformed parameter {item.strip()!r}; expected "
                            "name:key=value,key=value such as star:hosts=8,link_gbps=100")
        if key in params:
            raise SpecError(f"topology.{key}", value, "given more than once")
        params[key] = parse_value(value)
    return name, params


@functools.lru_cache(maxsize=4096)
def link_shape(text: str) -> tuple[str, str, tuple[tuple[str, float], ...]]:
    """(canonical spec, shape, link values) of an inline builder topology: the shape is the spec with the
    value of every link rate and latency parameter it sets (``LINK_PARAMS``) replaced by ``*``, so that
    topologies of one shape have the same routes; the link values are those parameters' values.

    >>> spec, shape, values = link_shape("leafspine:leaves=2,host_gbps=50")
    >>> shape
    'leafspine:leaves=2,hosts_per_leaf=4,spines=2,host_gbps=*,uplink_gbps=*,latency_us=*'
    >>> dict(values)
    {'host_gbps': 50.0, 'uplink_gbps': 200.0, 'latency_us': 1.0}
    """
    name, params = parse_inline(text)
    checked = validate_params(name, params)
    values = tuple((key, float(checked[key])) for key in LINK_PARAMS[name] if checked[key] is not None)
    return format_spec(name, checked), format_spec(name, {**checked, **{key: "*" for key, _ in values}}), values


def load_topology(text: str | Path) -> nx.Graph:
    """A validated graph from an inline builder string, a bare builder name, a preset name or a file path.

    Files: ``.yaml``/``.yml`` (preset format ``builder`` + ``params``, or a custom graph), ``.json``
    (networkx node-link) and ``.graphml``.

    >>> load_topology("star:hosts=4,link_gbps=100").graph["hosts"]
    ['h0', 'h1', 'h2', 'h3']
    >>> load_topology("fattree-4096-400g").number_of_edges()
    12288
    """
    return as_graph(load_plain(text))


def as_graph(topology: Cables | nx.Graph) -> nx.Graph:
    """``topology`` as a networkx graph (``Cables`` converted, a graph as it is)."""
    return topology.to_networkx() if isinstance(topology, Cables) else topology


def load_plain(text: str | Path) -> Cables | nx.Graph:
    """``load_topology``'s topology, as plain ``Cables`` where a builder makes it (no networkx)."""
    text = str(text).strip()
    path = Path(text)
    if path.suffix.lower() in FILE_SUFFIXES or "/" in text or "\\" in text:
        return _read_file(path)
    if ":" in text or text in BUILDERS:
        name, params = parse_inline(text)
        return build_cables(name, **params)
    if text in list_presets():
        topology = _read_file(PRESET_DIR / f"{text}.yaml")
        topology.graph["preset"] = text
        return topology
    raise SpecError("topology", text, f"unknown topology; give a builder ({', '.join(BUILDERS)}), "
                    f"a preset ({', '.join(list_presets())}), name:key=value,... or a "
                    f"{'/'.join(FILE_SUFFIXES)} file")


def load_file(path: Path) -> nx.Graph:
    """Load a preset-format or custom-graph YAML, a node-link JSON or a GraphML file, and validate it."""
    return as_graph(_read_file(path))


def _read_file(path: Path) -> Cables | nx.Graph:
    """``load_file``'s topology, as builder ``Cables`` for a preset-format file."""
    import yaml

    source = str(path)
    content = read_text(path, "topology")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _finish(_from_node_link(content, source), source)
    if suffix == ".graphml":
        return _finish(_from_graphml(path, source), source)
    try:
        doc = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise SpecError("topology", source, f"invalid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(doc, dict):
        raise SpecError("topology", source, "YAML must be a mapping with builder + params, or nodes + links")
    if "builder" in doc:
        check_keys(doc, _PRESET_KEYS, f"{source}:")
        params = doc.get("params") or {}
        if not isinstance(params, dict):
            raise SpecError(f"{source}:params", params, "must be a mapping of builder parameters")
        topology = build_cables(str(doc["builder"]), **params)
        if "description" in doc:
            topology.graph["description"] = str(doc["description"])
        return topology
    check_keys(doc, _CUSTOM_KEYS, f"{source}:")
    return _finish(_from_mapping(doc, source), source)




def _entries(doc: dict[str, Any], key: str, source: str, required: tuple[str, ...],
             allowed: tuple[str, ...]) -> list[dict[str, Any]]:
    items = doc.get(key)
    if not isinstance(items, list):
        raise SpecError(f"{source}:{key}", items, "must be a list of mappings")
    for i, item in enumerate(items):
        where = f"{source}:{key}[{i}]"
        if not isinstance(item, dict):
            raise SpecError(where, item, f"must be a mapping with {', '.join(required)}")
        missing = [k for k in required if k not in item]
        if missing:
            raise SpecError(f"{where}.{missing[0]}", None, f"required; each entry needs {', '.join(required)}")
        check_keys(item, allowed, f"{where}.")
    return items


def _from_mapping(doc: dict[str, Any], source: str) -> nx.Graph:
    """Custom graph from a YAML mapping of ``nodes``, ``links`` and optional ``hosts``."""
    import networkx as nx

    nodes = _entries(doc, "nodes", source, ("name", "kind"), ("name", "kind"))
    links = _entries(doc, "links", source, ("src", "dst"), ("src", "dst", "link_gbps", "latency_us", "directed"))
    for i, link in enumerate(links):
        if not isinstance(link.get("directed", False), bool):
            raise SpecError(f"{source}:links[{i}].directed", link["directed"], "must be true or false")
    graph: nx.Graph = nx.DiGraph() if any(link.get("directed") for link in links) else nx.Graph()
    for i, node in enumerate(nodes):
        name = str(node["name"])
        if name in graph:
            raise SpecError(f"{source}:nodes[{i}].name", name, "duplicate node name")
        graph.add_node(name, kind=node["kind"])
    for i, link in enumerate(links):
        ends = [str(link["src"]), str(link["dst"])]
        for end, name in zip(("src", "dst"), ends, strict=True):
            if name not in graph:
                raise SpecError(f"{source}:links[{i}].{end}", name, "not a declared node")
        attrs = {"link_gbps": link.get("link_gbps"), "latency_us": link.get("latency_us", 0.0)}
        pairs = [ends] if link.get("directed") or not graph.is_directed() else [ends, ends[::-1]]
        for u, v in pairs:
            if graph.has_edge(u, v):
                raise SpecError(f"{source}:links[{i}]", f"{u}-{v}", "duplicate link")
            graph.add_edge(u, v, **attrs)
    if "hosts" in doc:
        if not isinstance(doc["hosts"], list):
            raise SpecError(f"{source}:hosts", doc["hosts"], "must be a list of host names in rank order")
        graph.graph["hosts"] = [str(h) for h in doc["hosts"]]
    return graph


def _from_node_link(content: str, source: str) -> nx.Graph:
    import networkx as nx

    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        raise SpecError("topology", source, f"invalid JSON: {exc}") from None
    if not isinstance(data, dict) or "nodes" not in data:
        raise SpecError("topology", source, "expected a networkx node-link document (nodes, edges or links)")
    if data.get("multigraph"):
        raise SpecError("topology", source, "multigraphs are not supported; merge parallel links into one")
    try:
        return nx.node_link_graph(data, directed=False, multigraph=False,
                                  edges="links" if "links" in data else "edges")
    except (KeyError, TypeError, nx.NetworkXError) as exc:
        raise SpecError("topology", source, f"not a networkx node-link document: {exc!r}") from None


def _from_graphml(path: Path, source: str) -> nx.Graph:
    from xml.etree.ElementTree import ParseError

    import networkx as nx

    try:
        graph = nx.read_graphml(path)
    except (ParseError, nx.NetworkXError) as exc:
        raise SpecError("topology", source, f"invalid GraphML: {exc}") from None
    if graph.is_multigraph():
        raise SpecError("topology", source, "multigraphs are not supported; merge parallel links into one")
    hosts = graph.graph.get("hosts")
    if isinstance(hosts, str):
        graph.graph["hosts"] = hosts.replace(",", " ").split()
    return graph


def _finish(graph: nx.Graph, source: str) -> nx.Graph:
    """Normalize a custom graph (string names, default latency 0 and rank order), validate, return it."""
    import networkx as nx

    if any(not isinstance(node, str) for node in graph):
        graph = nx.relabel_nodes(graph, str)
        if isinstance(graph.graph.get("hosts"), list):
            graph.graph["hosts"] = [str(h) for h in graph.graph["hosts"]]
    for _, _, attrs in graph.edges(data=True):
        attrs.setdefault("latency_us", 0.0)
    graph.graph.setdefault("hosts", [n for n, kind in graph.nodes(data="kind") if kind == "host"])
    graph.graph.setdefault("name", "custom")
    graph.graph["spec"] = source
    validate_graph(graph)
    for _, _, attrs in graph.edges(data=True):
        attrs["link_gbps"], attrs["latency_us"] = float(attrs["link_gbps"]), float(attrs["latency_us"])
    return graph


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def validate_graph(graph: nx.Graph) -> None:
    """Check the topology conventions; raise SpecError on the first violation.

    Every node has ``kind`` host or switch; every link has ``link_gbps`` in [1e-6, 1e7], ``latency_us`` >= 0, and joins
    two different nodes; ``graph.graph["hosts"]`` lists every host node exactly once; every host reaches
    every other host through switches only (hosts never forward).
    """
    if graph.is_multigraph():
        raise SpecError("topology", graph.graph.get("spec", "graph"), "multigraphs are not supported")
    for node, kind in graph.nodes(data="kind"):
        if kind not in ("host", "switch"):
            raise SpecError(f"node {node}.kind", kind, "must be 'host' or 'switch'")
    for u, v, attrs in graph.edges(data=True):
        if u == v:
            raise SpecError(f"link {u}-{v}", u, "a link must join two different nodes")
        gbps, latency = attrs.get("link_gbps"), attrs.get("latency_us")
        if not (_is_number(gbps) and MIN_GBPS <= gbps <= MAX_GBPS):
            raise SpecError(f"link {u}-{v}.link_gbps", gbps,
                            f"every link needs a bandwidth from {MIN_GBPS:g} to {MAX_GBPS:g} (1e9 bits/s)")
        if not (_is_number(latency) and 0 <= latency <= MAX_US):
            raise SpecError(f"link {u}-{v}.latency_us", latency,
                            f"must be a number from 0 to {MAX_US:g} (microseconds)")
    host_nodes = [n for n, kind in graph.nodes(data="kind") if kind == "host"]
    if not host_nodes:
        raise SpecError("topology.hosts", [], "no hosts: mark compute endpoints with kind: host")
    hosts = graph.graph.get("hosts")
    if not isinstance(hosts, list):
        raise SpecError("topology.hosts", hosts, "graph.graph['hosts'] must list the host nodes in rank order")
    listed = set()
    for h in hosts:
        if not isinstance(h, str) or graph.nodes.get(h, {}).get("kind") != "host":
            raise SpecError("topology.hosts", h, "every entry must be a node of kind host")
        if h in listed:
            raise SpecError("topology.hosts", h, "listed more than once")
        listed.add(h)
    unlisted = [n for n in host_nodes if n not in listed]
    if unlisted:
        raise SpecError("topology.hosts", unlisted[:_SHOWN], "every host node must be listed (rank order)")
    cut = _unreachable(graph, hosts)
    if cut:
        source, missing = cut
        shown = ", ".join(missing[:_SHOWN]) + (f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else "")
        raise SpecError("topology", graph.graph.get("spec", "graph"),
                        f"is disconnected: {source} cannot reach {shown} (hosts do not forward traffic)")


def _unreachable(graph: nx.Graph, hosts: list[str]) -> tuple[str, list[str]] | None:
    """The first host that cannot reach some other host through switches, with those hosts; else None."""
    if len(hosts) < 2:
        return None
    if graph.is_directed():
        return _unreachable_directed(graph, hosts)
    import networkx as nx

    switches = [n for n, kind in graph.nodes(data="kind") if kind == "switch"]
    component: dict[str, int] = {}
    for i, members in enumerate(nx.connected_components(graph.subgraph(switches))):
        component.update(dict.fromkeys(members, i))
    attached = {h: {component[n] for n in graph[h] if n in component} for h in hosts}
    hosts_on: dict[int, set[str]] = defaultdict(set)
    for h, comps in attached.items():
        for c in comps:
            hosts_on[c].add(h)
    if any(len(members) == len(hosts) for members in hosts_on.values()):
        return None
    for h in hosts:
        reach = set().union(*(hosts_on[c] for c in attached[h])) | set(graph[h])
        missing = [other for other in hosts if other != h and other not in reach]
        if missing:
            return h, missing
    return None


def _unreachable_directed(graph: nx.DiGraph, hosts: list[str]) -> tuple[str, list[str]] | None:
    """Directed check: a breadth-first search from every host, expanding only through switches."""
    for h in hosts:
        seen, frontier = {h}, [h]
        while frontier:
            node = frontier.pop()
            for succ in graph.successors(node):
                if succ not in seen:
                    seen.add(succ)
                    if graph.nodes[succ]["kind"] == "switch":
                        frontier.append(succ)
        missing = [other for other in hosts if other not in seen]
        if missing:
            return h, missing
    return None
