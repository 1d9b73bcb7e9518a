"""The fluid (flow-level) state of a fabric: which flows move, at what max-min fair rate, until when.

Exact semantics of docs/NETWORK_MODEL.md ("Semantics"), made fast by three observations:

1. Lookahead. A flow that becomes ready at t starts moving at t + route latency >= t + L_min, where
   L_min is the smallest route latency. So once the earliest pending event is at t0, every flow that
   will move before t0 + L_min is already known, and the window [t0, t0 + L_min) can be processed as one
   batch without waiting for the completions inside it.
2. Isolation. A flow that shares no link with any other flow present during the window moves at its
   route's bottleneck rate and finishes at a time known in closed form; such flows (a ring's, say) are
   handled in vectorized batches. Only flows that share links ("coupled") need rate recomputation.
3. Incremental max-min. When flows whose rates are >= lam leave, every flow below lam keeps its rate
   (progressive filling reaches lam unchanged), so only flows at or above lam are recomputed, on the
   capacity the others leave. A new flow on links with capacity c and n flows changes nothing below
   min(c / n). Completions of the fastest flows, the common case, therefore touch few flows.
4. Completion batching (the one approximation, ``rate_tolerance``, default 1e-3; 0 turns it off). Exact max-min
   under hash-ECMP collisions gives nearly every flow its own completion time: an alltoall on 1,024 hosts has
   ~10^5 distinct ones, each a rate recomputation over ~10^5 flows. So completions within ``rate_tolerance`` x
   (age of the first finisher) after it share one recomputation, at the last of them; so do later ones while the
   capacity the batch leaves idle stays small on every link (``IDLE_SHARE``), up to the next arrival known; a
   batch carries over into the windows its flows finish in, and an arrival before its end ends it. Each flow
   still ends at its own time at the rates it had, no link exceeds capacity and all bytes are counted; the
   capacity the early finishers free stays idle for that sliver. The bound: a rank's end moves by at most
   ``TOLERANCE_BOUND`` (2) x the tolerance, relative. It is tested (random traffic on fat-trees; random
   heterogeneous stars, links 10-100 Gb/s and latencies 1-10 us, where completions never coincide), not proven:
   delays from successive batches can add up. The worst seen: 1.07 x the tolerance at 1e-3 and 1.55 x at 0.1,
   over 300 random stars; on uniform fabrics far less (a 64-host all-to-all moves by 2.7e-5 at 1e-3). Arrivals
   are batched the same way: flows that become ready within ``rate_tolerance`` x L_min after the first of them
   start together, at the last one's time, with one rate recomputation: a message starts at most that fraction of
   its own route latency late (tests check every rank's end against the same bound, on random traffic with ranks
   joining ns apart). It matters when thousands of ranks release their messages nanoseconds apart: a 4,096-rank
   PS exchange re-solved all 16 M flows at each release.

Times within a relative 1e-12 of each other are one event. Long runs do the common windows (lone arrivals, no
coupled completion) in one compiled call instead of numpy's small-array operations (``use_compiled``).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from simulator.network import fabric as fabric_module
from simulator.network.fabric import Fabric, entries, link_sums
from simulator.network.maxmin import SolverTier, max_min_rates, weighted_max_min_rates
from simulator.network.models import ModelRoutes
from simulator.options import DEFAULT_RATE_TOLERANCE, MAX_RATE_TOLERANCE  # noqa: F401 (re-exported)

TIME_REL_EPS = 1e-12
ARRIVING = ("route", "size", "t_act", "owner", "tag")  # the columns of a pending flow
_LAYOUTS = itertools.count()  # ``_Table.layout``
TOLERANCE_BOUND = 2.0  # a rank's end moves by at most this x rate_tolerance, relative (tested, not proven)


def time_eps(t: float) -> float:
    """Times closer than this to t are the same instant."""
    return TIME_REL_EPS * abs(t) + 1e-18


def _extended(array: np.ndarray, size: int) -> np.ndarray:
    """A copy of ``array`` zero-extended to ``size`` elements."""
    out = np.zeros(size, dtype=array.dtype)
    out[: len(array)] = array
    return out


def _least_in_order(values: np.ndarray, k: int, upto: float, above: float = -np.inf) -> np.ndarray:
    """Positions of every value in (``above``, t] for some t <= ``upto``, in the order of a stable argsort (ties by
    position): at least the k least of those above ``above`` when k are <= ``upto`` (else all that are). t is read
    from every 64th value, aiming at 2k, so that this costs a few passes over ``values`` and a sort of about 2k of
    them, not a sort (or a partition, and its copy) of millions.

    >>> _least_in_order(np.array([3.0, 1.0, 2.0, 1.0]), 2, 2.5).tolist()
    [1, 3, 2]
    >>> _least_in_order(np.array([3.0, 1.0, 2.0, 1.0]), 1, 3.0, above=1.0).tolist()
    [2, 0]
    """
    sample = values[::64]
    sample, aim = sample[sample > above], 2 * k // 64
    while True:
        t = upto if aim >= len(sample) else min(upto, float(np.partition(sample, aim)[aim]))
        within = values <= t
        if above > -np.inf:
            within &= values > above
        pick = np.nonzero(within)[0]
        if len(pick) >= k or t >= upto:
            return pick[np.argsort(values[pick], kind="stable")]
        aim = 4 * aim + 1


def _largest_true(lo: int, hi: int, ok: Callable[[int], bool], guess: int) -> int:
    """The largest k in [lo, hi] where ``ok`` holds, ``ok`` true up to some k and false past it (``ok(lo)`` taken as
    true, not asked): galloping from ``guess`` (up when ok there, down when not), then bisection. Two calls when
    the guess is right; from ``lo``, the cost grows with the answer, not with ``hi``.

    >>> _largest_true(0, 100, lambda k: k <= 37, 40), _largest_true(0, 100, lambda k: k <= 37, 0)
    (37, 37)
    """
    guess, step = min(max(guess, lo), hi), 1
    if guess > lo and not ok(guess):
        bad = guess
        while bad - step > lo and not ok(bad - step):
            bad, step = bad - step, 2 * step
        good = max(lo, bad - step)
    else:
        good = guess
        while good + step <= hi and ok(good + step):
            good, step = good + step, 2 * step
        bad = min(good + step, hi + 1)
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if ok(mid) else (good, mid)
    return good


class _Table:
    """Columnar store of flows (only the ``fields`` a table needs) with amortized O(1) appends, lazy deletion,
    and capacity given back when most of it is dead."""

    FIELDS: ClassVar[dict[str, type]] = {
        "route": np.int32, "size": np.float64, "owner": np.int32, "tag": np.int64, "t_act": np.float64,
        "t_fin": np.float64, "rem": np.float64, "t_upd": np.float64, "rate": np.float64}
    DEAD: ClassVar[dict[str, float]] = {"t_act": np.inf, "t_fin": np.inf, "rate": -np.inf}  # what scans skip
    MIN_CAPACITY = 64

    def __init__(self, *fields: str) -> None:
        self.n = 0
        self.n_alive = 0
        self.layout = next(_LAYOUTS)  # changes whenever rows are added or moved (never repeats)
        self.cols = {name: np.zeros(self.MIN_CAPACITY, dtype=self.FIELDS[name]) for name in fields}
        self.alive = np.zeros(self.MIN_CAPACITY, dtype=bool)

    def __getattr__(self, name: str) -> np.ndarray:
        cols = self.__dict__.get("cols")
        if cols is not None and name in cols:
            return cols[name][: self.n]
        raise AttributeError(name)

    def append(self, **values: np.ndarray) -> np.ndarray:
        rows = self.grow(len(next(iter(values.values()))))
        for name, value in values.items():
            self.cols[name][rows] = value
        return np.arange(rows.start, rows.stop)

    def grow(self, k: int) -> slice:
        """``k`` new rows at the end, alive, whose columns the caller fills (in place: no temporaries)."""
        rows = slice(self.n, self.n + k)
        self.reserve(rows.stop)
        self.alive[rows] = True
        self.n, self.n_alive = rows.stop, self.n_alive + k
        self.layout = next(_LAYOUTS)
        return rows

    def reserve(self, rows: int) -> None:
        """Room for ``rows`` rows in all, without appending (at least double, as appends grow)."""
        if rows > len(self.alive):
            self._resize(max(rows, 2 * len(self.alive)))

    def _resize(self, capacity: int) -> None:
        """Copy the first ``n`` rows into arrays of ``capacity`` rows."""
        for name, col in self.cols.items():
            self.cols[name] = _extended(col[: self.n], capacity)
        self.alive = _extended(self.alive[: self.n], capacity)

    def take(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Remove ``rows`` (ascending) and return their columns; when they are every row, the columns themselves
        (no copy of millions of rows)."""
        if len(rows) == self.n == self.n_alive:
            taken = {name: col[: self.n] for name, col in self.cols.items()}
            self.__init__(*taken)  # empty again
            return taken
        taken = {name: col[rows] for name, col in self.cols.items()}
        self.kill(rows)
        self.compact()
        return taken

    def live_rows(self) -> np.ndarray:
        return np.nonzero(self.alive[: self.n])[0]

    def kill(self, rows: np.ndarray) -> None:
        """Delete rows; their times become +inf and rates -inf so scans need no liveness mask."""
        self.alive[rows] = False
        self.n_alive -= len(rows)
        for name, dead in self.DEAD.items():
            if name in self.cols:
                self.cols[name][rows] = dead

    def compact(self) -> np.ndarray | None:
        """Drop dead rows when they are the majority; returns the old row of each new row, or None."""
        if self.n < 256 or self.n_alive * 2 > self.n:
            return None
        keep = self.live_rows()
        for col in self.cols.values():
            col[: len(keep)] = col[keep]
        self.alive[: len(keep)] = True
        self.alive[len(keep) : self.n] = False
        self.n, self.layout = len(keep), next(_LAYOUTS)
        if len(self.alive) > 4 * max(self.n, self.MIN_CAPACITY):
            self._resize(2 * max(self.n, self.MIN_CAPACITY))
        return keep


@dataclass
class Completions:
    """Flows that finished in a window: owner id, owner's tag, finish time (s)."""

    owner: np.ndarray
    tag: np.ndarray
    t_done: np.ndarray


class FluidCore:
    """Flows on a fabric under max-min fair sharing; advanced one lookahead window at a time.

    Given ``ModelRoutes`` in place of a fabric, flows share by the model's weights, bounds and ACK loads
    (``models``), and a flow needs ``size / rate_factor`` bytes of link capacity. Rates are then weight x a
    common level, and the incremental rule holds in levels: completions restart at the least level that
    left, arrivals at capacity / (sum of coef x weight of the link's flows).
    """

    IDLE_SHARE: ClassVar[float] = 0.3  # completion batching: idle capacity a batch may add (``_completion_batch``)
    BATCH_REACH: ClassVar[float] = 10.0  # ... and how far past the tolerance it may reach
    ARRIVALS_CHUNK: ClassVar[int] = 1 << 20  # arrivals are checked for links they share this many at a time
    INDEXED_FLOWS: ClassVar[int] = 1 << 16  # re-solves of this many flows, half the coupled ones, use a LinkIndex
    LONE_ROOM: ClassVar[int] = 1024  # rows ``lone_windows`` makes room for in the pending and isolated tables

    def __init__(self, fabric: Fabric | ModelRoutes, check_capacity: bool = False, incremental: bool = True,
                 rate_tolerance: float = DEFAULT_RATE_TOLERANCE, record_rates: bool = False) -> None:
        """``check_capacity`` asserts after every rate change that no link exceeds its capacity;
        ``incremental=False`` recomputes every coupled flow's rate at every event (for testing);
        ``rate_tolerance`` > 0 merges completions into one rate event (see ``_completion_batch``);
        ``record_rates`` keeps every link's rate over time (``link_segments``)."""
        self.fabric = fabric
        self._model_routes = fabric if isinstance(fabric, ModelRoutes) else None
        self.incremental = incremental
        self.work_per_byte = 1.0 / fabric.model.rate_factor if self._model_routes is not None else 1.0
        self.rate_tolerance = rate_tolerance
        self.arrival_slack_s = rate_tolerance * fabric.min_route_latency_s()
        n_links = fabric.n_links
        self.check_capacity = check_capacity
        self.link_count = np.zeros(n_links, dtype=np.int32)
        self.link_demand = np.zeros(n_links)  # sum of coef x weight of the flows on each link (models only)
        self.link_owner = np.full(n_links, -1, dtype=np.int32)
        self.coupled_load_Bps = np.zeros(n_links)
        self.link_busy_s = np.zeros(n_links)
        self.link_peak_util = np.zeros(n_links)
        self.pending = _Table(*ARRIVING)
        self.iso = _Table(*ARRIVING, "t_fin")
        self.cpl = _Table(*_Table.FIELDS)
        self._route_bytes = np.zeros(0)
        self._segments: list[tuple[np.ndarray, ...]] | None = [] if record_rates else None
        self._t_last_event = 0.0
        self._next_event_s: float | None = None  # cached next_event_time; None: recompute
        self.n_flows = 0
        self.n_windows = 0
        self.n_rate_solves = 0
        self.n_rate_flows = 0
        self._tier = SolverTier()
        self._isolated_kernel = None  # ``use_compiled``
        self._work = None  # ``compiled.Workspace`` of the large re-solves
        self._index = None  # ``compiled.LinkIndex`` of the largest ones
        # A completion batch reaching past its window: its last flow's end, and the least level its flows that
        # already finished left at (their capacity stays idle until it ends, or until an arrival)
        self._batch_end_s, self._batch_restart = -np.inf, np.inf

    # ----- input and queries -------------------------------------------------------------------------
    def add(self, route: np.ndarray, size: np.ndarray, t_act: np.ndarray, owner: np.ndarray | int,
            tag: np.ndarray) -> None:
        """Queue flows that start moving at ``t_act`` (ready time + route latency); ``owner``: one per flow, or
        one for all."""
        if len(route):
            self.pending.append(route=route, size=size, t_act=t_act, owner=owner, tag=tag)
            self.n_flows += len(route)
            if self._next_event_s is not None:
                self._next_event_s = min(self._next_event_s, float(t_act.min()))

    def next_event_time(self) -> float:
        """The earliest pending arrival or completion (s); inf when none."""
        if self._next_event_s is None:
            t = np.inf
            for table, col in ((self.pending, "t_act"), (self.iso, "t_fin"), (self.cpl, "t_fin")):
                if table.n_alive:
                    t = min(t, float(table.cols[col][: table.n].min()))
            self._next_event_s = t
        return self._next_event_s

    def link_segments(self) -> dict[str, np.ndarray] | None:
        """What each link carried over time (``record_rates``), as segments of constant rate: ``link``,
        ``t0``, ``t1`` (s) and ``rate`` (bytes/s); a link's rate at t is the sum of its segments covering t.
        None when not recorded."""
        if self._segments is None:
            return None
        names = ("link", "t0", "t1", "rate")
        if not self._segments:
            return {name: np.zeros(0) for name in names}
        return {name: np.concatenate([seg[i] for seg in self._segments]) for i, name in enumerate(names)}

    def _log_isolated(self, route: np.ndarray, t0: np.ndarray, t1: np.ndarray) -> None:
        """Isolated flows moved at their route's bottleneck rate from ``t0`` to ``t1``."""
        if self._segments is not None:
            links, valid = self._links_of(route)
            per_link = [entries(v, valid) for v in (t0, t1)]
            rate = self._entry_Bps(route, valid, self.fabric.route_bottleneck_Bps[route])
            self._segments.append((links[valid].astype(np.int64), *per_link, rate))

    def link_bytes(self) -> np.ndarray:
        """Bytes carried by each directed link so far (completed flows)."""
        used = np.nonzero(self._route_bytes)[0]
        model = self._model_routes
        if model is None:
            return link_sums(self.fabric.route_links, self._route_bytes[used], self.fabric.n_links, rows=used)
        return link_sums(model.fabric.route_links, self._route_bytes[used], self.fabric.n_links,
                         rows=model.route_fwd[used])

    # ----- the window ---------------------------------------------------------------------------------
    def use_compiled(self) -> None:
        """From now on, run windows whose arrivals are all alone on their links and in which no coupled flow
        finishes (nearly all of a training step's) in one compiled call, ``compiled.isolated_window``: the same
        updates in the same order, about 10x faster than numpy's small array operations, for numba's 0.4 s load.
        Max-min sharing without rate recording only (the others keep numpy's path)."""
        self._tier.always = True
        if self._model_routes is None and self._segments is None:
            from simulator.network.compiled import isolated_window

            self._isolated_kernel = isolated_window

    def run_window(self, t0: float, horizon: float) -> Completions:
        """Process every event at time t0 or in [t0, horizon); return the flows that finished."""
        self.n_windows += 1
        self._next_event_s = None
        limit = max(horizon, t0 + time_eps(t0) * 2)
        if self._isolated_kernel is not None:
            completions = self._isolated_window(limit)
            if completions is not None:
                return completions
        done: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        arrivals = self._classify_arrivals(t0, limit)
        self._finish_isolated(limit, done)
        self._run_coupled(t0, limit, arrivals, done)
        if not done:
            return Completions(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
        return Completions(*(np.concatenate([d[i] for d in done]) for i in range(3)))

    def _isolated_window(self, limit: float) -> Completions | None:
        """``run_window`` compiled when every arrival is alone and no coupled flow finishes; None otherwise."""
        pend, iso = self.pending, self.iso
        iso.reserve(iso.n + pend.n_alive)
        if len(self._route_bytes) < self.fabric.n_routes:
            self._route_bytes = _extended(self._route_bytes, self.fabric.n_routes)
        moved, owner, tag, t_fin, n_iso, self._next_event_s = self._isolated_kernel(
            limit, tuple(pend.cols[name] for name in ARRIVING), pend.alive, pend.n,
            tuple(iso.cols[name] for name in (*ARRIVING, "t_fin")), iso.alive, iso.n, self.cpl.t_fin,
            self.fabric.route_links, self.fabric.route_bottleneck_Bps, self.fabric.capacity_Bps, self.link_count,
            self.link_owner, self.link_busy_s, self.link_peak_util, self._route_bytes)
        if moved < 0:
            self._next_event_s = None
            return None
        if moved:
            pend.n_alive -= moved
            pend.compact()
        iso.n, iso.n_alive = n_iso, iso.n_alive + moved - len(owner)
        if len(owner):
            self._compact_isolated()
        return Completions(owner, tag, t_fin)

    @property
    def compiled_windows(self) -> bool:
        """Whether lone windows run compiled (``use_compiled``, under max-min sharing without rate recording)."""
        return self._isolated_kernel is not None

    def lone_windows(self, now: float, stop_s: float, lookahead_s: float, max_windows: int, owner: int,
                     tag_shift: int, message_route: np.ndarray, progress: tuple) -> tuple:
        """Run the windows of one run's lone messages from ``now`` in one compiled call (``compiled.lone_windows``:
        its stopping rules, its ``progress`` arguments and results). Only where ``compiled_windows``, with no
        other run's flows on the network. Returns (windows run, the kernel's progress results)."""
        from simulator.network.compiled import lone_windows

        pend, iso = self.pending, self.iso
        iso.reserve(iso.n + pend.n_alive + self.LONE_ROOM)
        pend.reserve(pend.n + self.LONE_ROOM)
        if len(self._route_bytes) < self.fabric.n_routes:
            self._route_bytes = _extended(self._route_bytes, self.fabric.n_routes)
        fabric = self.fabric
        windows, pend.n, iso.n, _, self._next_event_s, *out = lone_windows(
            now, stop_s, lookahead_s, max_windows, tuple(pend.cols[name] for name in ARRIVING), pend.alive, pend.n,
            tuple(iso.cols[name] for name in (*ARRIVING, "t_fin")), iso.alive, iso.n, self.cpl.t_fin,
            (fabric.route_links, fabric.route_bottleneck_Bps, fabric.capacity_Bps, fabric.route_latency_s),
            (self.link_count, self.link_owner, self.link_busy_s, self.link_peak_util, self._route_bytes),
            owner, tag_shift, message_route, progress)
        pend.n_alive = int(np.count_nonzero(pend.alive[: pend.n]))
        iso.n_alive = int(np.count_nonzero(iso.alive[: iso.n]))
        self.n_windows += windows
        return windows, out

    def _links_of(self, routes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Padded link matrix of ``routes`` and the mask of its real (non-padding) entries."""
        links = self.fabric.route_links[routes]
        return links, links >= 0

    def _links_under(self, routes: np.ndarray) -> np.ndarray:
        """The link ids under ``routes``: each real entry's, or past ``COMPILED_ENTRIES`` each distinct one once
        (counted in place: no copy of millions of flows' entries)."""
        if len(routes) * self.fabric.route_links.shape[1] <= fabric_module.COMPILED_ENTRIES:
            links = self.fabric.route_links[routes]
            return links[links >= 0]
        return np.nonzero(self._per_link(routes, None))[0]

    def _per_link(self, routes: np.ndarray, per_flow: np.ndarray | None) -> np.ndarray:
        """Per link, the sum over flows on ``routes`` of ``per_flow`` (a rate in bytes/s; under a model x each
        entry's ACK coefficient), or the count of flows when None."""
        coef = None if self._model_routes is None or per_flow is None else self._model_routes.route_coef
        return link_sums(self.fabric.route_links, per_flow, self.fabric.n_links, rows=routes, coef=coef)

    def _entry_Bps(self, routes: np.ndarray, valid: np.ndarray, rate_Bps: np.ndarray) -> np.ndarray:
        """Bytes/s each real entry of ``routes``' link matrix carries at these flow rates (ACK entries less)."""
        if self._model_routes is None:
            return entries(rate_Bps, valid)
        return (rate_Bps[:, None] * self._model_routes.route_coef[routes])[valid]

    def _classify_arrivals(self, t0: float, limit: float) -> dict[str, np.ndarray]:
        """Start this window's arrivals: alone on their links -> isolated; otherwise coupled, later (in order of
        ``t_act``). Millions arriving at once are looked at ``ARRIVALS_CHUNK`` at a time, each column copied once
        at most (16.7 M flows hold 536 MB of them)."""
        pend = self.pending
        rows = np.nonzero(pend.t_act < limit)[0]
        if not len(rows):
            return {}
        arr = pend.take(rows)
        route = arr["route"]
        self._count(route, +1)
        owners = self.link_owner[self._links_under(route)]
        owners = owners[owners >= 0]
        if len(owners):
            self._isolated_to_coupled(np.unique(owners), t0)
        alone = np.empty(len(route), dtype=bool)
        for lo in range(0, len(route), self.ARRIVALS_CHUNK):
            links = self.fabric.route_links[route[lo : lo + self.ARRIVALS_CHUNK]]
            np.all((links < 0) | (self.link_count[links] == 1), axis=1, out=alone[lo : lo + self.ARRIVALS_CHUNK])
        every = bool(alone.all())
        if every or alone.any():
            iso = arr if every else {name: col[alone] for name, col in arr.items()}
            links, valid = self._links_of(iso["route"])
            cap = self.fabric.route_bottleneck_Bps[iso["route"]]
            duration = iso["size"] * self.work_per_byte / cap
            new_rows = self.iso.append(**iso, t_fin=iso["t_act"] + duration)
            self.link_owner[links[valid]] = entries(new_rows, valid)
            self._account_isolated(iso["route"], links, valid, cap, duration)
        if every:
            return {}
        coupled = np.nonzero(~alone)[0]
        del alone
        order = coupled[np.argsort(arr["t_act"][coupled], kind="stable")]
        del coupled
        for name in ARRIVING:  # one column at a time: one extra column at most
            arr[name] = arr[name][order]
        return arr

    def _account_isolated(self, route: np.ndarray, links: np.ndarray, valid: np.ndarray, rate: np.ndarray,
                          duration: np.ndarray) -> None:
        """Busy time and peak utilization of links carrying isolated flows (``duration`` may be negative)."""
        flat = links[valid]
        np.add.at(self.link_busy_s, flat, entries(duration, valid))
        util = self._entry_Bps(route, valid, rate) / self.fabric.capacity_Bps[flat]
        np.maximum.at(self.link_peak_util, flat, util)

    def _isolated_to_coupled(self, rows: np.ndarray, t0: float) -> None:
        """Isolated flows about to share a link become coupled, moving at their current rate from t0."""
        iso = self.iso
        route = iso.route[rows]
        cap = self.fabric.route_bottleneck_Bps[route]
        links, valid = self._links_of(route)
        self.link_owner[links[valid]] = -1
        self._account_coupled(t0)  # the coupled load so far, before these flows join it
        self._log_isolated(route, np.minimum(iso.t_act[rows], t0), np.full(len(rows), t0))
        t_fin = iso.t_fin[rows]
        self._account_isolated(route, links, valid, cap, -(t_fin - t0))
        self.cpl.append(route=route, size=iso.size[rows], owner=iso.owner[rows], tag=iso.tag[rows],
                        t_act=iso.t_act[rows], t_fin=t_fin, rem=cap * (t_fin - t0), t_upd=np.full(len(rows), t0),
                        rate=cap)
        self.coupled_load_Bps += self._per_link(route, cap)
        iso.kill(rows)

    def add_moved_alone(self, route: np.ndarray, size: np.ndarray, repeat: int = 1) -> None:
        """Count flows that moved alone at their route's bottleneck rate, ``repeat`` times each, outside the
        event loop (``FlowNetwork.run_alone``): their bytes, links' busy time and peak utilization."""
        self._record_done(route, size * repeat)
        links, valid = self._links_of(route)
        cap = self.fabric.route_bottleneck_Bps[route]
        self._account_isolated(route, links, valid, cap, repeat * (size * self.work_per_byte / cap))

    def _finish_isolated(self, limit: float, done: list) -> None:
        iso = self.iso
        rows = np.nonzero(iso.t_fin < limit)[0]
        if not len(rows):
            return
        route = iso.route[rows]
        links, valid = self._links_of(route)
        self._count(route, -1)
        self.link_owner[links[valid]] = -1
        self._record_done(route, iso.size[rows])
        self._log_isolated(route, iso.t_act[rows], iso.t_fin[rows])
        done.append((iso.owner[rows].copy(), iso.tag[rows].copy(), iso.t_fin[rows].copy()))
        iso.kill(rows)
        self._compact_isolated()

    def _compact_isolated(self) -> None:
        """Compact the isolated table when mostly dead, pointing links at their flows' new rows."""
        old_rows = self.iso.compact()
        if old_rows is not None:
            live = np.arange(len(old_rows))
            links, valid = self._links_of(self.iso.route[live])
            self.link_owner[links[valid]] = entries(live, valid)

    def _record_done(self, route: np.ndarray, size: np.ndarray) -> None:
        if len(self._route_bytes) < self.fabric.n_routes:
            self._route_bytes = _extended(self._route_bytes, self.fabric.n_routes)
        np.add.at(self._route_bytes, route, size)

    def _run_coupled(self, t0: float, limit: float, arrivals: dict[str, np.ndarray], done: list) -> None:
        """Event loop over coupled flows inside the window: arrivals, completions, rate recomputation."""
        cpl = self.cpl
        n_arr = len(arrivals.get("route", ()))
        next_arrival = 0
        while True:
            t_c = float(cpl.t_fin.min()) if cpl.n_alive else np.inf
            t_a = float(arrivals["t_act"][next_arrival]) if next_arrival < n_arr else np.inf
            t_e = min(t_c, t_a)
            if not (t_e < limit):
                break
            if t_a < t_c and self.arrival_slack_s > 0:  # arrivals within the slack start together, at the last
                horizon = min(t_a + self.arrival_slack_s, t_c - time_eps(t_c))
                last = int(np.searchsorted(arrivals["t_act"], horizon, side="right")) - 1
                t_e = max(t_e, float(arrivals["t_act"][last]))
            self._account_coupled(t_e)
            eps = time_eps(t_e)
            finished = np.nonzero(cpl.t_fin <= t_e + eps)[0]
            restart = np.inf
            if len(finished):
                if self.rate_tolerance > 0 and t_a > t_e + eps:
                    if self._batch_end_s == -np.inf:  # a new batch, up to the next arrival known
                        batch = self._completion_batch(finished, t_e, min(t_a, self._next_pending_s()))
                        self._batch_end_s = float(cpl.t_fin[batch].max())
                    # its flows that finish in this window leave now, together; the others in the next ones
                    last_s = max(min(self._batch_end_s, limit - time_eps(limit)), t_e + eps)
                    finished = np.nonzero(cpl.t_fin <= last_s)[0]
                    t_e = max(t_e, float(cpl.t_fin[finished].max()))
                    self._account_coupled(t_e)
                    eps = time_eps(t_e)
                    self._batch_restart = min(self._batch_restart, float(self._level(finished).min()))
                    self._remove_coupled(finished, done)
                    if self._batch_end_s <= t_e + eps:  # the batch is over: one re-solve for it
                        restart = self._end_batch()
                else:
                    restart = float(self._level(finished).min())
                    self._remove_coupled(finished, done)
            new_rows = np.zeros(0, dtype=np.int64)
            if next_arrival < n_arr and t_a <= t_e + eps:
                end = int(np.searchsorted(arrivals["t_act"], t_e + eps, side="right"))
                new_rows, level = self._start_coupled(arrivals, next_arrival, end, t_e)  # the last ones: freed
                restart = min(restart, level, self._end_batch())  # an arrival ends a batch early
                next_arrival = end
            if restart < np.inf:
                self._resolve_rates(restart if self.incremental else 0.0, new_rows, t_e)
            cpl.compact()

    def _start_coupled(self, arrivals: dict[str, np.ndarray], start: int, end: int, t_e: float
                       ) -> tuple[np.ndarray, float]:
        """Arrivals ``start:end`` join the coupled table at t_e; their rows and the level no flow on their links
        freezes below. Written into the table's columns in place, each arrival column freed once copied when
        these are the last arrivals (16.7 M flows arriving at once hold 536 MB of them)."""
        last = end == len(arrivals["t_act"])
        restart = float(self._share_level(self._links_under(arrivals["route"][start:end])).min(initial=np.inf))
        rows, part, cols = self.cpl.grow(end - start), slice(start, end), self.cpl.cols
        np.multiply(arrivals["size"][part], self.work_per_byte, out=cols["rem"][rows])
        for name in ARRIVING:
            cols[name][rows] = arrivals[name][part]
            if last:
                del arrivals[name]
        cols["t_fin"][rows], cols["t_upd"][rows], cols["rate"][rows] = np.inf, t_e, 0.0
        return np.arange(rows.start, rows.stop), restart

    def _end_batch(self) -> float:
        """End the pending completion batch, if any: the least level its flows left at (inf: none)."""
        restart, self._batch_end_s, self._batch_restart = self._batch_restart, -np.inf, np.inf
        return restart

    def _next_pending_s(self) -> float:
        """When the next flow known but not yet in this window starts (inf: none)."""
        return float(self.pending.t_act.min()) if self.pending.n_alive else np.inf

    def _completion_batch(self, finished: np.ndarray, t_e: float, before: float) -> np.ndarray:
        """Flows finishing at t_e plus those finishing soon after, whose completions share one rate recomputation.

        Always those within ``rate_tolerance`` x the age of the first finisher (``budget``) after it; then, in
        order of finish time, later ones while the capacity the batch's finishers leave idle until its last one
        stays, on every link, under ``IDLE_SHARE`` x ``budget`` seconds of the link's full capacity (the first rule
        idles at most one full ``budget``), and none is more than ``BATCH_REACH`` x ``budget`` after t_e. They all
        finish at their own exact times; the others' rates are recomputed once, at the last of them. So the
        capacity the early ones free stays idle that long: the approximation. No link ever exceeds capacity and
        every byte is still counted. A batch never reaches past ``before`` (the next arrival known); it may reach
        past the window's end (``_run_coupled`` carries it over: ``_batch_end_s``).
        """
        cpl = self.cpl
        budget_s = self.rate_tolerance * (t_e - float(cpl.t_act[finished].min()))
        last_s = before - time_eps(before)
        floor_s = t_e + time_eps(t_e)
        t_fin = cpl.t_fin  # millions of rows: a few passes over them, no sort, no copy (``_least_in_order``)
        reach_s = max(min(t_e + self.BATCH_REACH * budget_s, last_s), floor_s)
        first_s = max(min(t_e + budget_s, last_s), floor_s)  # the first rule's
        batch, n_more = np.nonzero(t_fin <= first_s)[0], int(np.count_nonzero(t_fin <= reach_s))
        n_batch = len(batch)
        if n_batch == n_more:
            return batch
        allowed_B = self.IDLE_SHARE * budget_s * self.fabric.capacity_Bps  # bytes of capacity idle, per link
        # The first finishers: the first rule's batch, then the next ones in order of their ends (sorted as far as
        # asked): rows, routes, rates, ends.
        first = [batch, cpl.route[batch], cpl.rate[batch], t_fin[batch]]

        def sort_first(k: int) -> None:
            if len(first[0]) < k:
                above = first[3][-1] if len(first[0]) > n_batch else first_s
                rows = _least_in_order(t_fin, k - len(first[0]), reach_s, above)
                new = rows, cpl.route[rows], cpl.rate[rows], t_fin[rows]
                first[:] = [np.concatenate(pair) for pair in zip(first, new, strict=True)]

        def fits(k: int) -> bool:  # the first k finishers in one batch (k > n_batch)
            sort_first(k)
            _, route, rate, ends = first
            idle_B = self._per_link(route[:k], rate[:k] * (ends[k - 1] - ends[:k]))
            return bool(np.all(idle_B <= allowed_B))

        guess = n_batch
        table = self.fabric.route_links
        if self._model_routes is None and (n_batch * table.shape[1] > fabric_module.COMPILED_ENTRIES
                                           or "simulator.network.compiled" in sys.modules):
            from simulator.network.compiled import batch_guess

            step = max(n_batch // 8, 4096)
            while True:  # where the idle capacity first passes its share, on prefix sums: a guess (rounding differs)
                sort_first(min(guess + step, n_more))
                guess = batch_guess(table, first[1], first[2], first[3], allowed_B, n_batch)
                if guess < len(first[0]) or len(first[0]) >= n_more:
                    break
                step *= 2
        good = _largest_true(n_batch, n_more, fits, guess)  # sorts further: ``first`` is read after it
        return first[0][:good]

    def _remove_coupled(self, rows: np.ndarray, done: list) -> None:
        cpl = self.cpl
        route = cpl.route[rows]
        self._count(route, -1)
        self.coupled_load_Bps -= self._per_link(route, cpl.rate[rows])
        self._record_done(route, cpl.size[rows])
        done.append((cpl.owner[rows].copy(), cpl.tag[rows].copy(), cpl.t_fin[rows].copy()))
        cpl.kill(rows)

    def _count(self, route: np.ndarray, sign: int) -> None:
        """Flows on ``route`` join (+1) or leave (-1) their links' counts and demands."""
        if 8 * len(route) * self.fabric.route_links.shape[1] < len(self.link_count):
            links = self.fabric.route_links[route]
            np.add.at(self.link_count, links[links >= 0], sign)
        else:
            self.link_count += sign * self._per_link(route, None)
        model = self._model_routes
        if model is not None:
            self.link_demand += sign * self._per_link(route, model.route_weight[route])

    def _share_level(self, links: np.ndarray) -> np.ndarray:
        """No flow on these links freezes below this level: capacity / the flows' demand (count, equal shares)."""
        if self._model_routes is None:
            return self.fabric.capacity_Bps[links] / np.maximum(self.link_count[links], 1)
        demand = self.link_demand[links]
        return np.divide(self.fabric.capacity_Bps[links], demand, out=np.full(demand.shape, np.inf), where=demand > 0)

    def _level(self, rows: np.ndarray | slice) -> np.ndarray:
        """Coupled flows' levels: rate / weight (the rate itself under equal shares)."""
        rate = self.cpl.rate[rows]
        model = self._model_routes
        return rate if model is None else rate / model.route_weight[self.cpl.route[rows]]

    def _resolve_rates(self, restart_level: float, new_rows: np.ndarray, t_e: float) -> None:
        """Recompute the rates of coupled flows at or above ``restart_level`` (and new flows) at t_e."""
        cpl = self.cpl
        redo_mask = self._level(slice(None)) >= restart_level * (1 - 1e-9)
        redo_mask[new_rows] = True
        n_redo = int(np.count_nonzero(redo_mask))
        if not n_redo:
            return
        self.n_rate_solves += 1
        self.n_rate_flows += n_redo
        compiled = self._tier.compiled(n_redo * self.fabric.route_links.shape[1])
        if compiled and self._model_routes is None:
            from simulator.network.compiled import LinkIndex, Workspace, resolve_indexed, resolve_rates

            columns = [cpl.cols[name] for name in ("rate", "rem", "t_upd", "t_fin")]
            table, every = self.fabric.route_links, n_redo == cpl.n_alive
            if n_redo >= self.INDEXED_FLOWS and 2 * n_redo >= cpl.n_alive:
                index = self._index = self._index or LinkIndex()
                if index.layout != cpl.layout:
                    index.build(table, cpl.route, cpl.alive[: cpl.n], cpl.n_alive, self.fabric.n_links, cpl.layout)
                resolve_indexed(index.ptr, index.rows, index.links, index.active, redo_mask, every, *columns, t_e,
                                self.fabric.capacity_Bps, self.coupled_load_Bps, self.link_peak_util)
            else:
                if self._work is None or not self._work.fits(n_redo):
                    self._work = None  # give the old buffers back first
                    self._work = Workspace(n_redo, table.shape[1], table.dtype)
                resolve_rates(table, redo_mask, n_redo, every, cpl.cols["route"], *columns, t_e,
                              self.fabric.capacity_Bps, self.coupled_load_Bps, self.link_peak_util, self._work.rows,
                              self._work.fill)
            self._check_capacity()
            return
        redo = np.nonzero(redo_mask)[0]
        cpl.rem[redo] -= cpl.rate[redo] * (t_e - cpl.t_upd[redo])
        cpl.t_upd[redo] = t_e
        route = cpl.route[redo]
        if len(redo) == cpl.n_alive:
            self.coupled_load_Bps[:] = 0.0
        else:
            self.coupled_load_Bps -= self._per_link(route, cpl.rate[redo])
        np.maximum(self.coupled_load_Bps, 0.0, out=self.coupled_load_Bps)
        with np.errstate(divide="ignore"):
            rate = self._solve(route, self.fabric.capacity_Bps - self.coupled_load_Bps, compiled)
            cpl.t_fin[redo] = t_e + np.maximum(cpl.rem[redo], 0.0) / rate
        cpl.rate[redo] = rate
        self.coupled_load_Bps += self._per_link(route, rate)
        np.maximum(self.link_peak_util, self.coupled_load_Bps / self.fabric.capacity_Bps, out=self.link_peak_util)
        self._check_capacity()

    def _check_capacity(self) -> None:
        """With ``check_capacity``: no link carries more than its capacity (to rounding)."""
        if self.check_capacity:
            util = self.coupled_load_Bps / self.fabric.capacity_Bps
            if np.any(util > 1 + 1e-9):
                worst = int(np.argmax(util))
                raise AssertionError(f"link {worst} carries {util[worst]:.12f} of its capacity")

    def _solve(self, route: np.ndarray, capacity_Bps: np.ndarray, compiled: bool) -> np.ndarray:
        """Rates of flows on ``route`` given what the links have left, by the compiled solver or numpy's."""
        model = self._model_routes
        if model is None:
            return max_min_rates(self.fabric.route_links, capacity_Bps, rows=route, compiled=compiled)
        return weighted_max_min_rates(self.fabric.route_links, capacity_Bps, model.route_coef,
                                      model.route_weight[route], model.route_bound_Bps[route], rows=route,
                                      compiled=compiled)

    def _account_coupled(self, t_e: float) -> None:
        """Busy time of links used by coupled flows since the previous coupled event."""
        dt = t_e - self._t_last_event
        if dt > 0:
            loaded = np.nonzero(self.coupled_load_Bps > 1e-9 * self.fabric.capacity_Bps)[0]
            self.link_busy_s[loaded] += dt
            if self._segments is not None and len(loaded):
                self._segments.append((loaded, np.full(len(loaded), self._t_last_event), np.full(len(loaded), t_e),
                                       self.coupled_load_Bps[loaded].copy()))
        self._t_last_event = t_e
