"""The interface every network backend implements (``Network``), and what it reports for one schedule run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import simpy

if TYPE_CHECKING:
    from simulator.network.fabric import Fabric
    from simulator.network.models import NetworkModel

RankCallback = Callable[[np.ndarray, np.ndarray], None]
"""``on_rank_done(ranks, end_s)``: those schedule ranks finished their part (times may lie ahead of now)."""


@dataclass
class RunResult:
    """Timing and per-rank bytes of one schedule run (times in seconds of simulated time)."""

    start_s: float
    end_s: float
    rank_end_s: np.ndarray
    sent_bytes: np.ndarray
    received_bytes: np.ndarray

    @property
    def time_s(self) -> float:
        return self.end_s - self.start_s


class Network(Protocol):
    """A network backend: runs schedules on a fabric inside a simpy environment and reports per-link figures."""

    fidelity: str
    fabric: Fabric
    model: NetworkModel
    env: simpy.Environment

    def start(self, schedule: object, hosts: np.ndarray | None = None, ready_s: np.ndarray | None = None,
              on_rank_done: RankCallback | None = None) -> simpy.Event:
        """Start a schedule; the event's value is its RunResult (see ``FlowNetwork.start``)."""

    def release(self, run_event: simpy.Event, ranks: np.ndarray, ready_s: np.ndarray) -> None:
        """Ranks of a started run join at ``ready_s``."""

    def link_bytes(self) -> np.ndarray:
        """Bytes each directed link carried so far."""

    def link_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per link: busy time (s) and peak utilization (NaN where the backend does not measure it)."""

    def link_segments(self) -> dict[str, np.ndarray] | None:
        """What each link carried over time, as constant-rate segments; None when not recorded."""
