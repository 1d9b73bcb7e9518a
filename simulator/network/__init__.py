"""Network backends behind one interface: ``start(schedule, hosts) -> simpy.Event`` (value: RunResult).

- ``flow``: max-min fair flow-level simulation driven by simpy events (``FlowNetwork``).
- ``analytical``: closed-form step times (``AnalyticalNetwork``), for fast sweeps.
"""

from __future__ import annotations

import simpy

from simulator.errors import SpecError
from simulator.fabric import Fabric
from simulator.network.analytical import AnalyticalNetwork
from simulator.network.flow import FlowNetwork

FIDELITIES = ("flow", "analytical")
Network = FlowNetwork | AnalyticalNetwork


def make_network(fabric: Fabric, fidelity: str = "flow", env: simpy.Environment | None = None) -> Network:
    """The backend named by ``fidelity`` on ``fabric`` (a fresh simpy environment unless one is given)."""
    if fidelity == "flow":
        return FlowNetwork(fabric, env)
    if fidelity == "analytical":
        return AnalyticalNetwork(fabric, env)
    raise SpecError("fidelity", fidelity, f"allowed: {', '.join(FIDELITIES)}")
