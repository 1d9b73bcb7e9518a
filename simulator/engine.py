"""Runs a step graph on a network backend: per-rank list scheduling, driven by simpy.

An op starts on rank r when its dependencies have ended on r and the previous op of its stream on r has
ended. A compute op then ends ``duration`` later (arithmetic: nothing else shares a rank's compute
stream). A communication op's rank joins the op's schedule on the network at that moment, and ends when
the network says that rank's part is done. The network runs in simpy time and reports ranks as they
finish; everything else is computed in batches of ranks with numpy, so a 1,024-rank step costs a few
thousand vectorized updates, not a simpy process per rank.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import simpy

from simulator.network import Network
from simulator.schedule import group_by
from simulator.stepgraph import StepGraph

TRACE_COLUMNS = ["rank", "op", "kind", "category", "step", "start_s", "end_s", "bytes_sent", "bytes_received"]


@dataclass
class EngineResult:
    """The trace (one row per op per rank) and the network's bytes per directed link."""

    trace: pd.DataFrame
    link_bytes: np.ndarray
    makespan_s: float


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
            pos = np.full(graph.n_ranks, -1, dtype=np.int64)
            pos[op.ranks] = np.arange(len(op.ranks))
            self._pos.append(pos)
        self._succ: list[list[tuple[int, np.ndarray]]] = [[] for _ in ops]
        self._stream_next = [np.full(len(op.ranks), -1, dtype=np.int64) for op in ops]
        self._waiting = [np.zeros(len(op.ranks), dtype=np.int64) for op in ops]
        last = {op.stream: np.full(graph.n_ranks, -1, dtype=np.int64) for op in ops}
        for op in ops:
            waiting = self._waiting[op.index]
            for d in op.deps:
                mapping = self._pos[op.index][ops[d].ranks]
                self._succ[d].append((op.index, mapping))
                waiting[mapping[mapping >= 0]] += 1
            prev = last[op.stream][op.ranks]
            waiting[prev >= 0] += 1
            for p, sel in group_by(prev):
                if p >= 0:
                    self._stream_next[p][self._pos[p][op.ranks[sel]]] = op.index
            last[op.stream][op.ranks] = op.index
        self._ready_s = [np.zeros(len(op.ranks)) for op in ops]
        self.start_s = [np.full(len(op.ranks), np.nan) for op in ops]
        self.end_s = [np.full(len(op.ranks), np.nan) for op in ops]
        self._runs: dict[int, simpy.Event] = {}
        self._queue: deque[tuple[int, np.ndarray, np.ndarray]] = deque()
        self._draining = False
        self._remaining = sum(len(op.ranks) for op in ops)
        self._all_done = self.env.event()

    def run(self) -> EngineResult:
        """Run the graph from the current simulated time to its end."""
        t0 = self.env.now
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
        if self._remaining:
            self.env.run(until=self._all_done)
        if self._remaining:
            raise RuntimeError("step graph deadlocked: some ops never became ready")
        return EngineResult(self.trace(), self.network.link_bytes(), float(max(
            (e.max() for e in self.end_s if len(e)), default=t0)) - t0)

    def trace(self) -> pd.DataFrame:
        """One row per op per rank (see ``TRACE_COLUMNS``); times in s, bytes per rank."""
        parts = []
        for op in self.graph.ops:
            sent, received = op.bytes_by_rank()
            parts.append(pd.DataFrame({
                "rank": op.ranks, "op": op.name, "kind": op.kind, "category": op.category, "step": op.step,
                "start_s": self.start_s[op.index], "end_s": self.end_s[op.index], "bytes_sent": sent,
                "bytes_received": received}))
        if not parts:
            return pd.DataFrame(columns=TRACE_COLUMNS)
        trace = pd.concat(parts, ignore_index=True)
        for column in ("op", "kind", "category"):
            trace[column] = trace[column].astype("category")
        return trace

    # ----- scheduling -------------------------------------------------------------------------------
    def _start(self, index: int, pos: np.ndarray) -> None:
        """Ranks ``pos`` of op ``index`` may start (at their ready times)."""
        op = self.graph.ops[index]
        t = self._ready_s[index][pos]
        self.start_s[index][pos] = t
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
