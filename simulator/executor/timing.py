"""Where an executor rank's step time goes, by the simulator's op categories.

A rank brackets each phase of its step with ``timer.op(category)`` (``compute.forward``, ``des.partials``,
...: the categories the strategies' step graphs use); the communicator does it for every collective. Time is
exclusive: a phase inside another one is taken out of the outer one, and time outside every phase (Python
between phases) is ``OTHER``, so a step's categories add up to its wall time.

How it is measured: each phase boundary is a timestamp. On the CPU every torch op is synchronous and a
timestamp is ``time.perf_counter()`` (~0.1 us). On a GPU it is a CUDA event recorded on the current stream
(a few us of launch, no synchronization), and the step synchronizes once at its end, which its wall time
needs anyway; a collective is enqueued on NCCL's stream, and the current stream waits for it, so the event
after it marks its end. Nothing else is synchronized: the timers cost no overlap the step would have had.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from simulator.executor import tensors

OTHER = "other"  # step time outside every timed phase


class StepTimer:
    """Per step: wall seconds (``step_s``) and seconds per category (``ops``)."""

    def __init__(self) -> None:
        self.cuda = tensors.device().type == "cuda"
        self.step_s: list[float] = []
        self.ops: list[dict[str, float]] = []
        self._stack: list[str] = []
        self._marks: list[tuple[object, str]] = []  # (timestamp, category running from it on)
        self._started: float | None = None

    def _mark(self) -> None:
        category = self._stack[-1] if self._stack else OTHER
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._marks.append((event, category))
        else:
            self._marks.append((time.perf_counter(), category))

    def begin(self) -> None:
        """Start a step (after the barrier that lines the ranks up)."""
        if self.cuda:
            torch.cuda.synchronize()
        self._stack.clear()
        self._marks.clear()
        self._started = time.perf_counter()
        self._mark()

    def end(self) -> float:
        """End the step; its wall seconds."""
        if self._started is None:
            raise RuntimeError("StepTimer.end without begin")
        self._stack.clear()
        self._mark()
        if self.cuda:
            torch.cuda.synchronize()
        wall_s = time.perf_counter() - self._started
        spent: dict[str, float] = defaultdict(float)
        for (at, category), (until, _) in zip(self._marks, self._marks[1:], strict=False):
            spent[category] += at.elapsed_time(until) / 1e3 if self.cuda else until - at
        self.step_s.append(wall_s)
        self.ops.append(dict(spent))
        self._started = None
        return wall_s

    @contextmanager
    def op(self, category: str) -> Iterator[None]:
        """Time what runs inside as ``category`` (only while a step is running; else untimed)."""
        if self._started is None:
            yield
            return
        self._stack.append(category)
        self._mark()
        try:
            yield
        finally:
            self._stack.pop()
            self._mark()
