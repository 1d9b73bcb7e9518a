"""Runs whose messages never share a link (``network.alone``): flow level in closed form, equal to the events."""

import numpy as np
import pytest
from conftest import fattree_graph, run_flow, star_graph

from simulator.collectives.algorithms import build_schedule
from simulator.network.alone import ordered_routes, run_ordered
from simulator.network.fabric import Fabric
from simulator.network.flow import FlowNetwork
from simulator.network.fluid import TOLERANCE_BOUND
from simulator.network.models import MODELS
from simulator.network.schedule import Pattern, Schedule
from simulator.run.collective import ORDERED_REASON, simulate_collective
from topologies import load_cables

SIZE = 3.3 * 2**20
FABRICS = {  # spec, ecmp
    "fattree-hash": ("fattree:k=8,pods=4,link_gbps=400,latency_us=1", "hash"),
    "fattree-dmodk": ("fattree:k=8,link_gbps=100", "dmodk"),
    "dgx-rails": ("dgx:nodes=4,gpus_per_node=8,rails=true", "hash"),
    "torus": ("torus-4x4x4", "hash"),
}


def _fabric(name: str) -> Fabric:
    spec, ecmp = FABRICS[name]
    return Fabric(load_cables(spec, []), ecmp=ecmp)


def _assert_same_run(fabric: Fabric, schedule: Schedule, model: str = "maxmin") -> bool:
    """``run_alone`` and the event loop give the same rank ends and link figures; whether it ran in closed form.
    Exact events (tolerance 0): a lone run's last windows are longer, which moves batched completions."""
    alone = FlowNetwork(fabric, model=MODELS[model], rate_tolerance=0.0)
    ordered = ordered_routes(alone.routes, schedule, np.arange(schedule.n_ranks)) is not None
    got = alone.run_alone(schedule)
    events = FlowNetwork(fabric, model=MODELS[model], rate_tolerance=0.0)
    done = events.start(schedule)
    events.env.run(until=done)
    want = done.value
    np.testing.assert_allclose(got.rank_end_s, want.rank_end_s, rtol=1e-12, atol=0)
    assert got.end_s == pytest.approx(want.end_s, rel=1e-12) and alone.env.now == got.end_s
    np.testing.assert_allclose(got.sent_bytes, want.sent_bytes, rtol=1e-12)
    np.testing.assert_allclose(got.received_bytes, want.received_bytes, rtol=1e-12)
    np.testing.assert_allclose(alone.link_bytes(), events.link_bytes(), rtol=1e-12, atol=1e-3)
    for mine, theirs in zip(alone.link_stats(), events.link_stats(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-18)
    return ordered


@pytest.mark.parametrize("fabric_name", ["fattree-hash", "fattree-dmodk", "dgx-rails"])
@pytest.mark.parametrize("op", ["allreduce", "allgather", "reducescatter"])
def test_rings_on_tree_fabrics_run_in_closed_form_equal_to_the_event_loop(fabric_name: str, op: str) -> None:
    fabric = _fabric(fabric_name)
    schedule = build_schedule(op, "ring", SIZE, fabric.n_hosts, 0, fabric.ranks_per_node)
    assert _assert_same_run(fabric, schedule)


@pytest.mark.parametrize(("fabric_name", "op", "algo", "model"), [
    ("fattree-hash", "alltoall", "direct", "maxmin"),  # a receiver's link carries every sender
    ("fattree-hash", "allreduce", "halving-doubling", "maxmin"),
    ("torus", "allreduce", "ring", "maxmin"),  # neighbours' routes cross other ranks' links
    ("fattree-hash", "allreduce", "ring", "cm02"),  # a rank's uplink carries its data and its successor's ACKs
])
def test_schedules_whose_messages_can_meet_run_through_the_event_loop(fabric_name: str, op: str, algo: str,
                                                                      model: str) -> None:
    fabric = _fabric(fabric_name)
    schedule = build_schedule(op, algo, SIZE, fabric.n_hosts, 0, fabric.ranks_per_node)
    assert not _assert_same_run(fabric, schedule, model)


def test_the_closed_form_is_wrong_where_messages_meet() -> None:
    """The check matters: forced onto an all-to-all, the recurrence misses the sharing (each message at full rate)."""
    fabric = Fabric(star_graph(4))
    schedule = build_schedule("alltoall", "direct", 1e6, 4)
    network = FlowNetwork(fabric)
    ids = {id(step.pattern): fabric.route_ids(step.pattern.src, step.pattern.dst) for step in schedule.steps}
    forced = run_ordered(fabric, schedule, ids, 0.0)
    result, _ = run_flow(fabric, schedule)
    assert ordered_routes(network.routes, schedule, np.arange(4)) is None
    assert forced.time_s < 0.5 * result.time_s


def test_a_ring_on_a_star_takes_steps_times_latency_plus_chunk_over_rate() -> None:
    """Closed form: 2 (n - 1) steps, each two 1 us hops plus chunk / link rate, every rank in step."""
    n, size, gbps = 6, 6e6, 100.0
    fabric = Fabric(star_graph(n, link_gbps=gbps, latency_us=1.0))
    result = FlowNetwork(fabric).run_alone(build_schedule("allreduce", "ring", size, n))
    step_s = 2e-6 + size / n / (gbps * 1e9 / 8)
    assert result.time_s == pytest.approx(2 * (n - 1) * step_s, rel=1e-12)
    np.testing.assert_allclose(result.rank_end_s, 2 * (n - 1) * step_s, rtol=1e-12)


def test_two_messages_on_a_link_in_one_step_or_two_senders_on_a_link_are_not_ordered() -> None:
    fabric = Fabric(star_graph(3))
    network = FlowNetwork(fabric)
    same_step = Schedule(3)
    same_step.add(Pattern.of(3, [0, 0], [1, 2], 1e6))  # rank 0's uplink twice in one step
    two_senders = Schedule(3)
    two_senders.add(Pattern.of(3, [0], [2], 1e6))
    two_senders.add(Pattern.of(3, [1], [2], 1e6))  # rank 2's downlink, from 0 then from 1: not ordered
    one_sender = Schedule(3)
    one_sender.add(Pattern.of(3, [0], [1], 1e6))
    one_sender.add(Pattern.of(3, [0], [1], 2e6), repeat=3)
    ranks = np.arange(3)
    assert ordered_routes(network.routes, same_step, ranks) is None
    assert ordered_routes(network.routes, two_senders, ranks) is None
    assert ordered_routes(network.routes, one_sender, ranks) is not None
    for schedule in (same_step, two_senders, one_sender):
        _assert_same_run(fabric, schedule)


def test_a_busy_network_runs_alone_through_the_event_loop() -> None:
    """Not idle (another run in flight): the closed form would miss the other run's flows, so it is not used."""
    fabric = Fabric(fattree_graph(4))
    ring = build_schedule("allreduce", "ring", 16e6, fabric.n_hosts)
    busy = FlowNetwork(fabric)
    busy.start(build_schedule("alltoall", "direct", 16e6, fabric.n_hosts))
    shared = busy.run_alone(ring)
    idle = FlowNetwork(fabric).run_alone(ring)
    assert shared.time_s > 1.2 * idle.time_s


@pytest.mark.parametrize(("op", "algo", "ordered"), [("allreduce", "ring", True), ("alltoall", "direct", False)])
def test_auto_runs_ordered_collectives_at_flow_level_and_says_why(op: str, algo: str, ordered: bool) -> None:
    fabric = _fabric("fattree-hash")
    report, links = simulate_collective(op, algo, SIZE, fabric, "auto")
    assert report.fidelity == "flow"
    assert (report.fidelity_reason == ORDERED_REASON) == ordered
    result, network = run_flow(fabric, build_schedule(op, algo, SIZE, fabric.n_hosts))
    # the event loop's lone run batches completions in longer windows at its end: within the tolerance's bound
    assert report.time_s == pytest.approx(result.time_s, rel=1e-12 if ordered else TOLERANCE_BOUND * 1e-3)
    np.testing.assert_allclose(links.bytes, network.link_bytes(), rtol=1e-12, atol=1e-3)


def test_a_network_recording_link_rates_runs_alone_through_the_event_loop() -> None:
    """Each link's rate over time comes from the event loop's segments, so a recording network never skips it."""
    fabric = Fabric(fattree_graph(4))
    ring = build_schedule("allreduce", "ring", 16e6, fabric.n_hosts)
    recording = FlowNetwork(fabric, record_rates=True)
    result = recording.run_alone(ring)
    segments = recording.link_segments()
    moved = np.bincount(segments["link"].astype(np.int64), segments["rate"] * (segments["t1"] - segments["t0"]),
                        minlength=fabric.n_links)
    np.testing.assert_allclose(moved, recording.link_bytes(), rtol=1e-9, atol=1e-3)
    assert result.time_s == pytest.approx(FlowNetwork(fabric).run_alone(ring).time_s, rel=1e-12)


def test_the_64_host_collective_of_item_5s_benchmark_runs_without_a_single_window() -> None:
    """``benchmarks/startup.py``'s flow-level case (a 64 MiB ring all-reduce on a 64-host fat-tree) never enters
    the event loop: no lookahead window, no rate solve; its time equals the event loop's."""
    fabric = Fabric(load_cables("fattree:k=8,pods=4,link_gbps=400,latency_us=1", []))
    schedule = build_schedule("allreduce", "ring", 64 * 2**20, fabric.n_hosts)
    network = FlowNetwork(fabric)
    result = network.run_alone(schedule)
    assert network.core.n_windows == 0 and network.core.n_rate_solves == 0
    assert result.time_s == pytest.approx(run_flow(fabric, schedule)[0].time_s, rel=1e-12)


@pytest.mark.parametrize("steps", [1, 2])
def test_a_lone_run_that_releases_nothing_more_runs_in_longer_windows(steps: int) -> None:
    """Once every rank of a lone run has released its last step, nothing can arrive, so lookahead is not needed:
    its windows span ``CLOSED_WINDOW`` x L_min. Exact events (tolerance 0) end every rank as the unbounded run
    does, in fewer windows; at the default tolerance, within the tolerance's bound."""
    from simulator.network import flow
    from simulator.network.progress import ScheduleProgress

    fabric = Fabric(load_cables("fattree:k=4,link_gbps=400,latency_us=1", []))  # hashed: collisions, many ends
    schedule = Schedule(fabric.n_hosts)
    for _ in range(steps):
        schedule.add(build_schedule("alltoall", "direct", SIZE, fabric.n_hosts).steps[0].pattern)
    progress = ScheduleProgress(schedule)
    assert progress.releases_more
    progress.release(np.arange(fabric.n_hosts), np.zeros(fabric.n_hosts))
    assert progress.releases_more == (steps > 1)
    for tolerance in (0.0, 1e-3):
        alone = FlowNetwork(fabric, rate_tolerance=tolerance)
        got = alone.run_alone(schedule)
        events = FlowNetwork(fabric, rate_tolerance=tolerance)
        done = events.start(schedule)
        events.env.run(until=done)
        rtol = 1e-12 if tolerance == 0 else TOLERANCE_BOUND * tolerance
        np.testing.assert_allclose(got.rank_end_s, done.value.rank_end_s, rtol=rtol, atol=0)
        assert alone.core.n_windows < events.core.n_windows
        assert not alone._closed  # only while it runs
    assert flow.CLOSED_WINDOW > 1
