"""Result tables (pandas): the per-link table of ARCHITECTURE.md."""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.fabric import Fabric


def link_table(fabric: Fabric, link_bytes: np.ndarray, busy_s: np.ndarray, peak_util: np.ndarray,
               horizon_s: float) -> pd.DataFrame:
    """One row per directed link: bytes carried, busy time, peak and mean utilization over ``horizon_s``."""
    names = fabric.node_names
    capacity_Bps = fabric.capacity_Bps
    mean_util = link_bytes / (capacity_Bps * horizon_s) if horizon_s > 0 else np.zeros(fabric.n_links)
    return pd.DataFrame({
        "src": [names[i] for i in fabric.link_src],
        "dst": [names[i] for i in fabric.link_dst],
        "capacity_gbps": capacity_Bps * 8 / 1e9,
        "latency_us": fabric.latency_s * 1e6,
        "bytes": link_bytes,
        "busy_s": busy_s,
        "peak_util": peak_util,
        "mean_util": mean_util,
    })
