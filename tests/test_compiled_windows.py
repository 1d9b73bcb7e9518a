"""Long flow-level runs go compiled (``flow.COMPILED_WINDOWS``): per-rank progress and windows of lone arrivals.
Both must give numpy's results to the bit: progress call for call, windows run for run."""

import json

import numpy as np
import pytest
from conftest import fattree_graph, run_cli, run_flow

from simulator.collectives.algorithms import build_schedule
from simulator.network import compiled, flow, maxmin
from simulator.network.fabric import Fabric
from simulator.network.progress import Released, ScheduleProgress
from simulator.network.schedule import Pattern, Schedule

CASES = [("allreduce", "ring"), ("allreduce", "halving-doubling"), ("alltoall", "direct"), ("allgather", "ring"),
         ("broadcast", "tree"), ("reducescatter", "ring")]


def _assert_same(a: Released, b: Released) -> None:
    for x, y in ((a.step, b.step), (a.message, b.message), (a.ready_s, b.ready_s)):
        np.testing.assert_array_equal(x, y)


def _drive(schedule: Schedule, seed: int, ahead: bool) -> int:
    """Ranks join in random batches and messages arrive in random order (``ahead``: messages to the ranks past the
    first third arrive 45x likelier, so ranks drift many steps apart and the ring buffer grows); both progress
    implementations see the same calls and must answer the same, in the same order. Returns the buffer width."""
    rng = np.random.default_rng(seed)
    plain, fast = ScheduleProgress(schedule), ScheduleProgress(schedule)
    fast.use_compiled()
    n, joined, t = schedule.n_ranks, 0, 0.0
    order = rng.permutation(n)
    in_flight = np.zeros((3, 0))
    while True:
        if joined < n and (in_flight.shape[1] == 0 or rng.random() < 0.3):
            ranks = order[joined : joined + rng.integers(1, n - joined + 1)]
            joined += len(ranks)
            ready = t + rng.random(len(ranks))
            got, want = fast.release(ranks, ready), plain.release(ranks, ready)
        elif in_flight.shape[1]:
            step, message = in_flight[0].astype(np.int64), in_flight[1].astype(np.int64)
            dst = np.array([schedule.pattern_at(int(k)).dst[m] for k, m in zip(step, message, strict=True)])
            pick = rng.random(len(step)) < (np.where(dst > n // 3, 0.9, 0.02) if ahead else 0.4)
            pick[rng.integers(len(step))] = True
            arrival = in_flight[2, pick] + rng.random(int(pick.sum()))
            t = max(t, float(arrival.max()))
            got = fast.complete(step[pick], message[pick], arrival)
            want = plain.complete(step[pick], message[pick], arrival)
            in_flight = in_flight[:, ~pick]
        else:
            break
        _assert_same(got, want)
        np.testing.assert_array_equal(fast.take_finished(), plain.take_finished())
        in_flight = np.hstack([in_flight, np.vstack([want.step, want.message, want.ready_s])])
    assert fast.done and plain.done
    for x, y in ((fast.rank_time_s, plain.rank_time_s), (fast.sent_bytes, plain.sent_bytes),
                 (fast.received_bytes, plain.received_bytes), (fast.cursor, plain.cursor)):
        np.testing.assert_array_equal(x, y)
    return fast._width


@pytest.mark.parametrize(("op", "algo"), CASES)
@pytest.mark.parametrize("n", [5, 13, 16])
def test_compiled_progress_answers_every_call_as_numpy_does(op: str, algo: str, n: int) -> None:
    schedule = build_schedule(op, algo, 1e6, n)
    widths = [_drive(schedule, seed, ahead) for seed in range(3) for ahead in (False, True)]
    if algo == "ring" and n == 16:
        assert max(widths) > 8  # ranks drifted past the initial ring buffer: its growth was exercised


def _compiled_solves(monkeypatch) -> None:
    """Every rate solve compiled from the first, as after the switch (which also moves small solves to the heap,
    equal to numpy's to rounding only): runs then differ only in how windows and progress are computed."""
    monkeypatch.setattr(maxmin, "HEAVY_SOLVE_ENTRIES", -1)


def test_a_flow_network_switches_to_compiled_progress_past_its_window_count(monkeypatch) -> None:
    """The switch happens mid-run (between windows) and changes no result, not even in the last bit."""
    _compiled_solves(monkeypatch)
    fabric = Fabric(fattree_graph(4))
    schedule = build_schedule("allreduce", "ring", 16e6, fabric.n_hosts)
    plain, plain_network = run_flow(fabric, schedule)
    monkeypatch.setattr(flow, "COMPILED_WINDOWS", 10)
    switched, network = run_flow(fabric, schedule)
    assert network._compiled and not plain_network._compiled and network.core.n_windows > 10
    np.testing.assert_array_equal(switched.rank_end_s, plain.rank_end_s)
    np.testing.assert_array_equal(network.link_bytes(), plain_network.link_bytes())


@pytest.mark.parametrize("strategy", ["des", "ps", "dp"])
def test_training_steps_with_compiled_progress_from_the_first_window_are_bit_identical(
        monkeypatch, capsys: pytest.CaptureFixture, strategy: str) -> None:
    def step() -> dict:
        code, out, _ = run_cli(capsys, "run", "--strategy", strategy, "--workers", "16", "--fidelity", "flow", "--json")
        assert code == 0
        return json.loads(out)

    _compiled_solves(monkeypatch)
    plain = step()
    monkeypatch.setattr(flow, "COMPILED_WINDOWS", 0)
    compiled = step()
    for key in ("step_time_s", "bytes_on_wire", "exposed_comm_s"):
        assert compiled[key] == plain[key], key


def _traffic(seed: int) -> tuple[Fabric, Schedule, np.ndarray]:
    """Random messages on a 16-host fat-tree, ranks joining up to 20 us apart: windows of every kind."""
    rng = np.random.default_rng(seed)
    fabric = Fabric(fattree_graph(4, latency_us=float(rng.uniform(0.1, 2.0))))
    n = fabric.n_hosts
    schedule = Schedule(n)
    for _ in range(int(rng.integers(2, 6))):
        m = int(rng.integers(1, 24))
        schedule.add(Pattern.of(n, rng.integers(0, n, m), rng.integers(0, n, m), rng.uniform(1e3, 1e6, m)),
                     repeat=int(rng.integers(1, 4)))
    schedule.add(Pattern.of(n, np.arange(n), (np.arange(n) + 1) % n, 2e5), repeat=3)  # a ring: lone flows
    return fabric, schedule, rng.uniform(0, 2e-5, n)


def _counting(monkeypatch, name: str, ran: list[int], count) -> None:
    """Record ``count(result)`` of every call to the compiled kernel ``name``."""
    kernel = getattr(compiled, name)

    def counted(*args: object) -> tuple:
        out = kernel(*args)
        ran.append(count(out))
        return out

    monkeypatch.setattr(compiled, name, counted)


@pytest.mark.parametrize("seed", range(8))
def test_compiled_windows_give_numpy_results_to_the_bit(monkeypatch, seed: int) -> None:
    """Windows run compiled one at a time (``isolated_window``), many in one call (``lone_windows``, the one run's
    lone messages) or in numpy (the others): the same results as numpy's alone, to the bit."""
    _compiled_solves(monkeypatch)
    fabric, schedule, ready_s = _traffic(seed)
    plain, plain_network = run_flow(fabric, schedule, ready_s=ready_s)
    single, fused = [], []
    _counting(monkeypatch, "isolated_window", single, lambda out: out[0] >= 0)
    _counting(monkeypatch, "lone_windows", fused, lambda out: out[0])
    monkeypatch.setattr(flow, "COMPILED_WINDOWS", 0)
    fast, network = run_flow(fabric, schedule, ready_s=ready_s)
    assert sum(fused) > 1 and not all(single)  # windows ran fused, and some in numpy
    np.testing.assert_array_equal(fast.rank_end_s, plain.rank_end_s)
    np.testing.assert_array_equal(fast.sent_bytes, plain.sent_bytes)
    np.testing.assert_array_equal(network.link_bytes(), plain_network.link_bytes())
    for mine, theirs in zip(network.link_stats(), plain_network.link_stats(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def _two_runs(fabric: Fabric, second_at_s: float) -> tuple[flow.FlowNetwork, list]:
    """A ring all-reduce from 0, and another process starting an all-to-all at ``second_at_s``: the first run's
    lone windows must stop for it."""
    network = flow.FlowNetwork(fabric, check_capacity=True)
    n = fabric.n_hosts
    ends = []

    def second():
        yield network.env.timeout(second_at_s)
        ends.append((yield network.start(build_schedule("alltoall", "direct", 4e5, n))))

    network.env.process(second())
    first = network.start(build_schedule("allreduce", "ring", 16e6, n))
    network.env.run(until=first)
    network.env.run()
    return network, [first.value, *ends]


@pytest.mark.parametrize("room", [1024, 0])
def test_lone_windows_stop_for_other_runs_and_full_tables_and_change_no_bit(monkeypatch, room: int) -> None:
    """Runs that overlap (the second one started by another simpy process mid-way) and tables with no room to
    spare (``LONE_ROOM`` 0: released messages left to Python's submit, windows left to numpy): the same bits."""
    _compiled_solves(monkeypatch)
    fabric = Fabric(fattree_graph(4))
    plain_network, plain = _two_runs(fabric, 3e-4)
    fused, left = [], []
    _counting(monkeypatch, "lone_windows", fused, lambda out: out[0])
    _counting(monkeypatch, "lone_windows", left, lambda out: len(out[-1][0]))
    monkeypatch.setattr(flow, "COMPILED_WINDOWS", 0)
    monkeypatch.setattr(flow.FluidCore, "LONE_ROOM", room)
    network, runs = _two_runs(fabric, 3e-4)
    assert sum(fused) > 10 and (sum(left) > 0) == (room == 0)
    for mine, theirs in zip(runs, plain, strict=True):
        assert mine.start_s == theirs.start_s
        np.testing.assert_array_equal(mine.rank_end_s, theirs.rank_end_s)
    np.testing.assert_array_equal(network.link_bytes(), plain_network.link_bytes())
    for mine, theirs in zip(network.link_stats(), plain_network.link_stats(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("kwargs", [{"record_rates": True}, {"model": "cm02"}])
def test_runs_that_record_rates_or_share_by_a_model_keep_their_windows_in_numpy(monkeypatch, kwargs: dict) -> None:
    """Lone windows, one or many at a time, log no rate segments and know no model's weights: such runs keep
    numpy's windows past the switch, with the same link timeline and results."""
    from simulator.network.models import MODELS

    kwargs = {k: MODELS[v] if k == "model" else v for k, v in kwargs.items()}
    _compiled_solves(monkeypatch)
    fabric = Fabric(fattree_graph(4))
    schedule = build_schedule("allreduce", "ring", 16e6, fabric.n_hosts)
    plain, plain_network = run_flow(fabric, schedule, **kwargs)
    fused = []
    _counting(monkeypatch, "lone_windows", fused, lambda out: out[0])
    monkeypatch.setattr(flow, "COMPILED_WINDOWS", 0)
    fast, network = run_flow(fabric, schedule, **kwargs)
    assert network._compiled and not fused
    np.testing.assert_array_equal(fast.rank_end_s, plain.rank_end_s)
    for name, column in (network.link_segments() or {}).items():
        np.testing.assert_array_equal(column, plain_network.link_segments()[name], err_msg=name)


def test_past_the_switch_every_solve_is_compiled_and_model_windows_stay_in_numpy() -> None:
    from simulator.network.models import MODELS

    fabric = Fabric(fattree_graph(4))
    plain, weighted = flow.FlowNetwork(fabric), flow.FlowNetwork(fabric, model=MODELS["cm02"])
    assert not plain.core._tier.compiled(100)
    for network in (plain, weighted):
        network.core.use_compiled()
        assert network.core._tier.compiled(100)
    assert plain.core._isolated_kernel is not None and weighted.core._isolated_kernel is None


def test_a_run_without_steps_started_after_the_switch_ends_at_once(monkeypatch) -> None:
    monkeypatch.setattr(flow, "COMPILED_WINDOWS", 0)
    fabric = Fabric(fattree_graph(4))
    network = flow.FlowNetwork(fabric)
    ring = network.start(build_schedule("allreduce", "ring", 16e6, fabric.n_hosts))
    network.env.run(until=ring)
    assert network._compiled
    empty = network.start(Schedule(fabric.n_hosts))
    network.env.run(until=empty)
    assert empty.value.time_s == 0.0
