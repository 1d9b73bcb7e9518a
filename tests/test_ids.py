"""workloads.ids: expected distinct IDs against independent sums and Monte Carlo, and the seeded sampler."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import SpecError
from workloads import Table, load_workload
from workloads import ids as ids_mod
from workloads.ids import (
    EXACT_ROWS,
    draw_ids,
    expected_unique,
    expected_unique_per_worker,
    expected_unique_split,
    make_rng,
    popularity_probs,
    sample_batch_ids,
    sample_ids,
    unique_count,
    zipf_ranks_hybrid,
    zipf_unique_approx,
    zipf_unique_exact,
)


def table(**kw: object) -> Table:
    base = {"name": "t", "rows": 1000, "dim": 4, "params_per_id": 4}
    return Table(**{**base, **kw})


def brute_unique(rows: int, draws: float, popularity: str, alpha: float = 1.05) -> float:
    """sum_i (1 - (1 - p_i)^n) with probabilities built here, by plain powers."""
    i = np.arange(1, rows + 1, dtype=np.float64)
    p = np.full(rows, 1 / rows) if popularity == "uniform" else i**-alpha / np.sum(i**-alpha)
    return float(np.sum(1 - (1 - p) ** draws))


@pytest.mark.parametrize("rows", [1, 2, 7, 1000, 12345])
@pytest.mark.parametrize("draws", [0, 0.5, 1, 3, 100, 1e4, 1e7])
def test_uniform_closed_form_matches_the_sum_over_probabilities(rows: int, draws: float) -> None:
    assert expected_unique(rows, draws, "uniform") == pytest.approx(brute_unique(rows, draws, "uniform"),
                                                                    rel=1e-11, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 1.05, 2.0])
@pytest.mark.parametrize("draws", [1, 10, 1000, 1e6])
def test_zipf_exact_matches_a_direct_sum(alpha: float, draws: float) -> None:
    assert expected_unique(3000, draws, "zipf", alpha) == pytest.approx(brute_unique(3000, draws, "zipf", alpha),
                                                                        rel=1e-11)


def test_probabilities_sum_to_one_and_follow_zipf() -> None:
    p = popularity_probs(1000, "zipf", 1.2)
    assert p.sum() == pytest.approx(1, rel=1e-14)
    assert p[0] / p[9] == pytest.approx(10**1.2, rel=1e-12)
    assert np.allclose(popularity_probs(8), 1 / 8)
    with pytest.raises(SpecError):
        popularity_probs(EXACT_ROWS + 1, "zipf", 1.0)


@pytest.mark.parametrize(("rows", "alpha"), [(2**22, 0.5), (2**22, 1.05), (2**22, 1.5), (2**23, 1.5),
                                             (2**24, 1.05)])
def test_approximation_matches_the_exact_sum_at_the_switch_over(rows: int, alpha: float) -> None:
    """The bound the module doc states: relative error < 1e-12 (measured on the full grid: <= 2.1e-15)."""
    draws = np.array([1, 1e3, 1e6, 1e10])
    exact = zipf_unique_exact(rows, alpha, draws)
    approx = zipf_unique_approx(rows, alpha, draws)
    assert np.all(np.abs(approx - exact) / exact < 1e-12)


def test_switch_over_is_continuous() -> None:
    below = expected_unique(EXACT_ROWS, 1e6, "zipf", 1.05)
    above = expected_unique(EXACT_ROWS + 1, 1e6, "zipf", 1.05)
    assert abs(above - below) < 1  # one more row changes the count by less than one ID


def test_huge_vocabularies_are_sane() -> None:
    ids_mod._expected_unique.cache_clear()
    ids_mod.zipf_normalizer.cache_clear()
    for alpha in (0.5, 1.0, 1.05, 1.5):
        value = expected_unique(10**12, 1e6, "zipf", alpha)
        assert 0 < value <= 1e6
    assert expected_unique(10**12, 1e6, "uniform") == pytest.approx(1e6 - 1e12 * (1e6 / 1e12) ** 2 / 2, rel=1e-9)
    # alpha = 0.5 on 1e12 rows: almost every draw is new; alpha = 3 saturates at a few dozen IDs
    assert expected_unique(10**12, 1e5, "zipf", 0.5) > 0.999 * 1e5
    assert expected_unique(10**12, 1e5, "zipf", 3.0) < 100


@settings(max_examples=60, deadline=None)
@given(rows=st.one_of(st.integers(1, 20_000), st.integers(EXACT_ROWS + 1, 10**13)),
       n1=st.floats(1, 1e9), n2=st.floats(1, 1e9), popularity=st.sampled_from(["uniform", "zipf"]),
       alpha=st.floats(0.3, 3.0))
def test_monotone_in_draws_and_bounded(rows: int, n1: float, n2: float, popularity: str, alpha: float) -> None:
    lo, hi = sorted((n1, n2))
    u_lo, u_hi = (expected_unique(rows, n, popularity, alpha) for n in (lo, hi))
    assert u_lo <= u_hi * (1 + 1e-12)
    assert u_hi <= min(rows, hi) * (1 + 1e-12)
    assert u_lo >= 1 - 1e-12


@pytest.mark.parametrize("rows", [1, 5, 10**6, EXACT_ROWS + 7, 10**12])
@pytest.mark.parametrize("popularity", ["uniform", "zipf"])
def test_zero_and_one_draw(rows: int, popularity: str) -> None:
    assert expected_unique(rows, 0, popularity) == 0
    assert expected_unique(rows, 1, popularity) == pytest.approx(1, rel=1e-12)


def test_split_and_per_worker() -> None:
    assert expected_unique_split(10**6, 5e4, "zipf", 1.1, 8) == pytest.approx(
        expected_unique(10**6, 5e4, "zipf", 1.1) / 8, rel=1e-15)
    wl = load_workload("dlrm-small", ["tables.t1.hotness=3", "tables.t2.fields=2"])
    per = expected_unique_per_worker(wl, 100)
    assert per["t0"] == pytest.approx(expected_unique(100_000, 100, "uniform"))
    assert per["t1"] == pytest.approx(expected_unique(100_000, 300, "uniform"))
    assert per["t2"] == pytest.approx(expected_unique(100_000, 200, "uniform"))


@pytest.mark.parametrize(("args", "field"), [
    ((0, 10, "uniform"), "rows"), ((10, -1, "uniform"), "draws"), ((10, 5, "zipf", 0.0), "zipf_alpha"),
    ((10, 5, "pareto"), "popularity"), ((10, float("nan"), "uniform"), "draws"),
])
def test_bad_arguments_are_spec_errors(args: tuple, field: str) -> None:
    with pytest.raises(SpecError) as err:
        expected_unique(*args)
    assert err.value.field == field and "\n" not in str(err.value)


# ----- sampling ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [
    {"rows": 1000}, {"rows": 1000, "popularity": "zipf"}, {"rows": 10**12, "popularity": "zipf"},
    {"rows": 10**12}, {"rows": 50, "hotness": 7, "replacement": False, "popularity": "zipf"},
])
def test_sample_shape_range_dtype_and_determinism(spec: dict) -> None:
    t = table(fields=3, hotness=spec.pop("hotness", 2), **spec)
    a = sample_ids(make_rng(5, 1, 2), t, 64)
    assert a.shape == (64, 3 * t.hotness) and a.dtype == np.int64
    assert a.min() >= 0 and a.max() < t.rows
    assert np.array_equal(a, sample_ids(make_rng(5, 1, 2), t, 64))
    assert not np.array_equal(a, sample_ids(make_rng(5, 1, 3), t, 64))


def test_batch_draws_tables_in_order_from_one_generator() -> None:
    wl = load_workload("dlrm-small", ["popularity=zipf", "hotness=2"])
    batch = sample_batch_ids(wl, 32, make_rng(0, 3, 4))
    rng = make_rng(0, 3, 4)
    for t in wl.tables:
        assert np.array_equal(batch[t.name], sample_ids(rng, t, 32))
    assert list(batch) == [t.name for t in wl.tables]


def test_zipf_frequencies_match_the_probabilities() -> None:
    """Chi-square of 200k exact-CDF draws against p: within 5 standard deviations of its mean (df)."""
    rows, n = 60, 200_000
    counts = np.bincount(draw_ids(make_rng(1, 0, 0), rows, "zipf", 1.2, n), minlength=rows)
    expected = n * popularity_probs(rows, "zipf", 1.2)
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert chi2 < (rows - 1) + 5 * math.sqrt(2 * (rows - 1))


def test_hybrid_sampler_beyond_exact_rows_matches_zipf() -> None:
    """The head + continuous-tail sampler (used above EXACT_ROWS), tried with a small head on 5000 rows."""
    rows, n, alpha = 5000, 400_000, 1.1
    ranks = zipf_ranks_hybrid(make_rng(2, 0, 0).random(n), rows, alpha, head=16)
    assert ranks.min() >= 0 and ranks.max() < rows
    p = popularity_probs(rows, "zipf", alpha)
    edges = np.concatenate([np.arange(40), np.geomspace(40, rows, 30).astype(int)])
    edges = np.unique(np.append(edges, rows))
    counts = np.add.reduceat(np.bincount(ranks, minlength=rows), edges[:-1])
    expected = n * np.add.reduceat(p, edges[:-1])
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    df = len(expected) - 1
    assert chi2 < df + 5 * math.sqrt(2 * df)
    huge = zipf_ranks_hybrid(make_rng(3, 0, 0).random(10_000), 10**12, 1.05)
    assert huge.min() == 0 and huge.max() < 10**12


@pytest.mark.parametrize("spec", [
    {"rows": 1000, "hotness": 5},  # redraw rule
    {"rows": 2**16 + 1, "hotness": 4, "popularity": "zipf", "zipf_alpha": 1.5},  # redraw rule, skewed
    {"rows": 12, "hotness": 12},  # Gumbel top-k
    {"rows": 100, "hotness": 30, "popularity": "zipf", "zipf_alpha": 2.0},  # Gumbel top-k
])
def test_without_replacement_has_no_repeat_within_a_group(spec: dict) -> None:
    t = table(fields=4, replacement=False, **spec)
    a = sample_ids(make_rng(0, 0, 0), t, 500)
    groups = np.sort(a.reshape(-1, t.hotness), axis=1)
    assert not np.any(groups[:, 1:] == groups[:, :-1])
    if t.hotness == t.rows:
        assert np.all(groups == np.arange(t.rows))


@pytest.mark.parametrize("rows", [3, 2**16 + 1])  # Gumbel top-k, redraw rule
def test_without_replacement_is_successive_sampling(rows: int) -> None:
    """P(the pair {0, 1}) = p0 p1 / (1 - p0) + p1 p0 / (1 - p1) (pick one, then the other among the rest)."""
    alpha, groups = 1.5, 40_000
    t = table(rows=rows, hotness=2, replacement=False, popularity="zipf", zipf_alpha=alpha)
    pairs = np.sort(sample_ids(make_rng(4, 0, 0), t, groups), axis=1)
    h = ids_mod.zipf_normalizer(rows, alpha)
    p0, p1 = 1 / h, 2**-alpha / h
    want = p0 * p1 / (1 - p0) + p1 * p0 / (1 - p1)
    got = np.mean((pairs[:, 0] == 0) & (pairs[:, 1] == 1))
    assert abs(got - want) < 4 * math.sqrt(want * (1 - want) / groups)


@pytest.mark.parametrize(("popularity", "rows"), [("uniform", 3000), ("zipf", 3000), ("zipf", 2**24 + 1)])
def test_mean_unique_of_sampled_batches_matches_expected_unique(popularity: str, rows: int) -> None:
    """300 seeded batches of 200 samples x 3 fields x 2 IDs: mean distinct count within 3 standard errors."""
    t = table(rows=rows, fields=3, hotness=2, popularity=popularity, zipf_alpha=1.05)
    counts = np.array([unique_count(sample_ids(make_rng(11, 0, step), t, 200)) for step in range(300)])
    want = expected_unique(rows, 200 * 3 * 2, popularity, 1.05)
    assert abs(counts.mean() - want) < 3 * counts.std(ddof=1) / math.sqrt(len(counts))


def test_make_rng_refuses_negative_or_non_integer_seeds() -> None:
    with pytest.raises(SpecError):
        make_rng(-1, 0, 0)
    with pytest.raises(SpecError):
        make_rng(0, 1.5, 0)  # type: ignore[arg-type]
    assert unique_count(np.array([[3, 3], [4, 3]])) == 2
