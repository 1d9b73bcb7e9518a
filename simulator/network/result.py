"""What a backend reports for one schedule run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

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
