"""The analytical backend: closed-form step times, no event loop.

Each step of a schedule costs the slowest of its messages, and a message costs its route latency plus
the time for the busiest link on its route to drain that step's load:
``t_step = max_m (latency_m + max_{l in route m} load_l / capacity_l)``. Steps run back to back. On a
star this is exactly the closed forms of docs/NETWORK_MODEL.md (ring: 2L + S/(N B) per step; alltoall:
2L + (N-1) S/(N B); pushpull, incast likewise), and it equals the flow backend wherever flows do not
contend. Where they do, it assumes every flow on a link gets an equal share and ignores overlap between
steps. Step profiles are cached per pattern, so a sweep that reuses a schedule costs a few numpy operations
per step.

Under a TCP ``model`` (``models``) the same form takes its terms: latency x latency factor, drain times
over capacity x rate factor, ACK bytes on each message's reverse route, and a message never faster than
its TCP window cap; shares stay equal (the model's RTT weights need the flow backend).

A profile is kept per rate class and route latency class, so that it also prices the fabric at other link
rates and latencies (``fabric.LinkGrid``, one configuration per row) without routing again: a link's drain
time scales with its rate class's ratio, a route's latency with its hops per latency parameter.
"""

from __future__ import annotations

import hashlib
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import simpy

from simulator.network.fabric import Fabric, LinkGrid
from simulator.network.models import MODELS, NetworkModel
from simulator.network.result import RankCallback, RunResult
from simulator.network.schedule import Pattern, Schedule
from simulator.units import us_to_s


@dataclass
class StepProfile:
    """A step's messages reduced to (route latency, drain time) rows, plus its bytes per link.

    The step takes ``max(latency_s + drain_s)``. Every size in a collective's pattern is proportional to
    the collective's size S, so at S' the step takes ``max(latency_s + drain_s * S'/S)`` and moves
    ``link_bytes * S'/S``: one profile serves a whole size sweep. Each row is the longest drain of one rate
    class (``rate_class``, the fabric's ``link_rate_class``; -1: a TCP window cap, which depends on latency)
    among the links crossed by routes of one latency: ``hops`` (rows x the fabric's latency parameters) are
    those routes' shares of each parameter (x the model's latency factor), so that ``times_s`` prices the
    step at other link rates and latencies too.
    """

    latency_s: np.ndarray
    drain_s: np.ndarray
    link_bytes: np.ndarray
    rate_class: np.ndarray
    hops: np.ndarray

    def times_s(self, scale: np.ndarray | float, grid: LinkGrid | None = None) -> np.ndarray:
        """The step's time (s) with every message size x ``scale``, per configuration: its links as built, or
        with ``grid`` (as many rows as ``scale``, or ``scale`` a scalar) at each row's rates and latencies.
        Every network time of the analytical model and of the closed forms is priced here."""
        scale = np.asarray(scale, dtype=np.float64)[..., None]
        if grid is None:
            return (self.latency_s + scale * self.drain_s).max(axis=-1)
        if np.any(self.rate_class < 0):
            raise ValueError("a TCP window cap depends on the route latency: other link rates need maxmin")
        latency_s = self.latency_s + grid.latency_delta_s @ self.hops.T
        return (latency_s + scale * self.drain_s * grid.drain_ratio[:, self.rate_class]).max(axis=-1)

    def time_s(self, scale: float = 1.0) -> float:
        return float(self.times_s(scale))


def profile_times_s(profile: list[tuple[int, StepProfile]], scale: np.ndarray | float,
                    grid: LinkGrid | None = None) -> np.ndarray:
    """Time of a schedule from its step profiles, every message size x ``scale``, per configuration (as
    ``StepProfile.times_s``)."""
    return sum(repeat * step.times_s(scale, grid) for repeat, step in profile)


def profile_time_s(profile: list[tuple[int, StepProfile]], scale: float = 1.0) -> float:
    """Time of a schedule from its step profiles, with every message size multiplied by ``scale``."""
    return float(profile_times_s(profile, scale))


def _link_sums(links: np.ndarray, size_bytes: np.ndarray, n_links: int) -> np.ndarray:
    """Bytes each link carries when message i of ``size_bytes`` crosses the links of row i."""
    # shifted by one so that padding (-1) counts into a bin that is dropped
    bins = (links + 1).ravel()
    if len(size_bytes) and size_bytes.min() == size_bytes.max():  # one size (an all-to-all): count, then scale
        return np.bincount(bins, minlength=n_links + 1)[1:] * size_bytes[0]
    return np.bincount(bins, weights=np.repeat(size_bytes, links.shape[1]), minlength=n_links + 1)[1:]


def profile_link_bytes(profile: list[tuple[int, StepProfile]], n_links: int, scale: float = 1.0) -> np.ndarray:
    total = np.zeros(n_links)
    for repeat, step in profile:
        total += repeat * scale * step.link_bytes
    return total


STREAM_MESSAGES = 1 << 20
CACHED_MESSAGES = 1 << 16  # larger patterns are routed without the route cache: the profile is cached instead
PROFILE_CACHE_ENTRIES = 1024
# Step profiles at unit scale, per fabric, by pattern content: shared by every AnalyticalNetwork on it.
_PROFILES: weakref.WeakKeyDictionary[Fabric, OrderedDict[bytes, StepProfile]] = weakref.WeakKeyDictionary()
# Whole-schedule profiles per fabric by (schedule shape, hosts), at a reference size.
_SHAPES: weakref.WeakKeyDictionary[Fabric, dict[tuple, tuple[float, list[tuple[int, StepProfile]]]]] = (
    weakref.WeakKeyDictionary())


def schedule_profile(fabric: Fabric, schedule: Schedule, hosts: np.ndarray | None = None,
                     model: NetworkModel = MODELS["maxmin"]) -> list[tuple[int, StepProfile]]:
    """(repeat, profile) of each schedule entry, ranks on ``hosts`` (default: rank r on host r)."""
    hosts = np.arange(schedule.n_ranks) if hosts is None else np.asarray(hosts, dtype=np.int64)
    return [(step.repeat, step_profile(fabric, step.pattern, hosts, model)) for step in schedule.steps]


def step_profile(fabric: Fabric, pattern: Pattern, hosts: np.ndarray,
                 model: NetworkModel = MODELS["maxmin"]) -> StepProfile:
    """Distinct (latency, drain time) pairs of a pattern's messages and its bytes per link.

    Cached per fabric by content, at sizes relative to the largest message, so a sweep that rebuilds
    the same exchange at other sizes (another batch, another dim) reuses it.
    """
    if not len(pattern):
        return StepProfile(np.zeros(1), np.zeros(1), np.zeros(fabric.n_links), np.array([len(fabric.rate_params)]),
                           np.zeros((1, len(fabric.latency_params))))
    scale = float(pattern.size_bytes.max())
    one_size = scale == pattern.size_bytes.min()  # then every relative size is 1: nothing to divide or hash
    sizes = np.broadcast_to(1.0, len(pattern)) if one_size else pattern.size_bytes / scale
    key = hashlib.blake2b(model.name.encode(), digest_size=16)
    for part in (pattern.src, pattern.dst, b"one size" if one_size else sizes, hosts):
        key.update(np.ascontiguousarray(part).data if isinstance(part, np.ndarray) else part)
    key = key.digest()
    cache = _PROFILES.setdefault(fabric, OrderedDict())
    unit = cache.get(key)
    if unit is None:
        unit = _profile(fabric, Pattern(pattern.n_ranks, pattern.src, pattern.dst, sizes), hosts, model)
        cache[key] = unit
        if len(cache) > PROFILE_CACHE_ENTRIES:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return StepProfile(unit.latency_s, unit.drain_s * scale, unit.link_bytes * scale, unit.rate_class, unit.hops)


def _profile(fabric: Fabric, pattern: Pattern, hosts: np.ndarray, model: NetworkModel) -> StepProfile:
    """One pass over message chunks: bytes per link, and per link the latency classes of the routes crossing it.

    A message drains at its busiest link, so the step's max over messages of (latency + scale x drain) equals
    the max over links of (the longest latency through the link + scale x the link's drain). Under other
    link rates and latencies that still holds per latency class of routes, and a class's links drain in
    proportion per rate class: the profile is a row per (route latency class, rate class), never per
    message. Small patterns use the fabric's route cache; huge ones (an all-to-all on thousands of ranks) are
    routed chunk by chunk without caching, keeping only link rows (int16 or int32), so memory stays bounded.
    """
    cached = len(pattern) <= CACHED_MESSAGES
    payload = np.zeros(fabric.n_links)
    acks = np.zeros(fabric.n_links)
    routes = _RouteLatencies(fabric)
    width = fabric.n_links + 1  # cells: (route class, 1 + link), 0 for padding
    crossed = np.zeros((0, width), dtype=np.int64)  # messages per cell
    longest_s = np.zeros((0, width))  # per cell, the longest latency of links no parameter sets (if any)
    window = []  # (latency, drain) pairs of messages held back by their TCP window
    for start in range(0, len(pattern), STREAM_MESSAGES):
        part = slice(start, start + STREAM_MESSAGES)
        src, dst = hosts[pattern.src[part]], hosts[pattern.dst[part]]
        links = _links(fabric, src, dst, cached)
        size = pattern.size_bytes[part]
        route, fixed_s = routes.classify(links)
        grown = (len(routes.built_s) - len(crossed), width)
        crossed = np.vstack([crossed, np.zeros(grown, dtype=np.int64)])
        longest_s = np.vstack([longest_s, np.zeros(grown)])
        cell = (route * width)[:, None] + links + 1
        counts = np.bincount(cell.ravel(), minlength=crossed.size).reshape(crossed.shape)
        one_size = size.min() == size.max()  # then bytes are counts x size (summed as integers: exact)
        payload += counts[:, 1:].sum(axis=0) * size[0] if one_size else _link_sums(links, size, fabric.n_links)
        if model.ack_fraction > 0:  # the reverse route carries the ACK stream
            back = _links(fabric, dst, src, cached)
            acks += _link_sums(back, size, fabric.n_links)
            back_cell = (route * width)[:, None] + back + 1
            counts += np.bincount(back_cell.ravel(), minlength=crossed.size).reshape(crossed.shape)
            cell = np.concatenate([cell, back_cell], axis=1)
        crossed += counts
        if routes.fixed:
            np.maximum.at(longest_s.reshape(-1), cell.ravel(), np.repeat(fixed_s, cell.shape[1]))
        if model.tcp_gamma_bytes > 0:  # a message moves at most gamma / (2 x route latency)
            latency_s = routes.built_s[route] + fixed_s
            window.append(_slowest_per_latency(latency_s, size * 2 * latency_s / (model.tcp_gamma_bytes
                                                                                  * model.rate_factor)))
    drain_per_byte = (payload + model.ack_fraction * acks) / (fabric.capacity_Bps * model.rate_factor)
    route, link = np.nonzero(crossed[:, 1:])
    fixed_s, rate_class = longest_s[route, link + 1], fabric.link_rate_class[link]
    order = np.lexsort((fixed_s, rate_class, route))
    route, fixed_s, rate_class = route[order], fixed_s[order], rate_class[order]
    first = np.ones(len(order), dtype=bool)  # rows of one (route class, fixed latency, rate class): the longest drain
    first[1:] = (np.diff(route) != 0) | (np.diff(fixed_s) != 0) | (np.diff(rate_class) != 0)
    starts = np.nonzero(first)[0]
    route, fixed_s, rate_class = route[starts], fixed_s[starts], rate_class[starts]
    latency_s, drain_s = [fixed_s + routes.built_s[route]], [np.maximum.reduceat(drain_per_byte[link[order]], starts)]
    for latency, drain in window:
        latency_s.append(latency)
        drain_s.append(drain)
    n_windows = sum(len(latency) for latency, _ in window)
    hops = np.concatenate([routes.hops[route], np.zeros((n_windows, routes.hops.shape[1]))])
    return StepProfile(np.concatenate(latency_s) * model.latency_factor, np.concatenate(drain_s), payload,
                       np.concatenate([rate_class, np.full(n_windows, -1)]), hops * model.latency_factor)


class _RouteLatencies:
    """Routes by latency class: per class id, ``hops`` (the shares of each latency parameter its links add up
    to) and ``built_s`` (their latency as built, s); per route, the latency of its links no parameter sets
    (``fixed``: whether any link has one)."""

    def __init__(self, fabric: Fabric) -> None:
        tagged = fabric.link_latency_class < len(fabric.latency_params)
        pairs, digit = np.unique(np.stack([fabric.link_latency_class, fabric.link_latency_share])[:, tagged], axis=1,
                                 return_inverse=True)
        self.pair_param, self.pair_share = pairs[0].astype(np.int64), pairs[1]  # the distinct (parameter, share)
        self.digit = np.full(fabric.n_links + 1, -1)  # each link's pair; the last entry: padding
        self.digit[:-1][tagged] = digit.reshape(-1)
        self.fixed_link_s = np.append(np.where(tagged, 0.0, fabric.latency_s), 0.0)
        self.fixed = bool(np.any(self.fixed_link_s > 0))
        self.one_pair = bool(np.all(self.digit[:-1] == 0))  # then a route's code is its number of links
        self.param_s = us_to_s(np.array([fabric.param_values[p] for p in fabric.latency_params]))
        self.hops = np.zeros((0, len(self.param_s)))
        self.built_s = np.zeros(0)
        self._ids: dict[bytes, int] = {}

    def classify(self, links: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row of a padded link matrix: its route class id and its fixed latency (s)."""
        fixed_s = self.fixed_link_s[links].sum(axis=1) if self.fixed else np.zeros(len(links))
        base, n_pairs = links.shape[1] + 1, len(self.pair_param)  # a route has fewer than base links of a pair
        n_codes = base ** n_pairs  # a route's code: its count of links of pair p as digit p in base ``base``
        if n_codes >= 1 << 62:
            raise ValueError(f"routes of {links.shape[1]} links: too long to class by latency")
        if self.one_pair:
            code = np.count_nonzero(links >= 0, axis=1)
        else:
            code = np.where(self.digit >= 0, base ** np.maximum(self.digit, 0), 0)[links].sum(axis=1)
        few = n_codes <= 1 << 22  # then count the codes and look their ids up in a table
        present, inverse = (np.nonzero(np.bincount(code, minlength=n_codes))[0], None) if few else np.unique(
            code, return_inverse=True)
        counts = present[:, None] // base ** np.arange(n_pairs) % base
        hops = np.zeros((len(present), len(self.param_s)))
        np.add.at(hops.T, self.pair_param, (counts * self.pair_share).T)
        ids = np.array([self._id(row) for row in hops], dtype=np.int64)
        if not few:
            return ids[inverse], fixed_s
        lookup = np.zeros(n_codes, dtype=np.int64)
        lookup[present] = ids
        return lookup[code], fixed_s

    def _id(self, hops: np.ndarray) -> int:
        key = hops.tobytes()
        if key not in self._ids:
            self._ids[key] = len(self.built_s)
            self.hops = np.vstack([self.hops, hops])
            self.built_s = np.append(self.built_s, hops @ self.param_s)
        return self._ids[key]


def _slowest_per_latency(latency_s: np.ndarray, drain_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct latency with the longest drain among its messages. A step takes max(latency + scale x
    drain) for a scale >= 0, which only these pairs can attain; routes have few distinct latencies, so this
    keeps a handful of pairs out of millions of messages."""
    distinct, group = np.unique(latency_s, return_inverse=True)
    longest = np.full(len(distinct), -np.inf)
    np.maximum.at(longest, group, drain_s)
    return distinct, longest


def _links(fabric: Fabric, src: np.ndarray, dst: np.ndarray, cached: bool) -> np.ndarray:
    """Padded link matrix of the routes src -> dst (through the route cache if ``cached``)."""
    if cached:
        ids = fabric.route_ids(src, dst)  # first: it may grow (replace) the route arrays
        return fabric.route_links[ids]
    return fabric.uncached_routes(src, dst)


@dataclass
class _Pending:
    """A started schedule waiting for its ranks to join."""

    time_s: float
    ready_s: np.ndarray
    sent_bytes: np.ndarray
    received_bytes: np.ndarray
    start_s: float
    on_rank_done: RankCallback | None


class AnalyticalNetwork:
    """Closed-form network model over a fabric; same ``start`` interface as the flow backend."""

    fidelity = "analytical"

    def __init__(self, fabric: Fabric, env: simpy.Environment | None = None,
                 model: NetworkModel = MODELS["maxmin"]) -> None:
        self.fabric = fabric
        self.model = model
        self.env = env if env is not None else simpy.Environment()
        self._link_bytes = np.zeros(fabric.n_links)
        self._pending: dict[simpy.Event, _Pending] = {}

    def schedule_profile(self, schedule: Schedule, hosts: np.ndarray | None = None) -> list[tuple[int, StepProfile]]:
        """(repeat, profile) of each schedule entry (``schedule_profile`` on this network's fabric and model)."""
        return schedule_profile(self.fabric, schedule, hosts, self.model)

    def schedule_time_s(self, schedule: Schedule, hosts: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """(time in s, bytes per link) of a whole schedule.

        A schedule with a ``shape`` is profiled once per shape and hosts, then scaled by its size.
        """
        if schedule.shape is None or schedule.size_bytes <= 0:
            profile, scale = self.schedule_profile(schedule, hosts), 1.0
        else:
            hosts = np.arange(schedule.n_ranks) if hosts is None else np.asarray(hosts, dtype=np.int64)
            cache = _SHAPES.setdefault(self.fabric, {})
            key = (self.model.name, schedule.shape, hosts.tobytes())
            if key not in cache:
                cache[key] = (schedule.size_bytes, self.schedule_profile(schedule, hosts))
            reference_bytes, profile = cache[key]
            scale = schedule.size_bytes / reference_bytes
        return profile_time_s(profile, scale), profile_link_bytes(profile, self.fabric.n_links, scale)

    def start(self, schedule: Schedule, hosts: np.ndarray | None = None, ready_s: np.ndarray | None = None,
              on_rank_done: RankCallback | None = None) -> simpy.Event:
        """Start a schedule; same contract as ``FlowNetwork.start``.

        With no per-rank timing in closed form, the schedule begins when its last rank joins and every
        rank ends together, ``time`` later.
        """
        time_s, link_bytes = self.schedule_time_s(schedule, hosts)
        self._link_bytes += link_bytes
        n = schedule.n_ranks
        sent, received = schedule.bytes_by_rank()
        event = self.env.event()
        self._pending[event] = _Pending(time_s, np.full(n, np.inf), sent, received, self.env.now, on_rank_done)
        ready_s = np.full(n, self.env.now) if ready_s is None else np.asarray(ready_s, dtype=np.float64)
        joined = np.nonzero(np.isfinite(ready_s))[0]
        self.release(event, joined, ready_s[joined])
        return event

    def release(self, run_event: simpy.Event, ranks: np.ndarray, ready_s: np.ndarray) -> None:
        """Ranks of a started run join at ``ready_s`` (>= now)."""
        run = self._pending[run_event]
        run.ready_s[ranks] = np.maximum(ready_s, self.env.now)
        if not np.all(np.isfinite(run.ready_s)):
            return
        del self._pending[run_event]
        end_s = float(run.ready_s.max()) + run.time_s
        n = len(run.ready_s)
        if run.on_rank_done is not None:
            run.on_rank_done(np.arange(n), np.full(n, end_s))
        result = RunResult(start_s=run.start_s, end_s=end_s, rank_end_s=np.full(n, end_s),
                           sent_bytes=run.sent_bytes, received_bytes=run.received_bytes)
        self.env.timeout(end_s - self.env.now).callbacks.append(lambda _event: run_event.succeed(result))

    def link_bytes(self) -> np.ndarray:
        return self._link_bytes.copy()

    def link_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per link: busy time as bytes / capacity (s); peak utilization is not measured (NaN)."""
        return self._link_bytes / self.fabric.capacity_Bps, np.full(self.fabric.n_links, np.nan)

    def link_segments(self) -> None:
        """Closed forms have no rates over time."""
        return None
