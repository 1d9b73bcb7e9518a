"""Small graphs built by hand, independent of the topology builders under test elsewhere."""

import networkx as nx
import numpy as np
import pytest

from simulator.fabric import Fabric
from simulator.network.flow import FlowNetwork
from simulator.schedule import Schedule


def star_graph(n: int, link_gbps: float = 100.0, latency_us: float = 1.0) -> nx.Graph:
    graph = nx.Graph(hosts=[f"h{i}" for i in range(n)], spec=f"star:hosts={n}")
    graph.add_node("sw", kind="switch")
    for i in range(n):
        graph.add_node(f"h{i}", kind="host")
        graph.add_edge(f"h{i}", "sw", link_gbps=link_gbps, latency_us=latency_us)
    return graph


def fattree_graph(k: int, link_gbps: float = 400.0, latency_us: float = 1.0) -> nx.Graph:
    half = k // 2
    graph = nx.Graph()
    hosts: list[str] = []
    for p in range(k):
        for a in range(half):
            for j in range(half):
                graph.add_edge(f"p{p}a{a}", f"c{a * half + j}", link_gbps=link_gbps, latency_us=latency_us)
        for e in range(half):
            for a in range(half):
                graph.add_edge(f"p{p}e{e}", f"p{p}a{a}", link_gbps=link_gbps, latency_us=latency_us)
            for _ in range(half):
                hosts.append(f"h{len(hosts)}")
                graph.add_edge(hosts[-1], f"p{p}e{e}", link_gbps=link_gbps, latency_us=latency_us)
    nx.set_node_attributes(graph, "switch", "kind")
    nx.set_node_attributes(graph, {h: "host" for h in hosts}, "kind")
    graph.graph["hosts"] = hosts
    return graph


def run_flow(fabric: Fabric, schedule: Schedule, ready_s: np.ndarray | None = None, **kwargs: object):
    """Run one schedule alone on a fresh flow network (rank r joining at ``ready_s[r]``, default 0); returns
    (result, network)."""
    network = FlowNetwork(fabric, check_capacity=True, **kwargs)
    done = network.start(schedule, ready_s=ready_s)
    network.env.run(until=done)
    return done.value, network


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)
