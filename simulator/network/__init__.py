"""Network backends behind one interface: ``start(schedule, hosts) -> simpy.Event`` (value: RunResult).

- ``flow``: flow-level simulation driven by simpy events (``FlowNetwork``).
- ``analytical``: closed-form step times (``AnalyticalNetwork``), for fast sweeps.

Both share links by a network model (``models``: maxmin, cm02, lv08).
"""

from __future__ import annotations

import simpy

from simulator.errors import SpecError
from simulator.network.analytical import AnalyticalNetwork
from simulator.network.fabric import Fabric
from simulator.network.flow import FlowNetwork
from simulator.network.fluid import DEFAULT_RATE_TOLERANCE, MAX_RATE_TOLERANCE
from simulator.network.models import MODELS, network_model
from simulator.network.result import Network
from simulator.options import DEFAULT_NETWORK_MODEL

FIDELITIES = ("flow", "analytical")
NETWORK_MODELS = tuple(MODELS)


def make_network(fabric: Fabric, fidelity: str = "flow", env: simpy.Environment | None = None,
                 rate_tolerance: float = DEFAULT_RATE_TOLERANCE, record_rates: bool = False,
                 model: str = DEFAULT_NETWORK_MODEL) -> Network:
    """The backend named by ``fidelity`` on ``fabric`` (a fresh simpy environment unless one is given),
    sharing links by the network ``model`` (a ``MODELS`` name).

    ``rate_tolerance`` (flow only): completions within this fraction of a flow's age share one rate
    recomputation; 0 recomputes at every completion (exact event order, slower at 100k+ flows).
    ``record_rates`` (flow only): keep every link's rate over time, for its utilization timeline.
    """
    if not 0.0 <= rate_tolerance <= MAX_RATE_TOLERANCE:
        raise SpecError("rate_tolerance", rate_tolerance, f"allowed: 0 (exact) to {MAX_RATE_TOLERANCE}")
    sharing = network_model(model)
    if fidelity == "flow":
        return FlowNetwork(fabric, env, rate_tolerance=rate_tolerance, record_rates=record_rates, model=sharing)
    if fidelity == "analytical":
        return AnalyticalNetwork(fabric, env, sharing)
    raise SpecError("fidelity", fidelity, f"allowed: {', '.join(FIDELITIES)}")
