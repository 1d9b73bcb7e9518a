"""Runs a step graph on a network backend: per-rank list scheduling, driven by simpy.

An op starts on rank r when its dependencies have ended on r and the previous op of its stream on r has
ended (of any stream, on a serial rank: ``StepGraph.serial``). A compute op then ends ``duration`` later
(arithmetic: nothing else shares a rank's compute stream). A communication op's rank joins the op's
schedule on the network at that moment, and ends when the network says that rank's part is done. Ops of a
first-come-first-served stream (``StepGraph.fifo``: a PS server's threads) instead join their rank's pool at
their ready time, in simulated time, and start when one of its workers is free. When the ranks share one
machine's cores (``StepGraph.cores``: the executor's CPU testbed), every compute op runs in simulated time
under processor sharing (``cpu_sharing``): it ends when its work is done at the speed its share allows.
The network runs in simpy time and reports ranks as they finish; everything else is computed in batches
of ranks with numpy, so a 1,024-rank step costs a few thousand vectorized updates, not a simpy process per
rank.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
import simpy

from simulator.compute.cpu_sharing import SharedCores
from simulator.core.stepgraph import StepGraph
from simulator.network import Network
from simulator.network.schedule import group_by

SERIAL = "<serial>"  # the one stream of every op of a serial rank (``StepGraph.serial``)
TRACE_COLUMNS = ["rank", "op", "kind", "category", "step", "start_s", "end_s", "bytes_sent", "bytes_received",
                 "stream"]


@dataclass
class EngineResult:
    """What a run produced: per (op, rank) arrays, the network's bytes per directed link, the makespan.

    ``rows`` holds equal-length numpy columns: ``op`` (index into ``graph.ops``), ``rank``, ``start_s``,
    ``end_s``, ``bytes_sent``, ``bytes_received``. ``trace`` is the same as a pandas table, with the op's
    name, kind, category, step and stream (built on first use: sweeps that only need a summary skip it).
    """

    graph: StepGraph
    rows: dict[str, np.ndarray]
    link_bytes: np.ndarray
    makespan_s: float
    _trace: pd.DataFrame | None = None

    @property
    def trace(self) -> pd.DataFrame:
        if self._trace is None:
            self._trace = trace_frame(self.graph, self.rows)
        return self._trace


def trace_frame(graph: StepGraph, rows: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per op per rank (``TRACE_COLUMNS``); times in s, bytes per rank."""
    ops = graph.ops
    index = rows["op"]

    def per_op(values: list, categorical: bool = True) -> pd.Series | np.ndarray:
        if not categorical:
            return np.asarray(values)[index]
        labels = list(dict.fromkeys(values))
        codes = np.array([labels.index(v) for v in values], dtype=np.int32)
        return pd.Categorical.from_codes(codes[index] if len(index) else codes[:0], categories=labels)

    return pd.DataFrame({
        "rank": rows["rank"], "op": per_op([op.name for op in ops]), "kind": per_op([op.kind for op in ops]),
        "category": per_op([op.category for op in ops]),
        "step": per_op([op.step for op in ops], categorical=False) if ops else np.zeros(0, dtype=np.int64),
        "start_s": rows["start_s"], "end_s": rows["end_s"], "bytes_sent": rows["bytes_sent"],
        "bytes_received": rows["bytes_received"], "stream": per_op([op.stream for op in ops])},
        columns=TRACE_COLUMNS)


@dataclass
class _Pool:
    """A rank's first-come-first-served stream: ``workers`` at once, the rest ``waiting`` (op, position)."""

    workers: int
    busy: int = 0
    waiting: deque[tuple[int, int]] = field(default_factory=deque)


class Engine:
    """Runs one ``StepGraph`` on ``network`` (its simpy environment is the clock)."""

    def __init__(self, graph: StepGraph, network: Network, hosts: np.ndarray | None = None) -> None:
        """``hosts[r]`` is the fabric host index of graph rank r (default: r)."""
        self.graph = graph
        self.network = network
        self.env: simpy.Environment = network.env
        self.hosts = np.arange(graph.n_ranks) if hosts is None else np.asarray(hosts, dtype=np.int64)
        ops = graph.ops
        self._pos = []
        for op in ops:
            pos = np.full(graph.n_ranks, -1, dtype=np.int32)
            pos[op.ranks] = np.arange(len(op.ranks))
            self._pos.append(pos)
        self._succ: list[list[tuple[int, np.ndarray]]] = [[] for _ in ops]
        self._stream_next = [np.full(len(op.ranks), -1, dtype=np.int64) for op in ops]
        self._waiting = [np.zeros(len(op.ranks), dtype=np.int64) for op in ops]
        last = {key: np.full(graph.n_ranks, -1, dtype=np.int64) for key in {op.stream for op in ops} | {SERIAL}}
        serial = np.zeros(graph.n_ranks, dtype=bool)
        serial[graph.serial] = True
        for op in ops:
            waiting = self._waiting[op.index]
            for d in op.deps:
                mapping = self._pos[op.index][ops[d].ranks]
                self._succ[d].append((op.index, mapping))
                waiting[mapping[mapping >= 0]] += 1
            if op.stream in graph.fifo:  # ordered by arrival at the pool, not by program order
                continue
            on_serial = serial[op.ranks]
            for key, chained in ((op.stream, ~on_serial), (SERIAL, on_serial)):
                ranks = op.ranks[chained]
                if not len(ranks):
                    continue
                prev = last[key][ranks]
                waiting[np.nonzero(chained)[0][prev >= 0]] += 1
                for p, sel in group_by(prev):
                    if p >= 0:
                        self._stream_next[p][self._pos[p][ranks[sel]]] = op.index
                last[key][ranks] = op.index
        self._ready_s = [np.zeros(len(op.ranks)) for op in ops]
        self.start_s = [np.full(len(op.ranks), np.nan) for op in ops]
        self.end_s = [np.full(len(op.ranks), np.nan) for op in ops]
        self._runs: dict[int, simpy.Event] = {}
        self._queue: deque[tuple[int, np.ndarray, np.ndarray]] = deque()
        self._draining = False
        self._total = self._remaining = sum(len(op.ranks) for op in ops)
        self._progress: Callable[[int, int], None] | None = None
        self._report_at = 0
        self._all_done = self.env.event()
        self._t0: float | None = None
        self._pools: dict[tuple[int, str], _Pool] = {}
        self._cores = SharedCores(self.env, graph.cores) if graph.cores else None

    def run(self, progress: Callable[[int, int], None] | None = None) -> EngineResult:
        """Run the graph from the current simulated time to its end. ``progress(done, total)`` is called as
        (op, rank) pairs finish, at most about every 1% of them, and at the end."""
        self.start(progress)
        if self._remaining:
            self.env.run(until=self._all_done)
        return self.finish()

    def start(self, progress: Callable[[int, int], None] | None = None) -> simpy.Event:
        """Start the graph at the current simulated time: schedule every op that waits for nothing. Returns
        ``all_done``. Several engines on one network's environment run concurrently: start each (at its
        time), ``env.run(until=env.all_of([...all_done]))``, then ``finish`` each."""
        self._progress, self._report_at = progress, 0
        self._t0 = t0 = self.env.now
        for ready in self._ready_s:
            ready[:] = t0
        # Collected before any start: starting one op may complete others (and start what they release).
        free = [(op.index, np.nonzero(self._waiting[op.index] == 0)[0]) for op in self.graph.ops]
        self._draining = True
        for index, pos in free:
            if len(pos):
                self._start(index, pos)
        self._draining = False
        self._drain()
        if not self._remaining and not self._all_done.triggered:  # an empty graph
            self._all_done.succeed()
        return self._all_done

    @property
    def all_done(self) -> simpy.Event:
        """Triggered when every (op, rank) of the graph has ended (possibly before the clock reaches that end)."""
        return self._all_done

    def finish(self) -> EngineResult:
        """The result of a started run once ``all_done`` has triggered; its makespan is from its own start
        (``link_bytes`` are the network's: every run's on it)."""
        if self._t0 is None:
            raise RuntimeError("finish() before start()")
        if self._remaining:
            raise RuntimeError("step graph deadlocked: some ops never became ready")
        t0 = self._t0
        end = float(max((e.max() for e in self.end_s if len(e)), default=t0))
        return EngineResult(self.graph, self.rows(), self.network.link_bytes(), end - t0)

    def rows(self) -> dict[str, np.ndarray]:
        """Per (op, rank) columns of the run (see ``EngineResult``)."""
        ops = self.graph.ops
        if not ops:
            return {name: np.zeros(0) for name in ("op", "rank", "start_s", "end_s", "bytes_sent", "bytes_received")}
        sent, received = zip(*(op.bytes_by_rank() for op in ops), strict=True)
        return {"op": np.repeat(np.arange(len(ops)), [len(op.ranks) for op in ops]),
                "rank": np.concatenate([op.ranks for op in ops]), "start_s": np.concatenate(self.start_s),
                "end_s": np.concatenate(self.end_s), "bytes_sent": np.concatenate(sent),
                "bytes_received": np.concatenate(received)}

    # ----- scheduling -------------------------------------------------------------------------------
    def _start(self, index: int, pos: np.ndarray) -> None:
        """Ranks ``pos`` of op ``index`` may start (at their ready times)."""
        op = self.graph.ops[index]
        t = self._ready_s[index][pos]
        if op.stream in self.graph.fifo:
            for p, ready in zip(pos.tolist(), t.tolist(), strict=True):
                self.env.timeout(max(ready - self.env.now, 0.0)).callbacks.append(
                    lambda _event, p=p: self._arrive(index, p))
            return
        self.start_s[index][pos] = t
        if op.duration_s is not None and self._cores is not None:
            for p, ready in zip(pos.tolist(), t.tolist(), strict=True):
                self.env.timeout(max(ready - self.env.now, 0.0)).callbacks.append(
                    lambda _event, p=p: self._cores.join(op.duration_s[p], partial(self._computed, index, p)))
            return
        if op.duration_s is not None:
            self._queue.append((index, pos, t + op.duration_s[pos]))
            return
        run = self._runs.get(index)
        if run is None:
            ready = np.full(len(op.ranks), np.inf)
            ready[pos] = t
            self._runs[index] = self.network.start(op.schedule, self.hosts[op.ranks], ready,
                                                   on_rank_done=partial(self._comm_done, index))
        else:
            self.network.release(run, pos, t)

    def _arrive(self, index: int, p: int) -> None:
        """Op ``index`` on its rank at position ``p`` joins its rank's pool, at its ready time (now)."""
        op = self.graph.ops[index]
        key = (int(op.ranks[p]), op.stream)
        pool = self._pools.setdefault(key, _Pool(self.graph.fifo[op.stream]))
        pool.waiting.append((index, p))
        self._dispatch(pool)

    def _dispatch(self, pool: _Pool) -> None:
        """Start waiting ops, first come first served, while the pool has a free worker."""
        while pool.waiting and pool.busy < pool.workers:
            index, p = pool.waiting.popleft()
            pool.busy += 1
            now, duration = self.env.now, float(self.graph.ops[index].duration_s[p])
            self.start_s[index][p] = now
            if self._cores is not None:
                self._cores.join(duration, partial(self._served, pool, index, p))
                continue
            self.env.timeout(duration).callbacks.append(lambda _event, pool=pool: self._free(pool))
            self._queue.append((index, np.array([p]), np.array([now + duration])))
        self._drain()

    def _free(self, pool: _Pool) -> None:
        pool.busy -= 1
        self._dispatch(pool)

    def _computed(self, index: int, p: int, end_s: float) -> None:
        """A compute op on shared cores is done on its rank at position ``p``."""
        self._queue.append((index, np.array([p]), np.array([end_s])))
        self._drain()

    def _served(self, pool: _Pool, index: int, p: int, end_s: float) -> None:
        self._computed(index, p, end_s)
        self._free(pool)

    def _comm_done(self, index: int, pos: np.ndarray, end_s: np.ndarray) -> None:
        self._queue.append((index, np.asarray(pos), np.asarray(end_s)))
        self._drain()

    def _drain(self) -> None:
        """Resolve queued rank completions and everything they make ready (re-entrant safe)."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue:
                self._resolve(*self._queue.popleft())
        finally:
            self._draining = False

    def _resolve(self, index: int, pos: np.ndarray, end_s: np.ndarray) -> None:
        self.end_s[index][pos] = end_s
        self._remaining -= len(pos)
        if self._progress is not None and (self._total - self._remaining >= self._report_at or not self._remaining):
            self._progress(self._total - self._remaining, self._total)
            self._report_at = self._total - self._remaining + max(1, self._total // 100)
        for succ, mapping in self._succ[index]:
            j = mapping[pos]
            hit = j >= 0
            if hit.any():
                self._satisfy(succ, j[hit], end_s[hit])
        nxt = self._stream_next[index][pos]
        ranks = self.graph.ops[index].ranks[pos]
        for succ, sel in group_by(nxt):
            if succ >= 0:
                self._satisfy(succ, self._pos[succ][ranks[sel]], end_s[sel])
        if self._remaining == 0 and not self._all_done.triggered:
            self._all_done.succeed()

    def _satisfy(self, index: int, pos: np.ndarray, t: np.ndarray) -> None:
        """One predecessor of op ``index`` ended at ``t`` on ranks ``pos``."""
        np.maximum.at(self._ready_s[index], pos, t)
        np.subtract.at(self._waiting[index], pos, 1)
        go = pos[self._waiting[index][pos] == 0]
        if len(go):
            self._start(index, np.unique(go))
