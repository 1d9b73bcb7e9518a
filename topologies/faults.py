"""Link faults: cables degraded to a fraction of their bandwidth, or failed, applied to a topology graph.

A fault is ``SRC-DST=FACTOR``: every cable whose ends match the two ``fnmatch`` patterns (either way
round) keeps ``FACTOR`` of its bandwidth (0 < FACTOR <= 1), or fails (``FACTOR`` 0 or ``fail``) and
is removed. ``SRC>DST=FACTOR`` touches one direction only (the graph becomes directed).
``,fraction=F,seed=S`` picks a random fraction F of the matching cables instead (``round(F x count)``
of them, drawn with seed S): ``leaf*-spine*=fail,fraction=0.05,seed=3`` fails 5% of the uplinks. Routing is
computed on what remains, so traffic takes the other shortest paths (ECMP spreads over the survivors)
or, where none is left at the old length, longer ones; a fault that leaves a host unable to reach
another is one error naming it. ``load_cables`` loads a topology with its faults as ``Fabric`` takes it
(networkx only where a fault applies).

>>> from topologies import load_topology
>>> g = apply_faults(load_topology("leafspine:leaves=2,spines=2,hosts_per_leaf=2"), ["leaf0-spine1=0"])
>>> g.has_edge("leaf0", "spine1"), g.graph["faults"]
(False, ['leaf0-spine1=0'])
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from simulator.errors import SpecError
from topologies.builders import MIN_GBPS
from topologies.cables import Cables
from topologies.spec import as_graph, load_plain, validate_graph

if TYPE_CHECKING:
    import networkx as nx

_FAULT = re.compile(r"^(?P<src>[^=<>]+?)(?P<arrow>-|>)(?P<dst>[^=<>]+?)=(?P<factor>[^=]+)$")
_SHOWN = 3


@dataclass(frozen=True)
class LinkFault:
    """Cables from nodes matching ``src`` to nodes matching ``dst`` (both ways unless ``one_way``) keep
    ``factor`` of their bandwidth; 0 means failed."""

    src: str
    dst: str
    factor: float
    one_way: bool = False
    text: str = ""
    fraction: float = 1.0
    seed: int = 0

    @property
    def failed(self) -> bool:
        return self.factor == 0.0


def parse_fault(text: str) -> LinkFault:
    """``"leaf0-spine1=0.5"`` -> LinkFault("leaf0", "spine1", 0.5); ``=0`` or ``=fail`` fails the link.

    Node names containing ``-`` are matched by trying every split (see ``apply_faults``).

    >>> f = parse_fault("leaf*>spine0=fail,fraction=0.1,seed=2")
    >>> f.src, f.dst, f.factor, f.one_way, f.fraction, f.seed
    ('leaf*', 'spine0', 0.0, True, 0.1, 2)
    """
    text = str(text).strip()
    head, *options = text.split(",")
    match = _FAULT.match(head)
    if not match:
        raise SpecError("fault", text, "expected SRC-DST=FACTOR or SRC>DST=FACTOR (node names or fnmatch "
                                       "patterns; FACTOR in (0, 1], or 0/fail for a failed link), optionally "
                                       "followed by ,fraction=F,seed=S")
    extra = dict(option.partition("=")[::2] for option in options)
    if set(extra) - {"fraction", "seed"}:
        raise SpecError("fault", text, "after the factor, allowed: ,fraction=F (0 to 1),seed=S (an integer >= 0)")
    try:
        fraction, seed = float(extra.get("fraction", 1.0)), int(extra.get("seed", 0))
    except ValueError:
        fraction, seed = float("nan"), -1
    if not (0.0 <= fraction <= 1.0 and seed >= 0):
        raise SpecError("fault", text, "fraction must be from 0 to 1 and seed an integer >= 0")
    raw = match["factor"].strip().lower()
    try:
        factor = 0.0 if raw == "fail" else float(raw)
    except ValueError:
        factor = float("nan")
    if not 0.0 <= factor <= 1.0:
        raise SpecError("fault", text, "the factor must be in (0, 1] (bandwidth kept), or 0 or fail (failed)")
    return LinkFault(match["src"].strip(), match["dst"].strip(), factor, match["arrow"] == ">", text, fraction, seed)


def _matches(graph: nx.Graph, fault: LinkFault) -> list[tuple[str, str]]:
    """Directed (u, v) edges of ``graph`` a fault touches; node names with '-' are tried at every split."""
    splits = [(fault.src, fault.dst)]
    if not fault.one_way:
        joined = f"{fault.src}-{fault.dst}"
        splits = [(joined[:i], joined[i + 1 :]) for i, c in enumerate(joined) if c == "-"]
    hits: list[tuple[str, str]] = []
    for src, dst in splits:
        for u, v in graph.edges():
            if fnmatch.fnmatchcase(u, src) and fnmatch.fnmatchcase(v, dst):
                hits.append((u, v))
            elif not fault.one_way and fnmatch.fnmatchcase(v, src) and fnmatch.fnmatchcase(u, dst):
                hits.append((v, u) if graph.is_directed() else (u, v))
        if graph.is_directed() and not fault.one_way:
            hits += [(v, u) for u, v in hits if graph.has_edge(v, u)]
        if hits:
            break
    return list(dict.fromkeys(hits))


def _sample(edges: list[tuple[str, str]], fault: LinkFault) -> list[tuple[str, str]]:
    """``fault.fraction`` of the cables of ``edges`` (both directions of a cable unless one way), at random."""
    if fault.fraction == 1.0:
        return edges
    cable = [(u, v) if fault.one_way else tuple(sorted((u, v))) for u, v in edges]
    cables = sorted(set(cable))
    chosen = np.random.default_rng(fault.seed).choice(len(cables), round(fault.fraction * len(cables)),
                                                      replace=False)
    picked = {cables[i] for i in chosen}
    return [edge for edge, c in zip(edges, cable, strict=True) if c in picked]


def apply_faults(graph: nx.Graph, faults: Iterable[str | LinkFault]) -> nx.Graph:
    """A copy of ``graph`` with the faults applied, validated (every host still reaches every other).

    Faults apply in order; a cable degraded twice keeps the product of the factors. The copy records the
    fault texts in ``graph.graph["faults"]`` (its ``spec`` stays the healthy topology's).
    """
    parsed = [f if isinstance(f, LinkFault) else parse_fault(f) for f in faults]
    if not parsed:
        return graph
    out = graph.copy()
    if any(f.one_way for f in parsed) and not out.is_directed():
        out = out.to_directed()  # each cable becomes two directed links with the same attributes
    for fault in parsed:
        edges = _matches(out, fault)
        if not edges:
            sample = ", ".join(f"{u}-{v}" for u, v in list(out.edges())[:_SHOWN])
            raise SpecError("fault", fault.text, f"matches no link; links look like {sample} "
                                                 "(dessim list links --topology T lists them)")
        for u, v in _sample(edges, fault):
            if not out.has_edge(u, v):
                continue
            if fault.failed:
                out.remove_edge(u, v)
            else:
                gbps = float(out.edges[u, v]["link_gbps"]) * fault.factor
                if gbps < MIN_GBPS:
                    raise SpecError("fault", fault.text, f"leaves {u}-{v} at {gbps:g} Gb/s; allowed: at least "
                                                         f"{MIN_GBPS:g} Gb/s (or 0/fail for a failed link)")
                out.edges[u, v]["link_gbps"] = gbps
    out.graph["faults"] = [*graph.graph.get("faults", []), *(f.text for f in parsed)]
    try:
        validate_graph(out)
    except SpecError as error:
        raise SpecError("fault", "; ".join(f.text for f in parsed),
                        f"leaves no path between some hosts ({error.allowed})") from None
    return out


def load_cables(text: str | Path, faults: Iterable[str | LinkFault] = ()) -> Cables | nx.Graph:
    """The topology ``text`` (any string ``load_topology`` reads) with link ``faults``, as ``Fabric`` takes it:
    plain ``Cables`` where a builder makes it and no fault applies (no networkx), else a graph.

    >>> type(load_cables("torus-4x4x4")).__name__, type(load_cables("star", ["h0-sw0=0.5"])).__name__
    ('Cables', 'Graph')
    """
    faults = list(faults)
    topology = load_plain(text)
    return apply_faults(as_graph(topology), faults) if faults else topology
