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
from simulator.network.fluid import DEFAULT_RATE_TOLERANCE, MAX_RATE_TOLERANCE

FIDELITIES = ("flow", "analytical")
Network = FlowNetwork | AnalyticalNetwork


def make_network(fabric: Fabric, fidelity: str = "flow", env: simpy.Environment | None = None,
                 rate_tolerance: float = DEFAULT_RATE_TOLERANCE, record_rates: bool = False) -> Network:
    """The backend named by ``fidelity`` on ``fabric`` (a fresh simpy environment unless one is given).

    ``rate_tolerance`` (flow only): completions within this fraction of a flow's age share one rate
    recomputation; 0 recomputes at every completion (exact event order, slower at 100k+ flows).
    ``record_rates`` (flow only): keep every link's rate over time, for its utilization timeline.
    """
    if not 0.0 <= rate_tolerance <= MAX_RATE_TOLERANCE:
        raise SpecError("rate_tolerance", rate_tolerance, f"allowed: 0 (exact) to {MAX_RATE_TOLERANCE}")
    if fidelity == "flow":
        return FlowNetwork(fabric, env, rate_tolerance=rate_tolerance, record_rates=record_rates)
    if fidelity == "analytical":
        return AnalyticalNetwork(fabric, env)
    raise SpecError("fidelity", fidelity, f"allowed: {', '.join(FIDELITIES)}")
