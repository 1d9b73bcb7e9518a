"""What several test modules share: small graphs built by hand (independent of the topology builders under
test elsewhere), running the command line, and the simulator's bytes of an executor run. Test modules
import these from here (``from conftest import ...``), never from each other."""

import networkx as nx
import numpy as np
import pytest

from simulator.cli import main
from simulator.compute.roofline import load_device
from simulator.network.fabric import Fabric
from simulator.network.flow import FlowNetwork
from simulator.network.schedule import Schedule
from simulator.run.training import make_cluster, simulate_step


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


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``dessim ARGS``: exit code, stdout, stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def sent(report, category: str, rank: int = 0) -> float:
    """Bytes ``rank`` sends in ``category`` over a StepReport's trace."""
    trace = report.trace
    return float(trace[(trace.category == category) & (trace["rank"] == rank)].bytes_sent.sum())


def simulated_bytes(workload: object, world: int, strategy: str, steps: int) -> dict[tuple[str, int], float]:
    """What the simulator says each (category, rank) sends in ``steps`` steps of an executor run (star of
    ``world`` hosts, ring collectives as the communicator counts them)."""
    fabric = Fabric(star_graph(world))
    cluster = make_cluster(fabric, strategy, load_device("h100"), load_device("cpu-server"))
    cluster.collective_algorithm = "ring"  # the communicator counts ring (bus) bytes
    trace = simulate_step(workload, cluster, strategy, "analytical", steps=steps).trace
    comm = trace[trace.kind != "compute"]
    return {key: float(v) for key, v in comm.groupby(["category", "rank"], observed=True).bytes_sent.sum().items()}


def assert_bytes_as_predicted(ranks: list[dict], predicted: dict[tuple[str, int], float]) -> None:
    """Every rank's counted bytes per category equal the simulator's, and nothing else was sent."""
    measured = {(category, rank): c["bytes_sent"] for rank, out in enumerate(ranks)
                for category, c in out["counters"].items() if category not in ("metrics", "metadata")}
    assert measured.keys() == predicted.keys()
    for key, value in predicted.items():
        assert measured[key] == pytest.approx(value, rel=1e-12), key
