"""Topology builders (plain cables, or networkx graphs), YAML presets and loading; see ``builders`` for the
conventions."""

from topologies.builders import BUILDERS, PARAMS, describe, dgx, dragonfly, fattree, leafspine, ring, star, torus
from topologies.cables import Cables
from topologies.faults import load_cables
from topologies.spec import (
    CUSTOM_FORMAT,
    build,
    list_presets,
    load_file,
    load_topology,
    parse_inline,
    preset_descriptions,
    validate_graph,
)

__all__ = ["BUILDERS", "CUSTOM_FORMAT", "PARAMS", "Cables", "build", "describe", "dgx", "dragonfly", "fattree",
           "leafspine", "list_presets", "load_cables", "load_file", "load_topology", "parse_inline",
           "preset_descriptions", "ring", "star", "torus", "validate_graph"]
