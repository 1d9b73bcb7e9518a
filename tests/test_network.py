"""The flow and analytical backends against the closed forms of docs/NETWORK_MODEL.md and fluid-model invariants."""

import sys

import networkx as nx
import numpy as np
import pytest
from conftest import fattree_graph, run_flow, star_graph
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.collectives.algorithms import build_schedule
from simulator.network import compiled, fluid, maxmin
from simulator.network import fabric as fabric_module
from simulator.network.analytical import AnalyticalNetwork
from simulator.network.compiled import fill_levels
from simulator.network.fabric import Fabric
from simulator.network.flow import FlowNetwork
from simulator.network.fluid import TOLERANCE_BOUND, FluidCore, _largest_true, _least_in_order, _Table
from simulator.network.maxmin import by_local_minima
from simulator.network.models import MODELS, NetworkModel
from simulator.network.schedule import Pattern, Schedule

GBPS, LATENCY_US = 100.0, 1.0
B = GBPS * 1e9 / 8  # bytes/s
L = LATENCY_US * 1e-6  # s
SIZES = [1e3, 1e6, 64 * 2**20]
RANKS = [2, 3, 5, 8, 16]


def closed_form_s(op: str, n: int, size: float, servers: int = 0) -> float:
    """docs/NETWORK_MODEL.md, star of n hosts, one link of B bytes/s and latency L each."""
    return {
        "allreduce": 2 * (n - 1) * (2 * L + size / (n * B)),
        "reducescatter": (n - 1) * (2 * L + size / (n * B)),
        "allgather": (n - 1) * (2 * L + size / (n * B)),
        "alltoall": 2 * L + (n - 1) * (size / n) / B,
        "incast": 2 * L + (n - 1) * size / B,
        "pushpull": 2 * (2 * L + max(size, (n - servers) * size / max(servers, 1)) / B),
    }[op]


ALGO = {"allreduce": "ring", "reducescatter": "ring", "allgather": "ring", "alltoall": "direct",
        "incast": "direct"}


@pytest.mark.parametrize("n", RANKS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("op", list(ALGO))
def test_both_backends_hit_closed_forms_on_stars(op: str, n: int, size: float) -> None:
    fabric = Fabric(star_graph(n, GBPS, LATENCY_US))
    schedule = build_schedule(op, ALGO[op], size, n)
    result, _ = run_flow(fabric, schedule)
    expected = closed_form_s(op, n, size)
    assert result.time_s == pytest.approx(expected, rel=1e-9)
    analytical_s, _ = AnalyticalNetwork(fabric).schedule_time_s(schedule)
    assert analytical_s == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(("n", "servers"), [(3, 1), (5, 2), (8, 2), (9, 4), (16, 8), (16, 12)])
@pytest.mark.parametrize("size", SIZES)
def test_pushpull_closed_form(n: int, servers: int, size: float) -> None:
    fabric = Fabric(star_graph(n, GBPS, LATENCY_US))
    schedule = build_schedule("pushpull", "direct", size, n, servers=servers)
    result, _ = run_flow(fabric, schedule)
    assert result.time_s == pytest.approx(closed_form_s("pushpull", n, size, servers), rel=1e-9)
    assert AnalyticalNetwork(fabric).schedule_time_s(schedule)[0] == pytest.approx(result.time_s, rel=1e-9)


@pytest.mark.parametrize("size", SIZES)
def test_one_message(size: float) -> None:
    fabric = Fabric(star_graph(4, GBPS, LATENCY_US))
    schedule = Schedule(4)
    schedule.add(Pattern.of(4, [1], [3], size))
    result, network = run_flow(fabric, schedule)
    assert result.time_s == pytest.approx(2 * L + size / B, rel=1e-9)
    assert network.link_bytes().sum() == pytest.approx(2 * size)


def test_two_flows_share_one_link_exactly() -> None:
    fabric = Fabric(star_graph(3, GBPS, LATENCY_US))
    size = 1e6
    schedule = Schedule(3)
    schedule.add(Pattern.of(3, [0, 1], [2, 2], size))
    result, network = run_flow(fabric, schedule)
    assert result.time_s == pytest.approx(2 * L + 2 * size / B, rel=1e-12)
    assert result.rank_end_s[0] == pytest.approx(result.rank_end_s[1], rel=1e-12)
    # The shared downlink ran at exactly its capacity, never more.
    assert network.core.link_peak_util.max() == pytest.approx(1.0, rel=1e-12)


def _two_paths_graph(short_us: float, long_us: float) -> nx.Graph:
    """h0 and h1 both reach h2 through switch s; h1's access link is slower to cross (latency)."""
    graph = nx.Graph(hosts=["h0", "h1", "h2"])
    graph.add_nodes_from(["h0", "h1", "h2"], kind="host")
    graph.add_node("s", kind="switch")
    graph.add_edge("h0", "s", link_gbps=GBPS, latency_us=short_us)
    graph.add_edge("h1", "s", link_gbps=GBPS, latency_us=long_us)
    graph.add_edge("s", "h2", link_gbps=GBPS, latency_us=short_us)
    return graph


def test_unequal_route_latencies_start_and_finish_in_order() -> None:
    short_us, long_us, size = 1.0, 3.0, 1e5
    fabric = Fabric(_two_paths_graph(short_us, long_us))
    schedule = Schedule(3)
    schedule.add(Pattern.of(3, [0, 1], [2, 2], size))
    result, _ = run_flow(fabric, schedule)
    start_a, start_b = 2 * short_us * 1e-6, (short_us + long_us) * 1e-6
    left_a = size - B * (start_b - start_a)  # A ran alone at full rate until B arrived
    finish_a = start_b + 2 * left_a / B  # then both at B/2
    left_b = size - (finish_a - start_b) * B / 2
    finish_b = finish_a + left_b / B  # then B alone
    assert result.rank_end_s[0] == pytest.approx(finish_a, rel=1e-12)
    assert result.rank_end_s[1] == pytest.approx(finish_b, rel=1e-12)
    assert finish_a < finish_b


def test_ring_without_barriers_follows_slowest_neighbour() -> None:
    """Per-rank dependencies: a ring step costs max over neighbours of (latency + chunk/B), not more."""
    fabric = Fabric(fattree_graph(4))
    n, size = fabric.n_hosts, 16e6
    schedule = build_schedule("allreduce", "ring", size, n)
    result, _ = run_flow(fabric, schedule)
    ranks = np.arange(n)
    ids = fabric.route_ids(ranks, (ranks + 1) % n)
    latency = fabric.route_latency_s[ids].max()
    assert result.time_s == pytest.approx(2 * (n - 1) * (latency + size / n / (400e9 / 8)), rel=1e-9)
    assert AnalyticalNetwork(fabric).schedule_time_s(schedule)[0] == pytest.approx(result.time_s, rel=1e-9)


@pytest.mark.parametrize("op", ["allreduce", "alltoall", "broadcast"])
@pytest.mark.parametrize("algo", ["ring", "tree", "direct", "halving-doubling"])
def test_bytes_sent_equal_bytes_received_and_links_carry_hops(op: str, algo: str) -> None:
    from simulator.collectives.algorithms import SUPPORTED

    if algo not in SUPPORTED[op]:
        pytest.skip("unsupported pair")
    fabric = Fabric(fattree_graph(4))
    schedule = build_schedule(op, algo, 4e6, fabric.n_hosts)
    result, network = run_flow(fabric, schedule)
    assert result.sent_bytes.sum() == pytest.approx(schedule.total_bytes(), rel=1e-12)
    assert result.received_bytes.sum() == pytest.approx(result.sent_bytes.sum(), rel=1e-12)
    hop_bytes = 0.0
    for step in schedule.steps:
        p = step.pattern
        hops = (fabric.route_links[fabric.route_ids(p.src, p.dst)] >= 0).sum(axis=1)
        hop_bytes += step.repeat * float((hops * p.size_bytes).sum())
    assert network.link_bytes().sum() == pytest.approx(hop_bytes, rel=1e-9)


@pytest.mark.parametrize("model", MODELS.values(), ids=MODELS)
def test_contended_alltoall_never_exceeds_capacity_and_incremental_equals_full(model: NetworkModel) -> None:
    """Hash-ECMP collisions on a fat-tree: rates recomputed incrementally equal a full recomputation, under
    every network model (weighted shares restart by level)."""
    fabric = Fabric(fattree_graph(4))
    schedule = build_schedule("alltoall", "direct", 8e6, fabric.n_hosts)
    fast, network = run_flow(fabric, schedule, model=model)  # check_capacity asserts at every rate change
    full, _ = run_flow(fabric, schedule, incremental=False, model=model)
    assert network.core.link_peak_util.max() <= 1 + 1e-9
    assert np.allclose(fast.rank_end_s, full.rank_end_s, rtol=1e-9, atol=0)
    no_contention = 6 * 1e-6 + (fabric.n_hosts - 1) * 8e6 / fabric.n_hosts / (400e9 / 8)
    assert fast.time_s >= no_contention * (1 - 1e-9)


def _random_traffic(seed: int) -> tuple[Fabric, Schedule]:
    rng = np.random.default_rng(seed)
    fabric = Fabric(fattree_graph(4, latency_us=float(rng.uniform(0.1, 2.0))))
    n = fabric.n_hosts
    schedule = Schedule(n)
    for _ in range(3):
        m = int(rng.integers(1, 40))
        schedule.add(Pattern.of(n, rng.integers(0, n, m), rng.integers(0, n, m), rng.uniform(1e3, 1e6, m)))
    return fabric, schedule


@pytest.mark.parametrize(("seed", "model"), [(1, MODELS["maxmin"]), (2, MODELS["cm02"])])
def test_compiled_link_sums_equal_the_bincounts(monkeypatch, seed: int, model: NetworkModel) -> None:
    """Past ``COMPILED_ENTRIES`` the fluid core sums counts, loads and bytes per link in one compiled pass (to keep
    big solves small and fast); forced on for every sum, every rank ends and every link carries what numpy's
    bincounts give, to the bit (both add in flow-then-hop order)."""
    fabric, schedule = _random_traffic(seed)
    _numpy_link_sums(monkeypatch)
    flat, network = run_flow(fabric, schedule, model=model)
    flat_bytes = network.link_bytes()
    monkeypatch.setattr(fabric_module, "COMPILED_ENTRIES", 0)
    fast, network = run_flow(fabric, schedule, model=model)
    assert np.array_equal(fast.rank_end_s, flat.rank_end_s)
    assert np.array_equal(network.link_bytes(), flat_bytes)


def _numpy_link_sums(monkeypatch) -> None:
    """Make ``fabric.link_sums`` use numpy's bincount: below ``COMPILED_ENTRIES`` it does until numba is loaded."""
    monkeypatch.setattr(fabric_module, "COMPILED_ENTRIES", 10**12)
    monkeypatch.delitem(sys.modules, "simulator.network.compiled", raising=False)


@pytest.mark.parametrize("rows_dtype", [None, np.int32, np.int64])
def test_link_sums_compiled_and_by_bincount_equal_a_loop(monkeypatch, rows_dtype: type | None) -> None:
    """``fabric.link_sums`` over rows of a route table (or all of it), counts, per-flow weights and per-entry
    coefficients: the compiled pass and numpy's bincount both equal a plain loop."""
    rng = np.random.default_rng(7)
    table = rng.integers(-1, 9, (30, 4)).astype(np.int32)
    rows = None if rows_dtype is None else rng.integers(0, 30, 50).astype(rows_dtype)
    picked = np.arange(30) if rows is None else rows
    per_flow, coef = rng.uniform(1, 2, len(picked)), rng.uniform(0, 1, table.shape)
    for weights, scale in ((None, None), (per_flow, None), (per_flow, coef)):
        expected = np.zeros(9)
        for f, row in enumerate(picked):
            for h, link in enumerate(table[row]):
                if link >= 0:
                    expected[link] += 1 if weights is None else weights[f] * (1 if scale is None else scale[row, h])
        for numpy in (False, True):
            if numpy:
                _numpy_link_sums(monkeypatch)
            else:
                monkeypatch.setattr(fabric_module, "COMPILED_ENTRIES", 0)
            got = fabric_module.link_sums(table, weights, 9, rows=rows, coef=scale)
            assert np.allclose(got, expected, rtol=1e-12, atol=0)
            assert (got.dtype.kind == "i") == (weights is None)


def test_compiled_kernels_over_no_rows_are_empty_not_the_whole_table() -> None:
    """Zero flows (an empty ``rows``) is not "every row of the table"."""
    table = np.array([[0, 1], [1, -1]], dtype=np.int32)
    none = np.zeros(0, dtype=np.int32)
    assert compiled.link_sums(table, None, 3, rows=none).tolist() == [0, 0, 0]
    assert compiled.link_sums(table, np.zeros(0), 3, rows=none).tolist() == [0.0, 0.0, 0.0]
    assert fill_levels(table, np.ones(2), rows=none).size == 0
    assert fill_levels(table, np.ones(2)).tolist() == [0.5, 0.5]


@pytest.mark.parametrize(("seed", "model"), [(3, MODELS["maxmin"]), (4, MODELS["cm02"]), (5, MODELS["lv08"])])
def test_every_solve_by_heap_filling_equals_every_solve_by_local_minima(monkeypatch, seed: int,
                                                                         model: NetworkModel) -> None:
    """The compiled heap filling forced on every rate solve of random traffic (no warm-up in numpy), and then
    forbidden: every rank ends at the same time and every link carries the same bytes. Under maxmin the heap
    runs inside ``compiled.resolve_rates``, on buffers kept from solve to solve (the largest solve's size)."""
    fabric, schedule = _random_traffic(seed)
    monkeypatch.setattr(maxmin, "LARGE_SOLVE_ENTRIES", 0)
    monkeypatch.setattr(maxmin, "WARMUP_ENTRIES", 0)
    heap, network = run_flow(fabric, schedule, model=model)
    heap_bytes = network.link_bytes()
    work = network.core._work
    assert (work is not None) == (model is MODELS["maxmin"])
    assert work is None or len(work.rows) < network.core.n_rate_flows  # reused: smaller than all solves together
    monkeypatch.setattr(maxmin, "LARGE_SOLVE_ENTRIES", 10**12)
    monkeypatch.setattr(maxmin, "HEAVY_SOLVE_ENTRIES", 10**12)
    local, network = run_flow(fabric, schedule, model=model)
    assert np.allclose(heap.rank_end_s, local.rank_end_s, rtol=1e-9, atol=0)
    assert np.allclose(network.link_bytes(), heap_bytes, rtol=1e-12, atol=0)


@pytest.mark.parametrize("seed", [6, 7])
def test_large_solves_over_a_kept_link_index_give_the_same_bits(monkeypatch, seed: int) -> None:
    """``INDEXED_FLOWS`` lowered to 1: every solve of half the coupled flows or more runs over the kept
    ``LinkIndex``, rebuilt only when flows join the table or it compacts (random all-to-alls of 240 flows, three
    in a row, ranks joining apart: both happen), the others as before. Every rank's end, every link's bytes, busy
    time and peak: the same to the bit."""
    rng = np.random.default_rng(seed)
    fabric = Fabric(fattree_graph(4, latency_us=float(rng.uniform(0.1, 2.0))))
    n = fabric.n_hosts
    src, dst = np.nonzero(~np.eye(n, dtype=bool))
    schedule = Schedule(n)
    for _ in range(3):
        schedule.add(Pattern.of(n, src, dst, rng.uniform(1e3, 1e6, len(src))))
    ready_s = rng.uniform(0, 2e-5, n)
    monkeypatch.setattr(maxmin, "HEAVY_SOLVE_ENTRIES", -1)  # every solve compiled
    plain, plain_network = run_flow(fabric, schedule, ready_s=ready_s)
    builds, solves, compactions = [], [], []
    build, solve, compact = compiled.LinkIndex.build, compiled.resolve_indexed, _Table.compact
    monkeypatch.setattr(compiled.LinkIndex, "build", lambda self, *a: builds.append(build(self, *a)))
    monkeypatch.setattr(compiled, "resolve_indexed", lambda *a: solves.append(solve(*a)))
    monkeypatch.setattr(_Table, "compact", lambda self: compactions.append(compact(self)) or compactions[-1])
    monkeypatch.setattr(FluidCore, "INDEXED_FLOWS", 1)
    indexed, network = run_flow(fabric, schedule, ready_s=ready_s)
    assert len(solves) > 2 * len(builds) > 0 and any(c is not None for c in compactions)
    np.testing.assert_array_equal(indexed.rank_end_s, plain.rank_end_s)
    np.testing.assert_array_equal(network.link_bytes(), plain_network.link_bytes())
    for mine, theirs in zip(network.link_stats(), plain_network.link_stats(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_a_simulation_tiers_its_solves_numpy_first_then_compiled() -> None:
    """``SolverTier``: numpy up to LARGE_SOLVE_ENTRIES, compiled past HEAVY_SOLVE_ENTRIES, and in between numpy
    until such solves sum WARMUP_ENTRIES entries (numba's load is paid only where it pays back), compiled after;
    small and heavy solves do not count toward the warm-up."""
    tier = maxmin.SolverTier()
    mid = maxmin.HEAVY_SOLVE_ENTRIES
    assert not tier.compiled(maxmin.LARGE_SOLVE_ENTRIES) and tier.compiled(maxmin.HEAVY_SOLVE_ENTRIES + 1)
    warmup = maxmin.WARMUP_ENTRIES // mid
    assert [tier.compiled(mid) for _ in range(warmup)] == [False] * warmup
    assert tier.compiled(mid) and tier.compiled(maxmin.LARGE_SOLVE_ENTRIES + 1)
    assert not tier.compiled(10) and not maxmin.SolverTier().compiled(mid)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([0.0, 1e-3]), st.sampled_from(list(MODELS.values())))
def test_random_traffic_incremental_equals_full(seed: int, rate_tolerance: float, model: NetworkModel) -> None:
    fabric, schedule = _random_traffic(seed)
    fast, _ = run_flow(fabric, schedule, rate_tolerance=rate_tolerance, model=model)
    full, _ = run_flow(fabric, schedule, incremental=False, rate_tolerance=rate_tolerance, model=model)
    assert np.allclose(fast.rank_end_s, full.rank_end_s, rtol=1e-9, atol=0)


def test_rate_tolerance_batches_completions_closed_form() -> None:
    """Two flows into one host, sizes S and S(1 + d): exact and batched completions, in closed form.

    Exact: the first ends at 2S/B, then the second runs alone: 2S/B + dS/B. With a tolerance t >= d the
    second ends within t x its age of the first, so it keeps rate B/2: 2S(1 + d)/B.
    """
    size, d = 1e6, 4e-4
    fabric = Fabric(star_graph(3, GBPS, LATENCY_US))
    schedule = Schedule(3)
    schedule.add(Pattern.of(3, np.array([0, 1]), np.array([2, 2]), np.array([size, size * (1 + d)])))
    exact, _ = run_flow(fabric, schedule, rate_tolerance=0.0)
    assert exact.time_s == pytest.approx(2 * L + (2 + d) * size / B, rel=1e-12)
    batched, network = run_flow(fabric, schedule, rate_tolerance=1e-3)
    assert batched.time_s == pytest.approx(2 * L + 2 * size * (1 + d) / B, rel=1e-12)
    assert network.core.n_rate_solves == 1  # both arrivals at once; the two completions batched
    assert batched.time_s - exact.time_s == pytest.approx(d * size / B, rel=1e-6)
    assert 0 < batched.time_s / exact.time_s - 1 < 1e-3
    below, _ = run_flow(fabric, schedule, rate_tolerance=1e-4)  # d > t: not batched, exact again
    assert below.time_s == pytest.approx(exact.time_s, rel=1e-12)


@pytest.mark.parametrize(("d", "batched"), [(3e-3, True), (8e-3, False)])
def test_rate_tolerance_batches_later_completions_that_leave_little_capacity_idle(monkeypatch, d: float,
                                                                                  batched: bool) -> None:
    """N = 20 flows into one host at B/N each: A of size S, C of S(1 + d), 18 of 10 S. A ends at
    t_A = 2L + N S/B, its age N S/B; C would end d N S/B later, past the first rule's reach (tolerance t x age,
    d > t). Kept at B/N until then, A's share stays idle: d S bytes on each of A's links, under
    ``IDLE_SHARE`` x t x age x B = 0.3 t N S when d <= 0.3 N t = 6e-3. Then one rate solve serves both
    completions and C ends at t_A + d S N/B, not t_A + d S (N - 1)/B: d S/B late, about d/N of its time, within
    t. Links of 10 us: a batch stays within its lookahead window (the least route latency, 20 us)."""
    n, size, tolerance, latency_s = 20, 1e6, 1e-3, 10e-6
    fabric = Fabric(star_graph(n + 1, GBPS, latency_s * 1e6))
    schedule = Schedule(n + 1)
    sizes = np.array([size, size * (1 + d), *[10 * size] * (n - 2)])
    schedule.add(Pattern.of(n + 1, np.arange(n), np.full(n, n), sizes))
    t_a = 2 * latency_s + n * size / B
    batch, network = run_flow(fabric, schedule, rate_tolerance=tolerance)
    expected = t_a + d * size * (n if batched else n - 1) / B
    assert batch.rank_end_s[1] == pytest.approx(expected, rel=1e-12)
    monkeypatch.setattr(FluidCore, "IDLE_SHARE", 0.0)  # the first rule alone: C is too late for it
    first_rule, first_network = run_flow(fabric, schedule, rate_tolerance=tolerance)
    assert first_rule.rank_end_s[1] == pytest.approx(t_a + d * size * (n - 1) / B, rel=1e-12)
    assert network.core.n_rate_solves == first_network.core.n_rate_solves - batched
    late_s = batch.rank_end_s[1] - first_rule.rank_end_s[1]
    assert late_s == pytest.approx(batched * d * size / B, rel=1e-6, abs=1e-18)
    assert late_s / first_rule.rank_end_s[1] < tolerance


@pytest.mark.parametrize("latency_us", [10.0, 0.01])
def test_a_completion_batch_reaches_past_its_lookahead_window(latency_us: float) -> None:
    """The case above (d = 3e-3, batched) with links of 10 ns: C ends d N S/B = 4.8 us after A, 240 lookahead
    windows later. The batch still holds both completions (their capacity idle until C ends, the same closed
    form, the same rate solves): a window's end does not cut it, only an arrival would."""
    n, size, d, tolerance = 20, 1e6, 3e-3, 1e-3
    fabric = Fabric(star_graph(n + 1, GBPS, latency_us))
    schedule = Schedule(n + 1)
    sizes = np.array([size, size * (1 + d), *[10 * size] * (n - 2)])
    schedule.add(Pattern.of(n + 1, np.arange(n), np.full(n, n), sizes))
    batch, network = run_flow(fabric, schedule, rate_tolerance=tolerance)
    t_a = 2 * latency_us * 1e-6 + n * size / B
    assert latency_us > 1 or d * size * n / B > 200 * fabric.min_route_latency_s()
    assert batch.rank_end_s[1] == pytest.approx(t_a + d * size * n / B, rel=1e-12)
    assert network.core.n_rate_solves == 2  # the arrivals; A and C (the other 18 end together, leaving none)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=600), st.integers(1, 700), st.integers(0, 7))
def test_a_completion_batchs_partial_order_is_the_stable_sorts_prefix(values: list[int], k: int, upto: int) -> None:
    """``_completion_batch`` sorts only the first finishers: every finish time <= some t <= its reach, at least the
    k first when there are, in the order of a stable argsort (ties, common, by row). Up to 600 values, so that the
    threshold read from every 64th one is exercised, short included."""
    array = np.array(values, dtype=float)
    got = _least_in_order(array, k, float(upto))
    within = int(np.count_nonzero(array <= upto))
    assert min(k, within) <= len(got) <= within
    assert got.tolist() == np.argsort(array, kind="stable")[: len(got)].tolist()
    assert len(got) == within or array[got].max() < array[np.argsort(array, kind="stable")[len(got)]]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 50), st.integers(0, 60), st.integers(0, 60))
def test_the_largest_batch_is_found_from_any_guess(lo: int, answer: int, guess: int) -> None:
    """``_largest_true`` galloping from a right guess, a wrong one or none: the answer of a scan, asking only
    inside [lo, hi] and never lo itself (the first rule's batch, taken whatever its idle capacity)."""
    hi, asked = lo + 40, []

    def ok(k: int) -> bool:
        asked.append(k)
        return k <= answer

    assert _largest_true(lo, hi, ok, guess) == max(lo, min(answer, hi))
    assert all(lo < k <= hi for k in asked)
    if lo < guess == answer < hi:
        assert sorted(asked) == [answer, answer + 1]


@pytest.mark.parametrize("seed", [6, 8])
def test_completion_batches_from_a_compiled_guess_are_the_galloping_ones(monkeypatch, seed: int) -> None:
    """At 1e-2 the idle-capacity rule sets most batches' ends; compiled, ``batch_guess`` guesses each from prefix
    sums and two exact checks confirm it. Every rank's end and link's bytes: the bits of galloping from the first
    rule's batch without numba, on the all-to-alls above. (This caught a batch cut to the flows sorted before the
    search, where nothing was sorted ahead of it: without numba.)"""
    rng = np.random.default_rng(seed)
    fabric = Fabric(fattree_graph(4, latency_us=float(rng.uniform(0.1, 2.0))))
    src, dst = np.nonzero(~np.eye(fabric.n_hosts, dtype=bool))
    schedule = Schedule(fabric.n_hosts)
    for _ in range(3):
        schedule.add(Pattern.of(fabric.n_hosts, src, dst, rng.uniform(1e3, 1e6, len(src))))
    batches, largest = [], fluid._largest_true  # each batch's first rule's size, guess and answer

    def recorded(lo: int, hi: int, ok, guess: int) -> int:
        batches.append((lo, guess, largest(lo, hi, ok, guess)))
        return batches[-1][-1]

    monkeypatch.setattr(fluid, "_largest_true", recorded)
    monkeypatch.setattr(fabric_module, "COMPILED_ENTRIES", -1)
    guessed, guessed_network = run_flow(fabric, schedule, rate_tolerance=1e-2)
    assert sum(answer > lo for lo, _, answer in batches) > 5  # batches past the first rule's
    assert all(guess == answer for _, guess, answer in batches)  # each confirmed by two exact checks
    monkeypatch.setattr(fabric_module, "COMPILED_ENTRIES", 10**12)
    monkeypatch.delitem(sys.modules, "simulator.network.compiled")  # numba not loaded: no guess, galloping
    galloping, network = run_flow(fabric, schedule, rate_tolerance=1e-2)
    assert "simulator.network.compiled" not in sys.modules
    np.testing.assert_array_equal(guessed.rank_end_s, galloping.rank_end_s)
    np.testing.assert_array_equal(guessed_network.link_bytes(), network.link_bytes())


def test_rate_tolerance_batches_arrivals_within_its_share_of_the_route_latency() -> None:
    """Two flows of S into one host, the second ready d later. Exact: the first runs alone for d, both end
    by 2L + 2S/B, the first d earlier. Batched (d < tolerance x L_min, L_min = 2L): both start at 2L + d and
    end together at 2L + d + 2S/B, with one rate solve instead of three."""
    size, delay = 1e6, 1e-9
    fabric = Fabric(star_graph(3, GBPS, LATENCY_US))
    schedule = Schedule(3)
    schedule.add(Pattern.of(3, np.array([0, 1]), np.array([2, 2]), np.array([size, size])))

    def run(tolerance: float):
        network = FlowNetwork(fabric, check_capacity=True, rate_tolerance=tolerance)
        done = network.start(schedule, ready_s=np.array([0.0, delay, 0.0]))
        network.env.run(until=done)
        return done.value.rank_end_s, network.core.n_rate_solves

    (exact, solves_exact), (batched, solves_batched) = run(0.0), run(1e-3)
    assert delay < 1e-3 * fabric.min_route_latency_s() == pytest.approx(1e-3 * 2 * L)
    assert exact[:2] == pytest.approx([2 * L + 2 * size / B - delay, 2 * L + 2 * size / B], rel=1e-12)
    assert batched[:2] == pytest.approx([2 * L + delay + 2 * size / B] * 2, rel=1e-12)
    assert (solves_exact, solves_batched) == (3, 1)
    assert batched[0] - exact[0] == pytest.approx(2 * delay, rel=1e-6)  # started d late and lost d alone
    apart, solves_apart = run(1e-4)  # the delay exceeds the slack: two arrivals (the completions are batched)
    assert apart[0] == pytest.approx(exact[0], rel=1e-12) and solves_apart == 2


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_rate_tolerance_stays_within_its_bound_on_random_traffic(seed: int) -> None:
    """The default tolerance moves every rank's end by less than its stated bound (``TOLERANCE_BOUND`` x the
    tolerance, relative); bytes are unchanged. Ranks join up to 4 ns apart, so that arrivals are batched too
    (the slack is 1e-3 x 0.2-4 us)."""
    fabric, schedule = _random_traffic(seed)
    ready_s = np.random.default_rng(seed).uniform(0, 4e-9, schedule.n_ranks)
    exact, _ = run_flow(fabric, schedule, ready_s, rate_tolerance=0.0)
    batched, network = run_flow(fabric, schedule, ready_s)  # check_capacity is on: never over capacity
    bound = TOLERANCE_BOUND * network.core.rate_tolerance
    assert np.allclose(batched.rank_end_s, exact.rank_end_s, rtol=bound, atol=0)
    assert np.allclose(batched.sent_bytes, exact.sent_bytes, rtol=1e-12)  # summed in another order


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(3, 16), st.sampled_from(["alltoall", "allreduce", "allgather"]),
       st.sampled_from([1 << 16, 1 << 20, 8 << 20]), st.sampled_from([1e-3, 1e-2]))
def test_rate_tolerance_bound_holds_on_heterogeneous_links_and_latencies(seed: int, n: int, op: str, size: int,
                                                                       tolerance: float) -> None:
    """A star whose host links run at 10-100 Gb/s with 1-10 us latencies, so completions never coincide.
    There a tolerance moves a rank's end by more than the tolerance itself (1.07 x at 1e-3 was the worst of
    300 random stars), but within ``TOLERANCE_BOUND`` x it."""
    rng = np.random.default_rng(seed)
    graph = nx.Graph(hosts=[f"h{i}" for i in range(n)])
    graph.add_node("sw", kind="switch")
    for i in range(n):
        graph.add_node(f"h{i}", kind="host")
        graph.add_edge(f"h{i}", "sw", link_gbps=float(rng.uniform(10, 100)), latency_us=float(rng.uniform(1, 10)))
    fabric = Fabric(graph)
    schedule = build_schedule(op, "direct" if op == "alltoall" else "ring", float(size), n)
    ready_s = rng.uniform(0, 4e-9, n)
    exact, _ = run_flow(fabric, schedule, ready_s, rate_tolerance=0.0)
    batched, _ = run_flow(fabric, schedule, ready_s, rate_tolerance=tolerance)
    assert np.allclose(batched.rank_end_s, exact.rank_end_s, rtol=TOLERANCE_BOUND * tolerance, atol=0)
    assert np.allclose(batched.sent_bytes, exact.sent_bytes, rtol=1e-12)


def _reference_max_min(routes: list[list[int]], capacity: list[float]) -> list[float]:
    """Textbook progressive filling, one flow at a time, in plain Python."""
    rate = [0.0] * len(routes)
    frozen = [not r for r in routes]
    left = list(capacity)
    while not all(frozen):
        users = {link: [f for f, r in enumerate(routes) if link in r and not frozen[f]] for link in range(len(left))}
        inc = min(left[link] / len(fs) for link, fs in users.items() if fs)
        for f in range(len(routes)):
            if not frozen[f]:
                rate[f] += inc
                for link in routes[f]:
                    left[link] -= inc
        for link, fs in users.items():
            if fs and left[link] <= 1e-9 * capacity[link]:
                for f in fs:
                    frozen[f] = True
    return [r if routes[f] else np.inf for f, r in enumerate(rate)]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_max_min_matches_reference(data: st.DataObject) -> None:
    n_links = data.draw(st.integers(1, 6))
    capacity = data.draw(st.lists(st.floats(1.0, 100.0), min_size=n_links, max_size=n_links))
    routes = data.draw(st.lists(st.lists(st.integers(0, n_links - 1), unique=True, max_size=n_links),
                                min_size=1, max_size=10))
    width = max(1, max(len(r) for r in routes))
    matrix = np.array([r + [-1] * (width - len(r)) for r in routes])
    expected = _reference_max_min(routes, capacity)
    for solver in (fill_levels, by_local_minima):
        got = solver(matrix, np.array(capacity))
        assert np.allclose(got, expected, rtol=1e-7)
        load = np.zeros(n_links)
        for f, r in enumerate(routes):
            for link in r:
                load[link] += got[f]
        assert np.all(load <= np.array(capacity) * (1 + 1e-9))


@pytest.mark.parametrize("seed", range(4))
def test_max_min_solvers_agree_on_instances_with_many_levels(seed: int) -> None:
    """60 links and 200 flows (shares tied to 0.1 so that some links fill together): the compiled heap filling
    pops one bottleneck at a time and re-pushes links whose share grew; both solvers give the reference's rates."""
    rng = np.random.default_rng(seed)
    n_links = 60
    capacity = rng.uniform(1.0, 100.0, n_links).round(1).tolist()
    routes = [rng.choice(n_links, int(rng.integers(1, 6)), replace=False).tolist() for _ in range(200)]
    matrix = np.array([r + [-1] * (5 - len(r)) for r in routes])
    expected = _reference_max_min(routes, capacity)
    for solver in (fill_levels, by_local_minima):
        assert np.allclose(solver(matrix, np.array(capacity)), expected, rtol=1e-7)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_flows_on_one_route_solved_as_one_weighted_class_get_the_unreduced_rates(seed: int, compiled: bool) -> None:
    """The one symmetry exact on any fabric: flows crossing the same links get the same max-min rate (the
    allocation is unique), so the routes can be solved once, weighted by how many flows take each, and expanded.
    Checked against the unreduced solve (issue 18's symmetry classes; docs/NETWORK_MODEL.md says why the engine
    does not reduce: no recommender strategy ever has two coupled flows on one route)."""
    rng = np.random.default_rng(seed)
    n_links = int(rng.integers(2, 30))
    table = np.full((int(rng.integers(1, 12)), 4), -1)
    for row in table:
        links = rng.choice(n_links, int(rng.integers(1, min(4, n_links) + 1)), replace=False)
        row[: len(links)] = links
    capacity = rng.uniform(1.0, 100.0, n_links)
    flows = rng.integers(0, len(table), int(rng.integers(1, 80)))  # route row of each flow, many repeated
    unreduced = maxmin.max_min_rates(table, capacity, rows=flows, compiled=compiled)
    routes, flow_class, multiplicity = np.unique(flows, return_inverse=True, return_counts=True)
    class_rate = maxmin.weighted_max_min_rates(table, capacity, np.ones(table.shape), multiplicity.astype(float),
                                               np.full(len(routes), np.inf), rows=routes, compiled=compiled)
    assert np.allclose(class_rate[flow_class] / multiplicity[flow_class], unreduced, rtol=1e-9)


def test_run_started_later_by_another_process_shares_exactly() -> None:
    """A simpy process starts a second run mid-flight; the first must slow down exactly when it joins."""
    import simpy

    from simulator.network.flow import FlowNetwork

    fabric = Fabric(star_graph(3, GBPS, LATENCY_US))
    network = FlowNetwork(fabric, simpy.Environment(), check_capacity=True)
    size, join_s = 1e6, 30e-6
    first, second = Schedule(3), Schedule(3)
    first.add(Pattern.of(3, [0], [2], size))
    second.add(Pattern.of(3, [1], [2], size))
    results = {}

    def starter(env: simpy.Environment):
        results["a"] = network.start(first)
        yield env.timeout(join_s)
        results["b"] = network.start(second)

    network.env.process(starter(network.env))
    network.env.run()
    a, b = results["a"].value, results["b"].value
    b_moves = join_s + 2 * L  # B starts moving after its route latency
    a_left = size - B * (b_moves - 2 * L)
    a_end = b_moves + 2 * a_left / B
    assert a.end_s == pytest.approx(a_end, rel=1e-12)
    assert b.start_s == pytest.approx(join_s, rel=1e-12)
    assert b.end_s == pytest.approx(a_end + (size - (a_end - b_moves) * B / 2) / B, rel=1e-12)


def test_streamed_analytical_profile_equals_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Huge patterns are routed chunk by chunk without caching; the answer must not change."""
    import simulator.network.analytical as analytical

    schedule = build_schedule("alltoall", "direct", 64e6, 16)
    cached = AnalyticalNetwork(Fabric(fattree_graph(4))).schedule_time_s(schedule)
    monkeypatch.setattr(analytical, "STREAM_MESSAGES", 7)
    monkeypatch.setattr(analytical, "CACHED_MESSAGES", 7)
    fabric = Fabric(fattree_graph(4))
    streamed = AnalyticalNetwork(fabric).schedule_time_s(schedule)
    assert fabric.n_routes == 0  # nothing was cached
    assert streamed[0] == cached[0]
    assert np.allclose(streamed[1], cached[1], rtol=1e-12)


def test_a_step_profile_keeps_the_slowest_message_of_every_latency() -> None:
    """A profile keeps a few (latency, drain) pairs (per link: the longest latency through it and its drain;
    then the longest drain per latency); at every scale its time equals the slowest message, computed
    message by message."""
    from simulator.network.analytical import step_profile

    rng = np.random.default_rng(3)
    graph = fattree_graph(4)
    for i, (u, v) in enumerate(graph.edges):  # uneven latencies and rates: many distinct pairs
        graph.edges[u, v].update(latency_us=1.0 + i % 3, link_gbps=100.0 * (1 + i % 4))
    fabric = Fabric(graph)
    src, dst = rng.integers(0, 16, 300), rng.integers(0, 16, 300)
    pattern = Pattern.of(16, src, dst, rng.uniform(1e3, 1e6, 300))
    profile = step_profile(fabric, pattern, np.arange(16))
    ids = fabric.route_ids(pattern.src, pattern.dst)
    links = fabric.route_links[ids]
    load = np.bincount(links[links >= 0], weights=np.repeat(pattern.size_bytes, links.shape[1])[links.ravel() >= 0],
                       minlength=fabric.n_links)
    per_byte = load / fabric.capacity_Bps
    drain = np.array([per_byte[row[row >= 0]].max() for row in links])
    latency = fabric.route_latency_s[ids]
    assert len(profile.latency_s) <= len(np.unique(latency)) < len(pattern)
    for scale in (0.0, 0.3, 1.0, 50.0):
        assert profile.time_s(scale) == pytest.approx((latency + scale * drain).max(), rel=1e-12)
    assert np.allclose(profile.link_bytes, load, rtol=1e-12)


def test_a_flow_table_keeps_only_its_columns_and_gives_capacity_back() -> None:
    """A million flows arriving at once must not leave a million-row table behind once they have started."""
    table = _Table("route", "size", "t_act", "owner", "tag")
    n = 10_000
    rows = table.append(route=np.arange(n), size=np.full(n, 2.0), t_act=np.linspace(0, 1, n),
                        owner=np.zeros(n), tag=np.arange(n))
    assert sorted(table.cols) == ["owner", "route", "size", "t_act", "tag"] and table.route.dtype == np.int32
    table.kill(rows[:-10])
    assert np.isinf(table.t_act[:-10]).all()  # scans skip dead rows without a mask
    old = table.compact()
    assert old.tolist() == rows[-10:].tolist() and table.route.tolist() == list(range(n - 10, n))
    assert len(table.alive) == 2 * _Table.MIN_CAPACITY  # was 10,000 rows
    some = table.take(np.array([1, 3]))
    assert some["route"].tolist() == [n - 9, n - 7] and table.n_alive == 8
    table = _Table("route", "t_act")
    table.append(route=np.arange(n), t_act=np.ones(n))
    route = table.cols["route"]
    every = table.take(np.arange(n))  # all of them: the columns themselves, and an empty table
    assert np.shares_memory(every["route"], route) and every["route"].tolist() == list(range(n))
    assert table.n == table.n_alive == 0 and len(table.alive) == _Table.MIN_CAPACITY


def test_arrivals_join_the_coupled_table_in_chunks_with_the_same_result(monkeypatch) -> None:
    """Flows arriving at once are checked for shared links ``ARRIVALS_CHUNK`` at a time, their links counted in
    place past ``COMPILED_ENTRIES`` and their columns handed over or copied once (bounded temporaries when millions
    arrive): chunks of 3 and counting from 10 entries give every rank the same end and every link the same bytes."""
    fabric = Fabric(fattree_graph(4))
    schedule = build_schedule("alltoall", "direct", 8e6, fabric.n_hosts)  # 240 flows arrive together
    whole, network = run_flow(fabric, schedule)
    monkeypatch.setattr(FluidCore, "ARRIVALS_CHUNK", 3)
    monkeypatch.setattr(fabric_module, "COMPILED_ENTRIES", 10)
    chunked, chunked_network = run_flow(fabric, schedule)
    np.testing.assert_array_equal(chunked.rank_end_s, whole.rank_end_s)
    np.testing.assert_array_equal(chunked_network.link_bytes(), network.link_bytes())
