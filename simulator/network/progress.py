"""Per-rank progress through a Schedule: which messages may start, and when (vectorized over ranks).

A rank takes part once it is released (at its own time: the moment its inputs are ready). Rank r
then sits at step ``cursor[r]``: it has released its sends of that step and waits for every message
it sends or receives in it. When they have all arrived it moves on, releasing its next step's sends at
``rank_time_s[r]``, the moment its previous step ended. Steps in which a rank has nothing to do pass
at once. Ranks drift apart by many steps on real topologies, so the steps in flight live in a ring
buffer indexed (step mod W, rank) and every update is one vectorized operation across steps.

A call costs about 50 us in numpy, mostly fixed costs of small array operations; a run of many windows
switches to compiled kernels over the same state (``use_compiled``, ``compiled.complete_progress``: about
12 us a call), which release the same messages in the same order, so results stay identical to the bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from simulator.network.fabric import gather_ranges
from simulator.network.schedule import Schedule

TAG_SHIFT = 32


@dataclass
class Released:
    """Messages that may start: step number, message index in its pattern, ready time (s)."""

    step: np.ndarray
    message: np.ndarray
    ready_s: np.ndarray


class FlatSchedule(NamedTuple):
    """A schedule as arrays, for the compiled progress (``compiled.advance_progress``): entry e holds the steps
    below ``step_ends[e]`` and pattern ``entry_pattern[e]``; pattern p's messages are ``msg_off[p]:msg_off[p+1]``
    of ``src``/``dst``/``size``, its involvement per rank ``involvement[p]`` and its sends by rank r
    ``sender_order[msg_off[p] + sender_ptr[p, r] : ... + sender_ptr[p, r + 1]]`` (``Pattern.by_sender``)."""

    step_ends: np.ndarray
    entry_pattern: np.ndarray
    msg_off: np.ndarray
    sender_ptr: np.ndarray
    sender_order: np.ndarray
    involvement: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    size: np.ndarray

    @staticmethod
    def of(schedule: Schedule) -> FlatSchedule:
        index: dict[int, int] = {}
        patterns = []
        for step in schedule.steps:
            if id(step.pattern) not in index:
                index[id(step.pattern)] = len(patterns)
                patterns.append(step.pattern)
        counts = [len(p) for p in patterns]
        return FlatSchedule(
            step_ends=schedule.step_ends,
            entry_pattern=np.array([index[id(s.pattern)] for s in schedule.steps], dtype=np.int64),
            msg_off=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            sender_ptr=np.array([p.by_sender[1] for p in patterns], dtype=np.int64),
            sender_order=np.concatenate([p.by_sender[0] for p in patterns]).astype(np.int64),
            involvement=np.array([p.involvement for p in patterns], dtype=np.int64),
            src=np.concatenate([p.src for p in patterns]).astype(np.int64),
            dst=np.concatenate([p.dst for p in patterns]).astype(np.int64),
            size=np.concatenate([p.size_bytes for p in patterns]).astype(np.float64))


class ScheduleProgress:
    """Tracks one run of a schedule; the network feeds it completions and starts what it releases."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        n = schedule.n_ranks
        self.n_steps = schedule.n_steps
        self.released = np.zeros(n, dtype=bool)
        self.cursor = np.zeros(n, dtype=np.int64)
        self.rank_time_s = np.full(n, np.inf)
        self.sent_bytes = np.zeros(n)
        self.received_bytes = np.zeros(n)
        self._width = 8
        self._outstanding = np.zeros((self._width, n), dtype=np.int64)
        self._last_arrival_s = np.zeros((self._width, n))
        self._slot_step = np.full(self._width, -1, dtype=np.int64)
        self._out: list[Released] = []
        self._finished: list[np.ndarray] = []
        self.n_finished = 0
        self._flat: FlatSchedule | None = None  # set by ``use_compiled``

    def use_compiled(self) -> None:
        """From now on, advance ranks with the compiled kernels (numba; same results, same order): worth it
        over many calls, since loading numba costs 0.4 s once."""
        if self._flat is None and self.n_steps:  # a schedule without steps has nothing to advance
            from simulator.network import compiled

            self._flat = FlatSchedule.of(self.schedule)
            self._kernels = compiled.complete_progress, compiled.advance_progress, compiled.release_progress

    @property
    def compiled(self) -> bool:
        """Whether it runs on the compiled kernels (``use_compiled`` on a schedule with steps)."""
        return self._flat is not None

    @property
    def done(self) -> bool:
        return self.n_finished == self.schedule.n_ranks

    @property
    def releases_more(self) -> bool:
        """Whether a rank may still release messages: one not yet joined, or one before its last step."""
        return self.n_steps > 0 and not (self.released.all() and self.cursor.min() >= self.n_steps - 1)

    @property
    def end_s(self) -> float:
        return float(self.rank_time_s.max())

    def release(self, ranks: np.ndarray, ready_s: np.ndarray) -> Released:
        """Ranks join at ``ready_s`` (each at most once): release their first step's sends."""
        ranks = np.asarray(ranks, dtype=np.int64)
        if np.any(self.released[ranks]):
            raise ValueError("a rank was released twice")
        self.released[ranks] = True
        self.rank_time_s[ranks] = ready_s
        if not self.n_steps:
            self._finish(ranks)
        elif self._flat is not None:
            return self._join_compiled(ranks)
        else:
            self._release(self.cursor[ranks], ranks)
        self._advance(ranks)
        return self._flush()

    def _finish(self, ranks: np.ndarray) -> None:
        """Ranks past their last step (each once)."""
        self._finished.append(ranks)
        self.n_finished += len(ranks)

    def take_finished(self) -> np.ndarray:
        """Ranks that finished their last step since the previous call (their end: ``rank_time_s``)."""
        parts, self._finished = self._finished, []
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def complete(self, step: np.ndarray, message: np.ndarray, arrival_s: np.ndarray) -> Released:
        """Record that messages arrived; return the messages this releases."""
        if self._flat is not None:
            state, *out = self._kernels[0](
                np.asarray(step, dtype=np.int64), np.asarray(message, dtype=np.int64),
                np.asarray(arrival_s, dtype=np.float64), self.released, self.rank_time_s, self.sent_bytes,
                self.received_bytes, self.n_steps, self._state(), self._flat)
            return self._take(state, *out)
        src, dst, size = self._messages(step, message)
        np.add.at(self.sent_bytes, src, size)
        np.add.at(self.received_bytes, dst, size)
        ends = np.concatenate([src, dst])
        flat = (np.concatenate([step, step]) % self._width) * self.schedule.n_ranks + ends
        np.subtract.at(self._outstanding.reshape(-1), flat, 1)
        np.maximum.at(self._last_arrival_s.reshape(-1), flat, np.concatenate([arrival_s, arrival_s]))
        touched = np.zeros(self.schedule.n_ranks, dtype=bool)
        touched[ends] = True
        self._advance(np.nonzero(touched)[0])
        return self._flush()

    def _messages(self, step: np.ndarray, message: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Source, destination and size of (step, message) pairs, one gather per distinct pattern."""
        src = np.empty(len(step), dtype=np.int64)
        dst = np.empty(len(step), dtype=np.int64)
        size = np.empty(len(step))
        for pattern, sel in self.schedule.by_entry(step):
            m = message[sel]
            src[sel], dst[sel], size[sel] = pattern.src[m], pattern.dst[m], pattern.size_bytes[m]
        return src, dst, size

    def _resident(self, steps: np.ndarray) -> None:
        """Make sure each step has a ring-buffer slot, initialized on first use."""
        if not len(steps):
            return
        highest = int(steps.max())
        lowest = int(self.cursor.min())
        if highest - lowest >= self._width:
            self._grow(highest - lowest + 1)
        new = steps[self._slot_step[steps % self._width] != steps]
        for k in np.unique(new) if len(new) else ():
            slot = int(k) % self._width
            self._outstanding[slot] = self.schedule.pattern_at(int(k)).involvement
            self._last_arrival_s[slot] = -np.inf
            self._slot_step[slot] = k

    def _grow(self, span: int) -> None:
        width = self._width
        while width < span:
            width *= 2
        outstanding = np.zeros((width, self.schedule.n_ranks), dtype=np.int64)
        last_arrival = np.zeros((width, self.schedule.n_ranks))
        slot_step = np.full(width, -1, dtype=np.int64)
        live = np.nonzero(self._slot_step >= int(self.cursor.min()))[0]
        steps = self._slot_step[live]
        outstanding[steps % width] = self._outstanding[live]
        last_arrival[steps % width] = self._last_arrival_s[live]
        slot_step[steps % width] = steps
        self._width, self._outstanding, self._last_arrival_s = width, outstanding, last_arrival
        self._slot_step = slot_step

    def _release(self, steps: np.ndarray, ranks: np.ndarray) -> None:
        """Queue the sends of ``steps[i]`` by ``ranks[i]``, ready when each rank finished its previous step."""
        self._resident(steps)
        for pattern, sel in self.schedule.by_entry(steps):
            order, ptr = pattern.by_sender
            positions, owner = gather_ranges(ptr, ranks[sel])
            if len(positions):
                self._out.append(Released(steps[sel][owner], order[positions], self.rank_time_s[ranks[sel]][owner]))

    def _advance(self, ranks: np.ndarray) -> None:
        """Move ranks past every step they have completed, releasing the sends of each step entered."""
        while True:
            ranks = ranks[self.released[ranks] & (self.cursor[ranks] < self.n_steps)]
            if not len(ranks):
                return
            steps = self.cursor[ranks]
            self._resident(steps)
            slot = steps % self._width
            finished = self._outstanding[slot, ranks] == 0
            ranks, slot = ranks[finished], slot[finished]
            if not len(ranks):
                return
            self.rank_time_s[ranks] = np.maximum(self.rank_time_s[ranks], self._last_arrival_s[slot, ranks])
            self.cursor[ranks] += 1
            going = self.cursor[ranks] < self.n_steps
            if not going.all():
                self._finish(ranks[~going])
            if going.any():
                self._release(self.cursor[ranks[going]], ranks[going])

    def _state(self) -> tuple:
        return self.cursor, self._outstanding, self._last_arrival_s, self._slot_step

    def kernel_args(self) -> tuple:
        """The run's state as ``compiled.lone_windows`` takes it (once ``compiled``)."""
        return (self.released, self.rank_time_s, self.sent_bytes, self.received_bytes, self.n_steps, self._state(),
                self._flat)

    def absorb(self, state: tuple, finished: np.ndarray, left: tuple) -> Released:
        """Take back what ``compiled.lone_windows`` returned: its state, the ranks that finished, the messages
        released that it did not queue."""
        return self._take(state, *left, finished)

    def _join_compiled(self, ranks: np.ndarray) -> Released:
        """``release``'s ``_release`` and ``_advance`` of ranks that just joined, compiled."""
        _, advance, release = self._kernels
        state, *first = release(ranks, self.rank_time_s, self._state(), self._flat)
        self._out.append(Released(*first))
        state, *out = advance(ranks, self.released, self.rank_time_s, self.n_steps, state, self._flat)
        return self._take(state, *out)

    def _take(self, state: tuple, step: np.ndarray, message: np.ndarray, ready_s: np.ndarray,
              finished: np.ndarray) -> Released:
        """Keep a compiled call's state (its ring buffer may have grown) and return what it released."""
        _, self._outstanding, self._last_arrival_s, self._slot_step = state
        self._width = len(self._slot_step)
        if len(finished):
            self._finish(finished)
        if len(step):
            self._out.append(Released(step, message, ready_s))
        return self._flush()

    def _flush(self) -> Released:
        parts, self._out = self._out, []
        if not parts:
            return Released(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
        if len(parts) == 1:
            return parts[0]
        return Released(np.concatenate([p.step for p in parts]), np.concatenate([p.message for p in parts]),
                        np.concatenate([p.ready_s for p in parts]))
