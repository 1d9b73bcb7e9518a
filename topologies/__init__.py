"""Topology builders (networkx graphs), YAML presets and loading; see ``builders`` for the conventions."""

from topologies.builders import BUILDERS, PARAMS, dgx, dragonfly, fattree, leafspine, ring, star, torus
from topologies.spec import build, list_presets, load_file, load_topology, parse_inline, validate_graph

__all__ = ["BUILDERS", "PARAMS", "build", "dgx", "dragonfly", "fattree", "leafspine", "list_presets", "load_file",
           "load_topology", "parse_inline", "ring", "star", "torus", "validate_graph"]
