"""Network models as SimGrid names them: how flows share links and what TCP adds on top of the fluid core.

- ``maxmin``: every flow on a link gets an equal share (progressive filling); ideal capacity, the default.
- ``cm02``: SimGrid's CM02 (Casanova and Marchal, 2002). Max-min with each flow's share weighted by
  1 / route latency, so short-RTT flows win, as under TCP; each flow capped at the TCP window,
  ``gamma / (2 x route latency)`` with gamma = 4 MiB; and 5% of its rate loaded on its reverse route (the
  ACK stream). These last two are SimGrid's defaults for every CM02-family model (``network/TCP-gamma``,
  ``network/crosstraffic``).
- ``lv08``: SimGrid's default, CM02 with the corrections fitted by Velho and Legrand (2009) on packet-level
  simulations: latency x13.01 (slow start), achieved rate x0.97 of the share (headers), and a sharing
  penalty of route latency + sum over route links of 20537 B / link bandwidth.

Units: bytes, seconds, bytes/s. The penalty is in seconds; a flow's weight is 1 / penalty. Link bytes count
payload only; the ACK stream takes capacity but is not payload.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

import numpy as np

from simulator.errors import check_choice
from simulator.network.fabric import Fabric, KeyCache, pad_columns
from simulator.options import NetworkModelName

TCP_GAMMA_BYTES = 4 * 1024 * 1024  # SimGrid's network/TCP-gamma: the largest TCP window
MIN_PENALTY_S = 1e-12  # a zero-latency route still gets a finite weight


@dataclass(frozen=True)
class NetworkModel:
    """How flows share the fabric. ``weight_S_bytes`` adds ``S / bandwidth`` per route link to the penalty;
    ``rtt_weighted`` shares by 1 / penalty (else equally); ``tcp_gamma_bytes`` caps a flow at
    gamma / (2 x route latency) (0: no cap); ``ack_fraction`` of a flow's rate loads its reverse route."""

    name: str
    latency_factor: float = 1.0
    rate_factor: float = 1.0
    weight_S_bytes: float = 0.0
    rtt_weighted: bool = False
    tcp_gamma_bytes: float = 0.0
    ack_fraction: float = 0.0

    @property
    def is_maxmin(self) -> bool:
        return self == MODELS["maxmin"]


MODELS = {model.name: model for model in (
    NetworkModel("maxmin"),
    NetworkModel("cm02", rtt_weighted=True, tcp_gamma_bytes=TCP_GAMMA_BYTES, ack_fraction=0.05),
    NetworkModel("lv08", latency_factor=13.01, rate_factor=0.97, weight_S_bytes=20537.0, rtt_weighted=True,
                 tcp_gamma_bytes=TCP_GAMMA_BYTES, ack_fraction=0.05),
)}
assert tuple(MODELS) == typing.get_args(NetworkModelName)  # the names run specs accept


def network_model(name: str, field: str = "network_model") -> NetworkModel:
    """The preset called ``name``; a ``SpecError`` naming ``field`` otherwise."""
    check_choice(field, name, MODELS)
    return MODELS[name]


class ModelRoutes:
    """A fabric's routes as a network model sees them; the fluid core reads it in place of the fabric.

    Each route here is a fabric route plus, with ACKs, the reverse route: ``route_links`` lists both,
    ``route_coef`` the bytes each link carries per byte of the flow (1, or ``ack_fraction`` on the reverse
    route; 0 in padding). Per route: ``route_latency_s`` (x latency factor, paid before the flow moves),
    ``route_weight`` (share weight), ``route_bound_Bps`` (TCP window cap), ``route_fwd`` (the fabric route,
    for payload bytes) and ``route_bottleneck_Bps``, the rate of a flow alone on its links.
    """

    def __init__(self, fabric: Fabric, model: NetworkModel) -> None:
        self.fabric = fabric
        self.model = model
        self.capacity_Bps = fabric.capacity_Bps
        self.n_links = fabric.n_links
        self.n_routes = 0
        self._cache = KeyCache()
        self.route_links = np.zeros((0, 1), dtype=fabric.route_links.dtype)
        self.route_coef = np.zeros((0, 1))
        for name in ("route_latency_s", "route_weight", "route_bound_Bps", "route_bottleneck_Bps"):
            setattr(self, name, np.zeros(0))
        self.route_fwd = np.zeros(0, dtype=np.int64)

    def min_route_latency_s(self) -> float:
        return self.fabric.min_route_latency_s() * self.model.latency_factor

    def route_ids(self, src_rank: np.ndarray, dst_rank: np.ndarray) -> np.ndarray:
        """Model route id of each (src, dst) pair; computes and caches what it has not seen."""
        fwd = self.fabric.route_ids(src_rank, dst_rank)
        back = self.fabric.route_ids(dst_rank, src_rank) if self.model.ack_fraction > 0 else np.zeros_like(fwd)
        return self._cache.ids(fwd << 32 | back, self._build)

    def _build(self, keys: np.ndarray) -> np.ndarray:
        fabric, model = self.fabric, self.model
        fwd, back = keys >> 32, keys & 0xFFFFFFFF
        links = fabric.route_links[fwd]
        coef = (links >= 0).astype(np.float64)
        if model.ack_fraction > 0:
            back_links = fabric.route_links[back]
            links = np.concatenate([links, back_links], axis=1)
            coef = np.concatenate([coef, model.ack_fraction * (back_links >= 0)], axis=1)
        latency_s = fabric.route_latency_s[fwd]
        fwd_links = fabric.route_links[fwd]
        inverse_Bps = np.where(fwd_links >= 0, 1.0 / fabric.capacity_Bps[np.maximum(fwd_links, 0)], 0.0).sum(axis=1)
        penalty_s = np.maximum(latency_s + model.weight_S_bytes * inverse_Bps, MIN_PENALTY_S)
        weight = 1.0 / penalty_s if model.rtt_weighted else np.ones(len(keys))
        bound_Bps = np.full(len(keys), np.inf)
        if model.tcp_gamma_bytes > 0:
            capped = latency_s > 0
            bound_Bps[capped] = model.tcp_gamma_bytes / (2 * latency_s[capped])
        with np.errstate(divide="ignore"):
            per_link_Bps = np.where(coef > 0, self.capacity_Bps[np.maximum(links, 0)] / np.where(coef > 0, coef, 1),
                                    np.inf)
        alone_Bps = np.minimum(per_link_Bps.min(axis=1), bound_Bps)
        width = max(self.route_links.shape[1], links.shape[1])
        self.route_links = np.concatenate([pad_columns(self.route_links, width), pad_columns(links, width)])
        self.route_coef = np.concatenate([pad_columns(self.route_coef, width, 0.0), pad_columns(coef, width, 0.0)])
        for name, value in (("route_latency_s", latency_s * model.latency_factor), ("route_weight", weight),
                            ("route_bound_Bps", bound_Bps), ("route_bottleneck_Bps", alone_Bps), ("route_fwd", fwd)):
            setattr(self, name, np.concatenate([getattr(self, name), value]))
        first = self.n_routes
        self.n_routes += len(keys)
        return np.arange(first, self.n_routes, dtype=np.int64)

