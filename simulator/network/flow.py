"""The flow-level backend: schedules run on the fluid core, driven by a simpy process.

One simpy process owns the network. It sleeps until the next network event, processes a lookahead
window in one batch (see ``fluid``), hands completed messages to each run's per-rank progress, queues
what they release, and fires each run's simpy event at the exact time the run ends. Other simpy
processes (the training engine) start runs at any time; a run started at t has no message moving
before t + L_min, so it never disturbs a window already processed. A run alone on the network
(``run_alone``) whose ranks have released their last messages can add nothing: its windows then span
``CLOSED_WINDOW`` x L_min (fewer windows; completion batches reach past windows anyway:
``FluidCore._completion_batch``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import simpy

from simulator.network.alone import ordered_routes, run_ordered
from simulator.network.fabric import Fabric
from simulator.network.fluid import DEFAULT_RATE_TOLERANCE, FluidCore, time_eps
from simulator.network.models import MODELS, ModelRoutes, NetworkModel
from simulator.network.progress import TAG_SHIFT, Released, ScheduleProgress
from simulator.network.result import RankCallback, RunResult
from simulator.network.schedule import Pattern, Schedule, group_by

COMPILED_WINDOWS = 10_000  # past this many windows, compiled progress and lone windows (``use_compiled``)
# A lone run that releases nothing more needs no lookahead: its windows grow to this many L_min (still bounded,
# so that the deadline is checked and completions reach their ranks in order of windows).
CLOSED_WINDOW = 5
LONE_WINDOWS = 4096  # at most this many windows in one ``lone_windows`` call (the deadline is checked between)
LONE_MESSAGES = 1 << 22  # runs of at most this many messages (their routes listed up front) may run lone windows


class FlowBudgetExceeded(RuntimeError):
    """The flow-level run passed its wall-clock deadline (``FlowNetwork.deadline``)."""


@dataclass
class _Run:
    run_id: int
    progress: ScheduleProgress
    hosts: np.ndarray
    event: simpy.Event
    start_s: float
    on_rank_done: RankCallback | None = None
    routes: dict[int, np.ndarray] = field(default_factory=dict)
    message_route: np.ndarray | None = None  # every pattern's routes in ``FlatSchedule`` order (``_lone_windows``;
    # empty: not listed)


class FlowNetwork:
    """Flow-level network over a fabric, running inside a simpy environment; flows share links by ``model``
    (default: max-min fair, equal shares)."""

    fidelity = "flow"

    def __init__(self, fabric: Fabric, env: simpy.Environment | None = None, check_capacity: bool = False,
                 incremental: bool = True, rate_tolerance: float = DEFAULT_RATE_TOLERANCE,
                 record_rates: bool = False, model: NetworkModel = MODELS["maxmin"]) -> None:
        self.fabric = fabric
        self.model = model
        self.env = env if env is not None else simpy.Environment()
        self.routes = fabric if model.is_maxmin else ModelRoutes(fabric, model)
        self.core = FluidCore(self.routes, check_capacity=check_capacity, incremental=incremental,
                              rate_tolerance=rate_tolerance, record_rates=record_rates)
        self.lookahead_s = self.routes.min_route_latency_s()
        self._runs: dict[int, _Run] = {}
        self._run_of_event: dict[simpy.Event, _Run] = {}
        self._next_id = 0
        self._wakeup = self.env.event()
        self.deadline: float | None = None  # a time.perf_counter() value: past it, the next window raises
        # Windows and progress run in numpy until the windows are many, then compiled: numba's load (about 0.5 s
        # with the cached kernels) is paid only then, and pays back in about 5,000 windows; a 64-host training step
        # takes at most 5,000 windows, a 256-host des step 87,000.
        self._compiled = False
        self._closed = False  # ``run_alone``: no traffic but its run's; windows grow once that releases no more
        self.env.process(self._loop())

    def start(self, schedule: Schedule, hosts: np.ndarray | None = None, ready_s: np.ndarray | None = None,
              on_rank_done: RankCallback | None = None) -> simpy.Event:
        """Start a schedule; ``hosts[r]`` is the fabric host index of schedule rank r (default r).

        Rank r joins at ``ready_s[r]`` (>= now; default now; ``inf``: later, through ``release``).
        Returns a simpy event whose value is the ``RunResult``, triggered when the last rank finishes;
        ``on_rank_done`` hears of ranks as they finish, possibly before the clock reaches their end.
        """
        n = schedule.n_ranks
        hosts = np.arange(n) if hosts is None else np.asarray(hosts, dtype=np.int64)
        run = _Run(self._next_id, ScheduleProgress(schedule), hosts, self.env.event(), self.env.now, on_rank_done)
        if self._compiled:
            run.progress.use_compiled()
        self._next_id += 1
        self._runs[run.run_id] = run
        self._run_of_event[run.event] = run
        ready_s = np.full(n, self.env.now) if ready_s is None else np.asarray(ready_s, dtype=np.float64)
        now_ranks = np.nonzero(np.isfinite(ready_s))[0]
        self.release(run.event, now_ranks, ready_s[now_ranks])
        return run.event

    def run_alone(self, schedule: Schedule, hosts: np.ndarray | None = None) -> RunResult:
        """Run ``schedule`` from now to its end with nothing else on the network (the clock moves to its end).

        When no two of its messages can ever share a link while moving (``alone.ordered_routes``: a ring on a
        fat-tree, say), in closed form, with no events; otherwise as ``start`` runs it. Either way the same
        result and link figures, to rounding.
        """
        hosts = np.arange(schedule.n_ranks) if hosts is None else np.asarray(hosts, dtype=np.int64)
        idle = not self._runs and self.core.next_event_time() == np.inf
        recording = self.core.link_segments() is not None  # rate segments come from the event loop
        route_ids = ordered_routes(self.routes, schedule, hosts) if idle and not recording else None
        if route_ids is None:
            self._closed = idle  # nothing but this run's own releases can add traffic
            try:
                done = self.start(schedule, hosts)
                self.env.run(until=done)
            finally:
                self._closed = False
            return done.value
        result = run_ordered(self.routes, schedule, route_ids, self.env.now, self.core.work_per_byte)
        for step in schedule.steps:
            self.core.add_moved_alone(route_ids[id(step.pattern)], step.pattern.size_bytes, step.repeat)
        if result.end_s > self.env.now:
            self.env.run(until=result.end_s)
        return result

    def release(self, run_event: simpy.Event, ranks: np.ndarray, ready_s: np.ndarray) -> None:
        """Ranks of a started run join at ``ready_s`` (>= now), each exactly once."""
        run = self._run_of_event[run_event]
        ready_s = np.asarray(ready_s, dtype=np.float64)
        if len(ready_s) and ready_s.min() < self.env.now - time_eps(self.env.now):
            raise ValueError(f"a rank joins at {ready_s.min()} s, before now ({self.env.now} s)")
        self._submit(run, run.progress.release(ranks, np.maximum(ready_s, self.env.now)))
        self._report(run)
        if not self._wakeup.triggered:
            self._wakeup.succeed()

    def _routes(self, run: _Run, pattern: Pattern) -> np.ndarray:
        routes = run.routes.get(id(pattern))
        if routes is None:
            routes = self.routes.route_ids(run.hosts[pattern.src], run.hosts[pattern.dst])
            run.routes[id(pattern)] = routes
        return routes

    def _submit(self, run: _Run, released: Released) -> None:
        if not len(released.step):  # most completions release nothing: the rank still waits for others
            return
        for pattern, sel in run.progress.schedule.by_entry(released.step):
            msgs = released.message[sel]
            route = self._routes(run, pattern)[msgs]
            t_act = released.ready_s[sel] + self.routes.route_latency_s[route]
            self.core.add(route, pattern.size_bytes[msgs], t_act, run.run_id, (released.step[sel] << TAG_SHIFT) | msgs)

    def _loop(self):  # simpy process
        env = self.env
        while True:
            t_next = self.core.next_event_time()
            if t_next > env.now + time_eps(env.now):
                wake = self._wakeup
                if t_next < np.inf:  # a plain timer that fires the wake-up event: cheaper than a condition
                    env.timeout(t_next - env.now).callbacks.append(lambda _timer, wake=wake: wake.triggered
                                                                   or wake.succeed())
                yield wake
                self._wakeup = env.event()
                if self.core.next_event_time() > env.now + time_eps(env.now):
                    continue
            if self.deadline is not None and time.perf_counter() > self.deadline:
                raise FlowBudgetExceeded(f"flow level passed its deadline at t = {env.now:.6g} s simulated")
            if self._lone_windows():
                continue
            now = env.now
            horizon = now + self.lookahead_s
            if self._closed and not any(run.progress.releases_more for run in self._runs.values()):
                horizon = now + CLOSED_WINDOW * self.lookahead_s  # nothing can arrive: lookahead is not needed
            done = self.core.run_window(now, horizon)
            if not self._compiled and self.core.n_windows > COMPILED_WINDOWS:
                self._compiled = True
                self.core.use_compiled()
                for run in self._runs.values():
                    run.progress.use_compiled()
            for owner, sel in group_by(done.owner):
                run = self._runs[owner]
                tag = done.tag[sel]
                released = run.progress.complete(tag >> TAG_SHIFT, tag & ((1 << TAG_SHIFT) - 1), done.t_done[sel])
                self._submit(run, released)
                self._report(run)

    def _lone_windows(self) -> bool:
        """With one run on the network, run the windows of its lone messages in one compiled call
        (``FluidCore.lone_windows``) up to anything else's next event; whether any window ran."""
        if not self.core.compiled_windows or self._closed or len(self._runs) != 1:
            return False
        run = next(iter(self._runs.values()))
        if run.message_route is None:
            patterns = {id(step.pattern): step.pattern for step in run.progress.schedule.steps}.values()
            listed = sum(len(p) for p in patterns) <= LONE_MESSAGES and run.progress.compiled
            run.message_route = (np.concatenate([self._routes(run, p) for p in patterns]) if listed
                                 else np.zeros(0, np.int64))
        if not len(run.message_route):  # too many messages to list up front (or none): window by window
            return False
        windows, (state, finished, left) = self.core.lone_windows(
            self.env.now, self.env.peek(), self.lookahead_s, LONE_WINDOWS, run.run_id, TAG_SHIFT, run.message_route,
            run.progress.kernel_args())
        self._submit(run, run.progress.absorb(state, finished, left))
        self._report(run)
        return windows > 0

    def link_bytes(self) -> np.ndarray:
        """Bytes carried by each directed link by completed messages."""
        return self.core.link_bytes()

    def link_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per link: time with at least one flow (s) and peak utilization."""
        return self.core.link_busy_s, self.core.link_peak_util

    def link_segments(self) -> dict[str, np.ndarray] | None:
        """Each link's rate over time (``record_rates``), or None."""
        return self.core.link_segments()

    def _report(self, run: _Run) -> None:
        """Tell the run's owner which ranks finished; finish the run when all have."""
        ranks = run.progress.take_finished()
        if len(ranks) and run.on_rank_done is not None:
            run.on_rank_done(ranks, run.progress.rank_time_s[ranks])
        if run.progress.done and run.run_id in self._runs:
            self._finish(run)

    def _finish(self, run: _Run) -> None:
        del self._runs[run.run_id]
        del self._run_of_event[run.event]
        progress = run.progress
        result = RunResult(
            start_s=run.start_s, end_s=progress.end_s, rank_end_s=progress.rank_time_s.copy(),
            sent_bytes=progress.sent_bytes, received_bytes=progress.received_bytes)
        delay = max(result.end_s - self.env.now, 0.0)
        self.env.timeout(delay).callbacks.append(lambda _event: run.event.succeed(result))
