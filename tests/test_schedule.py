"""Point-to-point schedules (simulator/network/schedule.py): patterns, repeated steps and their byte counts,
checked against plain loops over the messages."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.network.schedule import Pattern, Schedule, group_by


def test_a_pattern_drops_self_messages_and_broadcasts_one_size() -> None:
    p = Pattern.of(4, [0, 1, 2, 3], [1, 1, 3, 0], 8.0)
    assert (p.src.tolist(), p.dst.tolist(), p.size_bytes.tolist()) == ([0, 2, 3], [1, 3, 0], [8.0, 8.0, 8.0])
    assert len(p) == 3 and p.src.dtype == np.int32


def test_involvement_and_messages_by_sender_match_a_loop() -> None:
    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, 6, 40), rng.integers(0, 6, 40)
    p = Pattern.of(6, src, dst, rng.uniform(1, 10, 40))
    counts = np.zeros(6, dtype=int)
    for s, d in zip(p.src, p.dst, strict=True):
        counts[s] += 1
        counts[d] += 1
    assert p.involvement.tolist() == counts.tolist()
    order, ptr = p.by_sender
    for rank in range(6):
        mine = sorted(order[ptr[rank]:ptr[rank + 1]].tolist())
        assert mine == [i for i in range(len(p)) if p.src[i] == rank]


def test_repeated_steps_count_as_expanded_steps() -> None:
    a = Pattern.of(3, [0, 1], [1, 2], [5.0, 7.0])
    b = Pattern.of(3, [2], [0], 11.0)
    schedule = Schedule(3)
    schedule.add(a, repeat=3)
    schedule.add(b, repeat=0)  # a step repeated zero times is no step
    schedule.add(b, repeat=2)
    assert schedule.n_steps == 5 and len(schedule.steps) == 2
    assert [schedule.pattern_at(k) is a for k in range(5)] == [True, True, True, False, False]
    assert schedule.entry_of(np.arange(5)).tolist() == [0, 0, 0, 1, 1]
    assert schedule.total_bytes() == 3 * 12.0 + 2 * 11.0
    assert schedule.n_messages() == 3 * 2 + 2 * 1
    sent, received = schedule.bytes_by_rank()
    assert sent.tolist() == [15.0, 21.0, 22.0] and received.tolist() == [22.0, 15.0, 21.0]
    schedule.add(a)  # the per-rank bytes follow steps added later
    assert schedule.bytes_by_rank()[0].tolist() == [20.0, 28.0, 22.0]


def test_steps_group_by_the_entry_they_belong_to() -> None:
    a, b = Pattern.of(2, [0], [1], 1.0), Pattern.of(2, [1], [0], 1.0)
    schedule = Schedule(2)
    schedule.add(a, repeat=2)
    schedule.add(b)
    groups = schedule.by_entry(np.array([0, 2, 1, 2]))
    assert [(pattern is a, sel.tolist()) for pattern, sel in groups] == [(True, [True, False, True, False]),
                                                                          (False, [False, True, False, True])]
    single = Schedule(2)
    single.add(a, repeat=4)
    assert single.by_entry(np.array([3, 0])) == [(a, slice(None))]


@pytest.mark.parametrize(("keys", "expected"), [
    ([], []), ([2, 2, 2], [(2, "all")]), ([3, 1, 3], [(1, [False, True, False]), (3, [True, False, True])]),
])
def test_group_by(keys: list[int], expected: list) -> None:
    got = [(k, "all" if isinstance(sel, slice) else sel.tolist()) for k, sel in group_by(np.array(keys, dtype=int))]
    assert got == expected
