"""Processor sharing: the compute ops of ranks that share one machine's cores (the executor's CPU testbed).

A machine has ``cores`` cores. While n ops run on it, each progresses at ``min(1, cores / n)`` of its own
speed (egalitarian processor sharing, each op at most one core: a rank is one thread). An op's duration is
its work at full speed (s); it ends when that work is done. With n <= cores nothing changes; with n ranks
computing at once on fewer cores, n ops of equal work d all end at ``d * n / cores``. An op that waits in a
blocking collective holds no core (it is not a compute op).

>>> import simpy
>>> env = simpy.Environment()
>>> cpu, ends = SharedCores(env, cores=1), []
>>> for work_s in (1.0, 2.0):
...     cpu.join(work_s, ends.append)
>>> env.run()
>>> ends  # both at half speed until the first is done at 2 s; the second then alone: 1 s of work left
[2.0, 3.0]
"""

from __future__ import annotations

from collections.abc import Callable

import simpy

DONE_S = 1e-12  # work left under which an op is done, relative to the clock (at least 1 s): float residue


class SharedCores:
    """One machine's ``cores`` shared by the ops running on it, in ``env``'s time."""

    def __init__(self, env: simpy.Environment, cores: int) -> None:
        if cores < 1:
            raise ValueError(f"cores: got {cores}; allowed: >= 1")
        self.env, self.cores = env, cores
        self._running: dict[int, tuple[float, Callable[[float], None]]] = {}  # id -> (work left s, on_done)
        self._next_id = self._generation = 0
        self._since = 0.0

    def rate(self) -> float:
        """The speed of each running op (1: a core of its own)."""
        return min(1.0, self.cores / len(self._running)) if self._running else 1.0

    def join(self, work_s: float, on_done: Callable[[float], None]) -> None:
        """Start an op of ``work_s`` seconds of work now; ``on_done(end_s)`` is called when it is done."""
        self._advance()
        self._running[self._next_id] = (float(work_s), on_done)
        self._next_id += 1
        self._reschedule()

    def _advance(self) -> None:
        elapsed = (self.env.now - self._since) * self.rate()
        self._running = {k: (left - elapsed, done) for k, (left, done) in self._running.items()}
        self._since = self.env.now

    def _reschedule(self) -> None:
        self._generation += 1  # an earlier wake-up is stale: the set of running ops has changed since
        if self._running:
            soonest = min(left for left, _ in self._running.values())
            wake = self.env.timeout(max(soonest, 0.0) / self.rate())
            wake.callbacks.append(lambda _event, generation=self._generation: self._wake(generation))

    def _wake(self, generation: int) -> None:
        if generation != self._generation:
            return
        self._advance()
        residue = DONE_S * max(1.0, self.env.now)  # a clock's float step grows with it: never wake for less
        done = [k for k, (left, _) in self._running.items() if left <= residue]
        callbacks = [self._running.pop(k)[1] for k in done]
        self._reschedule()
        for on_done in callbacks:
            on_done(self.env.now)
