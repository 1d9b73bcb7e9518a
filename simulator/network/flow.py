"""The flow-level backend: schedules run on the fluid core, driven by a simpy process.

One simpy process owns the network. It sleeps until the next network event, processes a lookahead
window in one batch (see ``fluid``), hands completed messages to each run's per-rank progress, queues
what they release, and fires each run's simpy event at the exact time the run ends. Other simpy
processes (the training engine) start runs at any time; a run started at t has no message moving
before t + L_min, so it never disturbs a window already processed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import simpy

from simulator.fabric import Fabric
from simulator.network.fluid import FluidCore, time_eps
from simulator.network.progress import TAG_SHIFT, Released, ScheduleProgress
from simulator.network.result import RunResult
from simulator.schedule import Pattern, Schedule, group_by


@dataclass
class _Run:
    run_id: int
    progress: ScheduleProgress
    hosts: np.ndarray
    event: simpy.Event
    routes: dict[int, np.ndarray] = field(default_factory=dict)


class FlowNetwork:
    """Max-min fair flow-level network over a fabric, running inside a simpy environment."""

    fidelity = "flow"

    def __init__(self, fabric: Fabric, env: simpy.Environment | None = None, check_capacity: bool = False,
                 incremental: bool = True) -> None:
        self.fabric = fabric
        self.env = env if env is not None else simpy.Environment()
        self.core = FluidCore(fabric, check_capacity=check_capacity, incremental=incremental)
        self.lookahead_s = fabric.min_route_latency_s()
        self._runs: dict[int, _Run] = {}
        self._next_id = 0
        self._wakeup = self.env.event()
        self.env.process(self._loop())

    def start(self, schedule: Schedule, hosts: np.ndarray | None = None) -> simpy.Event:
        """Start a schedule now; ``hosts[r]`` is the fabric host index of schedule rank r (default r).

        Returns a simpy event whose value is the ``RunResult``, triggered when the last rank finishes.
        """
        hosts = np.arange(schedule.n_ranks) if hosts is None else np.asarray(hosts, dtype=np.int64)
        run = _Run(self._next_id, ScheduleProgress(schedule, self.env.now), hosts, self.env.event())
        self._next_id += 1
        self._runs[run.run_id] = run
        self._submit(run, run.progress.start())
        if run.progress.done:
            self._finish(run)
        elif not self._wakeup.triggered:
            self._wakeup.succeed()
        return run.event

    def _routes(self, run: _Run, pattern: Pattern) -> np.ndarray:
        routes = run.routes.get(id(pattern))
        if routes is None:
            routes = self.fabric.route_ids(run.hosts[pattern.src], run.hosts[pattern.dst])
            run.routes[id(pattern)] = routes
        return routes

    def _submit(self, run: _Run, released: Released) -> None:
        for pattern, sel in run.progress.schedule.by_entry(released.step):
            msgs = released.message[sel]
            route = self._routes(run, pattern)[msgs]
            t_act = released.ready_s[sel] + self.fabric.route_latency_s[route]
            self.core.add(route, pattern.size_bytes[msgs], t_act, np.full(len(msgs), run.run_id),
                          (released.step[sel] << TAG_SHIFT) | msgs)

    def _loop(self):  # simpy process
        env = self.env
        while True:
            t_next = self.core.next_event_time()
            if t_next > env.now + time_eps(env.now):
                wake = self._wakeup
                if t_next == np.inf:
                    yield wake
                else:
                    yield env.timeout(t_next - env.now) | wake
                if wake.triggered:
                    self._wakeup = env.event()
                if self.core.next_event_time() > env.now + time_eps(env.now):
                    continue
            now = env.now
            done = self.core.run_window(now, now + self.lookahead_s)
            for owner, sel in group_by(done.owner):
                run = self._runs[owner]
                tag = done.tag[sel]
                released = run.progress.complete(tag >> TAG_SHIFT, tag & ((1 << TAG_SHIFT) - 1), done.t_done[sel])
                self._submit(run, released)
                if run.progress.done:
                    self._finish(run)

    def link_bytes(self) -> np.ndarray:
        """Bytes carried by each directed link by completed messages."""
        return self.core.link_bytes()

    def _finish(self, run: _Run) -> None:
        del self._runs[run.run_id]
        progress = run.progress
        result = RunResult(
            start_s=float(progress.start_s), end_s=progress.end_s, rank_end_s=progress.rank_time_s.copy(),
            sent_bytes=progress.sent_bytes, received_bytes=progress.received_bytes)
        delay = max(result.end_s - self.env.now, 0.0)
        self.env.timeout(delay).callbacks.append(lambda _event: run.event.succeed(result))
