"""Topology builders (plain cables, or networkx graphs), YAML presets and loading; see ``builders`` for the
conventions."""

from topologies.builders import BUILDERS, PARAMS, dgx, dragonfly, fattree, leafspine, ring, star, torus
from topologies.cables import Cables
from topologies.faults import load_cables
from topologies.spec import build, list_presets, load_file, load_topology, parse_inline, validate_graph

__all__ = ["BUILDERS", "PARAMS", "Cables", "build", "dgx", "dragonfly", "fattree", "leafspine", "list_presets",
           "load_cables", "load_file", "load_topology", "parse_inline", "ring", "star", "torus", "validate_graph"]
