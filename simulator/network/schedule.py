"""Point-to-point transfer schedules: what a collective algorithm lowers to, and what backends run.

A ``Schedule`` is a sequence of steps over ranks 0..n_ranks-1. Step k is a ``Pattern`` of messages
(src rank, dst rank, bytes). Dependencies are per rank, as real libraries run them, never a global
barrier: a message that rank r sends in step k starts once r has finished all its steps before k, and
r finishes step k when every message it sends or receives in step k has arrived. A rank with nothing to
do in a step passes through it at once. Repeated identical steps are stored once with a repeat count,
so a 4,096-rank ring (8,190 steps) costs one pattern of memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass(frozen=True, eq=False)
class Pattern:
    """One round of messages: message i goes ``src[i] -> dst[i]`` and carries ``size_bytes[i]`` bytes.

    Self-messages (src == dst) cost nothing and are dropped on construction.
    """

    n_ranks: int
    src: np.ndarray
    dst: np.ndarray
    size_bytes: np.ndarray

    @staticmethod
    def of(n_ranks: int, src: np.ndarray | list[int], dst: np.ndarray | list[int],
           size_bytes: np.ndarray | list[float] | float) -> Pattern:
        src_a = np.asarray(src, dtype=np.int32)
        dst_a = np.asarray(dst, dtype=np.int32)
        keep = src_a != dst_a
        every = bool(keep.all())  # then no masked copies (millions of messages)
        if not every:
            src_a, dst_a = src_a[keep], dst_a[keep]
        if np.ndim(size_bytes) == 0:  # one size: a read-only view of one value, no array per message
            return Pattern(n_ranks, src_a, dst_a, np.broadcast_to(np.float64(size_bytes), src_a.shape))
        size_a = np.broadcast_to(np.asarray(size_bytes, dtype=np.float64), keep.shape)
        return Pattern(n_ranks, src_a, dst_a, np.array(size_a if every else size_a[keep]))

    def __len__(self) -> int:
        return len(self.src)

    @cached_property
    def involvement(self) -> np.ndarray:
        """Number of messages each rank sends or receives in this pattern."""
        return np.bincount(self.src, minlength=self.n_ranks) + np.bincount(self.dst, minlength=self.n_ranks)

    @cached_property
    def by_sender(self) -> tuple[np.ndarray, np.ndarray]:
        """(message indices sorted by sender, CSR pointer per rank) to release one rank's sends."""
        order = np.argsort(self.src, kind="stable")
        return order, np.searchsorted(self.src[order], np.arange(self.n_ranks + 1))


@dataclass(frozen=True)
class Step:
    """A pattern run ``repeat`` times in a row (each round depends on the previous one per rank)."""

    pattern: Pattern
    repeat: int = 1


@dataclass
class Schedule:
    """Steps of point-to-point messages over ``n_ranks`` ranks, with per-rank dependencies.

    ``shape`` (optional) names what built the schedule such that every message size is proportional to
    ``size_bytes``: two schedules of one shape differ only by that scale (collectives set it), which lets
    the analytical backend reuse one profile for both.
    """

    n_ranks: int
    steps: list[Step] = field(default_factory=list)
    shape: tuple | None = None
    size_bytes: float = 0.0

    def add(self, pattern: Pattern, repeat: int = 1) -> None:
        if repeat > 0:
            self.steps.append(Step(pattern, repeat))

    @cached_property
    def step_ends(self) -> np.ndarray:
        """Entry e of ``steps`` holds the (expanded) steps below ``step_ends[e]``."""
        return np.cumsum([s.repeat for s in self.steps], dtype=np.int64)

    @property
    def n_steps(self) -> int:
        """Total number of steps, repeats expanded."""
        return int(self.step_ends[-1]) if self.steps else 0

    def entry_of(self, step: np.ndarray) -> np.ndarray:
        """Index into ``steps`` of each (expanded) step number."""
        return np.searchsorted(self.step_ends, step, side="right")

    def by_entry(self, step: np.ndarray) -> list[tuple[Pattern, np.ndarray | slice]]:
        """Group step numbers by the schedule entry they belong to: (pattern, selector) pairs."""
        if len(self.steps) == 1:
            return [(self.steps[0].pattern, slice(None))]
        return [(self.steps[int(e)].pattern, sel) for e, sel in group_by(self.entry_of(step))]

    def pattern_at(self, step: int) -> Pattern:
        """The pattern of (expanded) step number ``step``."""
        return self.steps[int(self.entry_of(step))].pattern

    def total_bytes(self) -> float:
        """Bytes put on the wire by all messages of all steps."""
        return float(sum(s.repeat * s.pattern.size_bytes.sum() for s in self.steps))

    def n_messages(self) -> int:
        return int(sum(s.repeat * len(s.pattern) for s in self.steps))

    def bytes_by_rank(self) -> tuple[np.ndarray, np.ndarray]:
        """(bytes sent, bytes received) by each rank over all steps (computed once per set of steps)."""
        cached = self.__dict__.get("_bytes_by_rank")
        if cached is not None and cached[0] == len(self.steps):
            return cached[1]
        sent, received = np.zeros(self.n_ranks), np.zeros(self.n_ranks)
        for step in self.steps:
            p = step.pattern
            sent += step.repeat * np.bincount(p.src, weights=p.size_bytes, minlength=self.n_ranks)
            received += step.repeat * np.bincount(p.dst, weights=p.size_bytes, minlength=self.n_ranks)
        self.__dict__["_bytes_by_rank"] = (len(self.steps), (sent, received))
        return sent, received


def group_by(keys: np.ndarray) -> list[tuple[int, np.ndarray | slice]]:
    """(key, selector) for each distinct key; the selector is ``slice(None)`` when all keys are equal."""
    if len(keys) == 0:
        return []
    first = keys[0]
    if np.all(keys == first):
        return [(int(first), slice(None))]
    return [(int(k), keys == k) for k in np.unique(keys)]
