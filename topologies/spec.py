"""Turn a topology string into a validated graph: preset name, YAML/JSON/GraphML file, or inline builder.

Inline strings look like ``fattree:k=16,link_gbps=400,latency_us=1``. Parameters are validated with
pydantic from the builder's signature: ``*_gbps`` > 0, ``*_us`` >= 0, counts >= 1, plus each builder's
own rules. Every problem is a ``SpecError`` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import inspect
import json
import typing
from pathlib import Path
from typing import Any

import networkx as nx
import pydantic
import yaml

from simulator.errors import SpecError
from topologies.builders import BUILDERS

PRESET_DIR = Path(__file__).parent / "presets"
ZERO_OK = {"spines"}


def list_presets() -> list[str]:
    """Names of the YAML presets shipped with dessim."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _model(name: str) -> type[pydantic.BaseModel]:
    fields: dict[str, Any] = {}
    hints = typing.get_type_hints(BUILDERS[name])
    for param in inspect.signature(BUILDERS[name]).parameters.values():
        annotation = hints[param.name]
        if param.name.endswith("_gbps"):
            constraint = {"gt": 0}
        elif param.name.endswith("_us"):
            constraint = {"ge": 0}
        elif annotation in (int, int | None):
            constraint = {"ge": 0 if param.name in ZERO_OK else 1}
        else:
            constraint = {}
        fields[param.name] = (annotation, pydantic.Field(param.default, **constraint))
    return pydantic.create_model(f"{name}_params", __config__=pydantic.ConfigDict(extra="forbid", strict=False),
                                 **fields)


def _check_rules(name: str, p: dict[str, Any]) -> None:
    """Builder-specific rules that a per-field constraint cannot express."""
    if name == "fattree":
        if p["k"] % 2 or p["k"] < 2:
            raise SpecError("topology.k", p["k"], "must be an even number >= 2")
        if p["pods"] is not None and not 1 <= p["pods"] <= p["k"]:
            raise SpecError("topology.pods", p["pods"], f"must be between 1 and k={p['k']}")
    if name == "leafspine" and p["spines"] == 0 and p["leaves"] > 1:
        raise SpecError("topology.spines", 0, "must be >= 1 when there is more than one leaf")
    if name == "dgx" and p["spines"] == 0:
        leaves = p["gpus_per_node"] if p["rails"] else -(-p["nodes"] // (p["nodes_per_leaf"] or p["nodes"]))
        if leaves > 1:
            raise SpecError("topology.spines", 0, "must be >= 1 when there is more than one leaf")
    if name == "torus":
        dims = p["dims"].split("x") if isinstance(p["dims"], str) else p["dims"]
        if not 2 <= len(dims) <= 3 or not all(str(d).isdigit() and int(d) >= 2 for d in dims):
            raise SpecError("topology.dims", p["dims"], "must be 2 or 3 sizes >= 2, like 4x4 or 4x4x4")
    if name == "dragonfly":
        bound = p["routers_per_group"] * p["global_links_per_router"] + 1
        if p["groups"] > bound:
            raise SpecError("topology.groups", p["groups"],
                            f"must be <= routers_per_group * global_links_per_router + 1 = {bound}")


def build(name: str, **params: Any) -> nx.Graph:
    """Validate ``params`` for builder ``name`` and build the graph."""
    if name not in BUILDERS:
        raise SpecError("topology", name, f"unknown builder; known: {', '.join(BUILDERS)}; presets: "
                        f"{', '.join(list_presets())}")
    try:
        values = _model(name)(**params).model_dump()
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        field = first["loc"][0] if first["loc"] else "?"
        if first["type"] == "extra_forbidden":
            allowed = ", ".join(inspect.signature(BUILDERS[name]).parameters)
            raise SpecError(f"topology.{field}", first["input"],
                            f"unknown parameter of {name}; allowed: {allowed}") from None
        raise SpecError(f"topology.{field}", first.get("input"), first["msg"].lower()) from None
    _check_rules(name, values)
    return BUILDERS[name](**values)


def parse_inline(text: str) -> tuple[str, dict[str, str]]:
    """``"star:hosts=8,link_gbps=100"`` -> ``("star", {"hosts": "8", "link_gbps": "100"})``."""
    name, _, rest = text.partition(":")
    params: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise SpecError("topology", text, f"malformed parameter {item!r}; expected key=value, e.g. "
                            "star:hosts=8,link_gbps=100,latency_us=1")
        params[key.strip()] = value.strip()
    return name.strip(), params


def load_topology(text: str) -> nx.Graph:
    """A validated graph from a preset name, a file path (.yaml/.yml/.json/.graphml) or an inline string."""
    text = str(text).strip()
    if not text:
        raise SpecError("topology", text, "give a preset name, a file, or an inline builder string")
    path = Path(text)
    if path.suffix.lower() in (".yaml", ".yml", ".json", ".graphml"):
        if not path.is_file():
            raise SpecError("topology", text, "file not found")
        return load_file(path)
    if text in list_presets():
        return load_file(PRESET_DIR / f"{text}.yaml")
    name, params = parse_inline(text)
    return build(name, **params)


def load_file(path: Path) -> nx.Graph:
    """Load a preset-format YAML (``builder`` + ``params``), a custom graph YAML (``nodes``, ``links``,
    optional ``hosts``), networkx node-link JSON, or GraphML."""
    try:
        if path.suffix.lower() == ".graphml":
            graph = nx.read_graphml(path)
        elif path.suffix.lower() == ".json":
            graph = nx.node_link_graph(json.loads(path.read_text()), edges="links")
        else:
            doc = yaml.safe_load(path.read_text())
            if not isinstance(doc, dict):
                raise SpecError("topology", str(path), "YAML must be a mapping with builder/params or nodes/links")
            if "builder" in doc:
                return build(str(doc["builder"]), **(doc.get("params") or {}))
            graph = _custom_graph(doc)
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError, nx.NetworkXError) as error:
        if isinstance(error, SpecError):
            raise
        raise SpecError("topology", str(path), f"cannot be read: {error}") from None
    graph.graph.setdefault("spec", str(path))
    validate_graph(graph)
    return graph


def _custom_graph(doc: dict[str, Any]) -> nx.Graph:
    directed = any(link.get("directed") for link in doc.get("links", []))
    graph: nx.Graph = nx.DiGraph() if directed else nx.Graph()
    for node in doc.get("nodes", []):
        graph.add_node(str(node["name"]), kind=node.get("kind", "switch"))
    for link in doc.get("links", []):
        attrs = {k: v for k, v in link.items() if k not in ("src", "dst", "directed")}
        graph.add_edge(str(link["src"]), str(link["dst"]), **attrs)
        if directed and not link.get("directed"):
            graph.add_edge(str(link["dst"]), str(link["src"]), **attrs)
    if "hosts" in doc:
        graph.graph["hosts"] = [str(h) for h in doc["hosts"]]
    return graph


def validate_graph(graph: nx.Graph) -> None:
    """Check a graph's conventions: hosts exist, every link has a bandwidth > 0 and latency >= 0, connected."""
    hosts = graph.graph.get("hosts") or [n for n, d in graph.nodes(data=True) if d.get("kind") == "host"]
    if not hosts:
        raise SpecError("topology.hosts", [], "no hosts: mark compute endpoints with kind: host")
    missing = [h for h in hosts if h not in graph]
    if missing:
        raise SpecError("topology.hosts", missing[:5], "hosts must be nodes of the graph")
    for h in hosts:
        graph.nodes[h]["kind"] = "host"
    graph.graph["hosts"] = list(hosts)
    for u, v, attrs in graph.edges(data=True):
        gbps, latency = attrs.get("link_gbps"), attrs.get("latency_us", 0.0)
        try:
            ok_bw, ok_lat = float(gbps) > 0, float(latency) >= 0
        except (TypeError, ValueError):
            ok_bw = ok_lat = False
        if not ok_bw:
            raise SpecError(f"link {u}-{v}.link_gbps", gbps, "every link needs a bandwidth > 0")
        if not ok_lat:
            raise SpecError(f"link {u}-{v}.latency_us", latency, "latency must be a number >= 0")
        attrs["link_gbps"], attrs["latency_us"] = float(gbps), float(latency)
    connected = nx.is_weakly_connected(graph) if graph.is_directed() else nx.is_connected(graph)
    if not connected:
        component = nx.node_connected_component(graph.to_undirected(as_view=True), hosts[0])
        cut_off = [h for h in hosts if h not in component]
        raise SpecError("topology", graph.graph.get("spec", "graph"),
                        f"is disconnected: {', '.join(cut_off[:5])} cannot reach {hosts[0]}")
