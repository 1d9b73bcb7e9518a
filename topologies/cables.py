"""A topology as plain lists of nodes and cables: what the built-in builders make, and what ``Fabric`` compiles
without networkx (``to_networkx`` gives the same graph as a networkx ``Graph``).

It follows the builders' conventions (``topologies.builders``): node ``kind`` host or switch, cables full
duplex with ``link_gbps`` (1e9 bits/s), ``latency_us`` (µs) and other attributes (the parameters they come
from), graph attributes in ``graph``.

>>> net = Cables()
>>> net.add_nodes_from(["h0", "h1"], kind="host"); net.add_nodes_from(["sw"], kind="switch")
>>> net.add_edges_from([("sw", "h1"), ("h0", "sw")], link_gbps=100.0, latency_us=1.0)
>>> src, dst, gbps, latency_us, attrs = net.links()
>>> [f"{net.nodes[a]}>{net.nodes[b]}" for a, b in zip(src, dst, strict=True)], list(net.to_networkx().edges)
(['h0>sw', 'sw>h0', 'h1>sw', 'sw>h1'], [('h0', 'sw'), ('h1', 'sw')])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import networkx as nx


class Cables:
    """Nodes (names in order, each a ``kind``) and undirected cables in the order they were added; a cable
    added twice is one cable, at its first place, with the attributes given last (as networkx keeps it)."""

    def __init__(self) -> None:
        self.graph: dict[str, Any] = {}
        self.nodes: list[str] = []
        self.kinds: list[str] = []
        self._index: dict[str, int] = {}
        self._ends: list[tuple[int, int]] = []
        self._gbps: list[float] = []
        self._latency_us: list[float] = []
        self._attrs: list[dict[str, Any]] = []

    def add_nodes_from(self, names: Iterable[str], kind: str) -> None:
        """Append nodes ``names`` (new, distinct) of ``kind`` (``host`` or ``switch``)."""
        for name in names:
            self._index[name] = len(self.nodes)
            self.nodes.append(name)
            self.kinds.append(kind)

    def add_edges_from(self, pairs: Iterable[tuple[str, str]], link_gbps: float, latency_us: float,
                       **attrs: Any) -> None:
        """Append cables between existing nodes, each ``link_gbps`` (1e9 bits/s), ``latency_us`` (µs) and ``attrs``."""
        index = self._index
        ends = [(index[u], index[v]) for u, v in pairs]
        self._ends += ends
        self._gbps += [link_gbps] * len(ends)
        self._latency_us += [latency_us] * len(ends)
        self._attrs += [attrs] * len(ends)

    def is_directed(self) -> bool:
        """Cables are full duplex (the networkx method of the same name)."""
        return False

    def links(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Directed links (src node, dst node, link_gbps, latency_us, other attributes), both directions of each
        cable, in the order of ``to_networkx()`` (``Fabric``'s link ids): cables by their earlier node in node
        order, then as first added (that node's neighbour order), each from that node first."""
        ends = np.array(self._ends, dtype=np.int64).reshape(-1, 2)
        low, high = ends.min(axis=1), ends.max(axis=1)
        key = low * len(self.nodes) + high
        _, first = np.unique(key, return_index=True)
        _, from_end = np.unique(key[::-1], return_index=True)
        last = len(key) - 1 - from_end  # the attributes given last
        order = np.lexsort((first, low[first]))
        first, last = first[order], last[order]
        src = np.stack([low[first], high[first]], axis=1).ravel()
        dst = np.stack([high[first], low[first]], axis=1).ravel()
        gbps = np.repeat(np.array(self._gbps, dtype=np.float64)[last], 2)
        latency_us = np.repeat(np.array(self._latency_us, dtype=np.float64)[last], 2)
        return src, dst, gbps, latency_us, [self._attrs[i] for i in last.tolist() for _ in range(2)]

    def to_networkx(self) -> nx.Graph:
        """The same topology as a networkx ``Graph`` (node and cable order kept; graph attributes copied)."""
        import networkx as nx

        graph = nx.Graph()
        graph.add_nodes_from((name, {"kind": kind}) for name, kind in zip(self.nodes, self.kinds, strict=True))
        graph.add_edges_from((self.nodes[u], self.nodes[v], {"link_gbps": gbps, "latency_us": latency_us, **attrs})
                             for (u, v), gbps, latency_us, attrs in zip(self._ends, self._gbps, self._latency_us,
                                                                        self._attrs, strict=True))
        graph.graph.update(self.graph)
        return graph
