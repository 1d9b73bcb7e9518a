"""ID popularity: expected distinct IDs (what predicted PS traffic rests on) and seeded ID sampling.

IDs of a table are 0..rows-1. ``uniform``: every ID has probability 1/rows. ``zipf``: the ID of rank i
(i = 1..rows) is ``i - 1`` and has probability p_i = i^-alpha / H(rows, alpha), H = sum_i i^-alpha (the
generalized harmonic number), so ID 0 is the most popular and ``id mod parts`` spreads the head over parts.

Expected distinct IDs among n independent draws: U(n) = sum_i (1 - (1 - p_i)^n), evaluated as
sum_i -expm1(n * log1p(-p_i)) (no cancellation for tiny p_i or huge n).

- uniform: closed form rows * -expm1(n * log1p(-1/rows)), any rows (1e12 included).
- zipf, rows <= EXACT_ROWS (2**24): the exact sum, in numpy chunks of 2**20 rows (H summed the same way).
- zipf, rows > EXACT_ROWS: the exact sum over the HEAD_ROWS (2**16) most popular IDs, plus the tail
  i = a..rows (a = HEAD_ROWS + 1) by Euler–Maclaurin: integral_a^rows g(x) dx + (g(a) + g(rows))/2 +
  (g'(rows) - g'(a))/12, g(x) = -expm1(n log1p(-x^-alpha / H)), the integral by composite Gauss–Legendre in
  log x. H is computed the same way (exact head + Euler–Maclaurin tail, closed-form integral, terms up to
  f'''). The neglected Euler–Maclaurin remainder is of relative order (alpha / a)^3 / 720 ~ 1e-17.
  Measured against the exact sum at rows = 2**22, 2**23, 2**24, alpha in {0.5, 1.05, 1.5} and draws in
  {1, 10, 1e3, 1e5, 1e6, 1e7, 1e8, 1e10}: relative error at most 2.1e-15 (float rounding); the tests assert
  < 1e-12. Cost: about 0.5-2 ms for any rows (1e12 and beyond); the exact sum at 2**24 rows about 60 ms.
  Results are cached per (rows, draws, popularity, alpha).

Sampling (``ids=sampled``; the PyTorch executor calls the same functions, so predicted and measured bytes
agree exactly): ``make_rng(seed, worker, step)`` is ``np.random.default_rng([seed, worker, step])``;
``sample_batch_ids`` draws the tables in workload order from that one generator; each table gives an int64
array (n_samples, fields * hotness) whose columns ``f*hotness .. (f+1)*hotness - 1`` are field f's IDs.
Uniform: ``rng.integers``. Zipf: one ``rng.random()`` per ID, mapped by the inverse CDF: exactly
(``np.searchsorted`` on the cumulative probabilities, cached) when rows <= EXACT_ROWS; above, exactly over the
HEAD_ROWS most popular IDs and, for the tail, by the continuous inverse CDF of x^-alpha on
[HEAD_ROWS + 1/2, rows + 1/2] rounded to the nearest rank (a midpoint rule: each tail rank's probability is
off by a relative alpha (alpha + 1) / (24 i^2) < 1e-9 for alpha <= 2).
Without replacement (``replacement: false``) a (sample, field) group keeps the first ``hotness`` distinct
IDs of its stream of i.i.d. draws (successive sampling, vectorized: duplicates are redrawn in rounds); for
tables of <= 2**16 rows where redraws would be slow (the hotness - 1 most popular IDs hold most of the mass)
the same law is drawn with the Gumbel-top-k trick instead.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import lru_cache

import numpy as np

from simulator.errors import SpecError, check_choice
from workloads.spec import Table, Workload

EXACT_ROWS = 2**24
HEAD_ROWS = 2**16
CHUNK_ROWS = 2**20
CDF_CACHE_BYTES = 512 * 2**20
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(20)
_MAX_ROUNDS = 100_000
GUMBEL_MAX_ROWS = 2**16
_POPULARITIES = ("uniform", "zipf")


# ----- validation ------------------------------------------------------------------------------------------
def _check(rows: int, popularity: str, zipf_alpha: float) -> None:
    if isinstance(rows, bool) or not isinstance(rows, int | np.integer) or rows < 1:
        raise SpecError("rows", rows, "allowed: an integer >= 1")
    check_choice("popularity", popularity, _POPULARITIES)
    if popularity == "zipf" and not (math.isfinite(zipf_alpha) and zipf_alpha > 0):
        raise SpecError("zipf_alpha", zipf_alpha, "allowed: > 0")


def _check_draws(draws: float) -> float:
    draws = float(draws)
    if not (math.isfinite(draws) and draws >= 0):
        raise SpecError("draws", draws, "allowed: a finite number >= 0")
    return draws


# ----- Zipf normalizer -------------------------------------------------------------------------------------
def _weights(start: int, stop: int, alpha: float) -> np.ndarray:
    """i^-alpha for ranks i = start..stop-1 (float64)."""
    return np.arange(start, stop, dtype=np.float64) ** -alpha


def _power_integral(a: float, b: float, alpha: float) -> float:
    """integral_a^b x^-alpha dx, stable for alpha near 1."""
    if alpha == 1.0:
        return math.log(b / a)
    return a ** (1 - alpha) * math.expm1((1 - alpha) * math.log(b / a)) / (1 - alpha)


@lru_cache(maxsize=1024)
def zipf_normalizer(rows: int, alpha: float) -> float:
    """H(rows, alpha) = sum_{i=1}^{rows} i^-alpha: exact (chunked) for rows <= EXACT_ROWS, else the exact head
    of HEAD_ROWS terms plus an Euler–Maclaurin tail (closed-form integral, corrections up to f''')."""
    if rows <= EXACT_ROWS:
        return float(sum(_weights(s, min(s + CHUNK_ROWS, rows + 1), alpha).sum()
                         for s in range(1, rows + 1, CHUNK_ROWS)))
    a, b = HEAD_ROWS + 1, rows
    head = float(_weights(1, a, alpha).sum())
    d1 = -alpha * (b ** (-alpha - 1) - a ** (-alpha - 1))
    d3 = -alpha * (alpha + 1) * (alpha + 2) * (b ** (-alpha - 3) - a ** (-alpha - 3))
    return head + _power_integral(a, b, alpha) + (a**-alpha + b**-alpha) / 2 + d1 / 12 - d3 / 720


def popularity_probs(rows: int, popularity: str = "uniform", zipf_alpha: float = 1.05) -> np.ndarray:
    """Probability of each ID 0..rows-1 (float64, sums to 1); rows <= EXACT_ROWS (materialized)."""
    _check(rows, popularity, zipf_alpha)
    if rows > EXACT_ROWS:
        raise SpecError("rows", rows, f"allowed: <= {EXACT_ROWS} to materialize probabilities")
    if popularity == "uniform":
        return np.full(rows, 1.0 / rows)
    return _weights(1, rows + 1, zipf_alpha) / zipf_normalizer(rows, zipf_alpha)


# ----- expected distinct IDs -------------------------------------------------------------------------------
def _unique_terms_sum(p: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """sum_i -expm1(n log1p(-p_i)) for every n in ``draws`` (all > 0)."""
    with np.errstate(divide="ignore"):
        log_q = np.log1p(-p)
    return np.array([-np.expm1(n * log_q).sum() for n in draws])


def zipf_unique_exact(rows: int, alpha: float, draws: np.ndarray) -> np.ndarray:
    """The exact Zipf sum for each (positive) number of draws; cost proportional to rows."""
    draws = np.asarray(draws, dtype=np.float64)
    norm = zipf_normalizer(rows, alpha) if rows <= EXACT_ROWS else _exact_normalizer(rows, alpha)
    total = np.zeros(draws.shape)
    for start in range(1, rows + 1, CHUNK_ROWS):
        total += _unique_terms_sum(_weights(start, min(start + CHUNK_ROWS, rows + 1), alpha) / norm, draws)
    return total


@lru_cache(maxsize=16)
def _exact_normalizer(rows: int, alpha: float) -> float:
    return float(sum(_weights(s, min(s + CHUNK_ROWS, rows + 1), alpha).sum() for s in range(1, rows + 1, CHUNK_ROWS)))


def zipf_unique_approx(rows: int, alpha: float, draws: np.ndarray) -> np.ndarray:
    """Exact head (HEAD_ROWS ranks) + Euler–Maclaurin tail (module doc); rows > HEAD_ROWS, draws > 0."""
    draws = np.asarray(draws, dtype=np.float64)
    norm = zipf_normalizer(rows, alpha)
    a, b = HEAD_ROWS + 1, rows
    head = _unique_terms_sum(_weights(1, a, alpha) / norm, draws)
    lo, hi = math.log(a), math.log(b)
    panels = max(1, math.ceil((hi - lo) * max(2.0, 2.0 * alpha)))
    edges = np.linspace(lo, hi, panels + 1)
    half = np.diff(edges)[:, None] / 2
    t = (edges[:-1, None] + half) + half * _GL_NODES[None, :]
    x = np.exp(t).ravel()
    wx = (half * _GL_WEIGHTS[None, :]).ravel() * x  # dx = x dt
    p_x = x**-alpha / norm
    log_q = np.log1p(-p_x)
    ends = np.array([a, b], dtype=np.float64)
    p_e = ends**-alpha / norm
    log_qe = np.log1p(-p_e)
    out = np.empty(draws.shape)
    for j, n in enumerate(draws):
        integral = float(np.dot(-np.expm1(n * log_q), wx))
        g = -np.expm1(n * log_qe)
        dg = -alpha * n * p_e * np.exp((n - 1) * log_qe) / ends
        out[j] = head[j] + integral + (g[0] + g[1]) / 2 + (dg[1] - dg[0]) / 12
    return out


@lru_cache(maxsize=65536)
def _expected_unique(rows: int, draws: float, popularity: str, zipf_alpha: float) -> float:
    if draws == 0:
        return 0.0
    if rows == 1:
        return 1.0
    if popularity == "uniform":
        return rows * -math.expm1(draws * math.log1p(-1.0 / rows))
    method = zipf_unique_exact if rows <= EXACT_ROWS else zipf_unique_approx
    return float(method(rows, zipf_alpha, np.array([draws]))[0])


def expected_unique(rows: int, draws: float, popularity: str = "uniform", zipf_alpha: float = 1.05) -> float:
    """Expected number of distinct IDs among ``draws`` independent draws from a table of ``rows`` IDs:
    sum_i (1 - (1 - p_i)^draws). Exact for uniform and for Zipf up to EXACT_ROWS rows; above, the controlled
    approximation of the module doc (relative error < 1e-12). ``draws`` may be fractional (an expected
    count); U(0) = 0, U(1) = 1, U is increasing and, for draws >= 1, <= min(rows, draws). Cached."""
    _check(rows, popularity, zipf_alpha)
    return _expected_unique(int(rows), _check_draws(draws), popularity, float(zipf_alpha))


def expected_unique_split(rows: int, draws: float, popularity: str, zipf_alpha: float, parts: int) -> float:
    """Expected distinct IDs landing in ONE of ``parts`` equal hash partitions: ``expected_unique / parts``.

    Exact for the mean over the partitions (they sum to the total) and, for any single partition, exact
    for a uniform hash. With ``id mod parts`` and Zipf the partitions holding the head get slightly more.
    """
    if isinstance(parts, bool) or not isinstance(parts, int | np.integer) or parts < 1:
        raise SpecError("parts", parts, "allowed: an integer >= 1")
    return expected_unique(rows, draws, popularity, zipf_alpha) / parts


def expected_unique_per_worker(workload: Workload, batch_samples: int) -> dict[str, float]:
    """Expected distinct IDs per table in one worker's batch of ``batch_samples`` samples, with
    draws = batch_samples * fields * hotness. Exact for ``replacement: true``; for ``replacement: false``
    (no repeat within one sample-field group) an approximation that treats the draws as independent (it
    slightly undercounts: in-group repeats are excluded in the real batch)."""
    return {t.name: expected_unique(t.rows, batch_samples * t.fields * t.hotness, t.popularity, t.zipf_alpha)
            for t in workload.tables}


def unique_count(ids: np.ndarray) -> int:
    """Number of distinct IDs in an array of any shape."""
    return int(np.unique(np.asarray(ids)).size)


# ----- sampling --------------------------------------------------------------------------------------------
def make_rng(seed: int, worker: int, step: int) -> np.random.Generator:
    """The generator of ``worker`` at training ``step``: ``np.random.default_rng([seed, worker, step])``
    (a SeedSequence of the three non-negative integers: streams are independent and reproducible)."""
    for name, value in (("seed", seed), ("worker", worker), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise SpecError(name, value, "allowed: an integer >= 0")
    return np.random.default_rng([int(seed), int(worker), int(step)])


_CDF_CACHE: OrderedDict[tuple[int, float], np.ndarray] = OrderedDict()


def _zipf_cdf(rows: int, alpha: float) -> np.ndarray:
    """Cumulative Zipf probabilities of ranks 1..rows (last exactly 1.0); cached up to CDF_CACHE_BYTES."""
    key = (rows, alpha)
    if key in _CDF_CACHE:
        _CDF_CACHE.move_to_end(key)
        return _CDF_CACHE[key]
    cdf = np.empty(rows)
    offset = 0.0
    for start in range(1, rows + 1, CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, rows + 1)
        w = _weights(start, stop, alpha)
        cdf[start - 1:stop - 1] = offset + np.cumsum(w)
        offset += float(w.sum())
    cdf /= cdf[-1]
    _CDF_CACHE[key] = cdf
    while sum(c.nbytes for c in _CDF_CACHE.values()) > CDF_CACHE_BYTES and len(_CDF_CACHE) > 1:
        _CDF_CACHE.popitem(last=False)
    return cdf


@lru_cache(maxsize=64)
def _zipf_head(alpha: float, head: int) -> np.ndarray:
    """Unnormalized cumulative weights of ranks 1..head."""
    return np.cumsum(_weights(1, head + 1, alpha))


def zipf_ranks_hybrid(u: np.ndarray, rows: int, alpha: float, head: int = HEAD_ROWS) -> np.ndarray:
    """0-based IDs for uniforms ``u`` in [0, 1): exact inverse CDF over the ``head`` first ranks, continuous
    inverse CDF of x^-alpha on [head + 1/2, rows + 1/2] rounded to the nearest rank beyond (module doc)."""
    cum = _zipf_head(alpha, head)
    s_head = float(cum[-1])
    a = head + 0.5
    total = s_head + _power_integral(a, rows + 0.5, alpha)
    t = np.asarray(u, dtype=np.float64) * total
    ids = np.empty(t.shape, dtype=np.int64)
    in_head = t < s_head
    ids[in_head] = np.minimum(np.searchsorted(cum, t[in_head], side="right"), head - 1)
    v = t[~in_head] - s_head
    # x solves integral_a^x t^-alpha dt = v
    x = a * np.exp(v if alpha == 1.0 else np.log1p((1 - alpha) * v * a ** (alpha - 1)) / (1 - alpha))
    ids[~in_head] = np.clip(np.floor(x + 0.5), head + 1, rows).astype(np.int64) - 1
    return ids


def draw_ids(rng: np.random.Generator, rows: int, popularity: str, zipf_alpha: float, size: int) -> np.ndarray:
    """``size`` i.i.d. IDs (int64, 0..rows-1) from the popularity distribution (module doc)."""
    if popularity == "uniform":
        return rng.integers(0, rows, size=size, dtype=np.int64)
    u = rng.random(size)
    if rows <= EXACT_ROWS:
        return np.minimum(np.searchsorted(_zipf_cdf(rows, zipf_alpha), u, side="right"), rows - 1).astype(np.int64)
    return zipf_ranks_hybrid(u, rows, zipf_alpha)


def _first_distinct(values: np.ndarray, accepted: np.ndarray) -> np.ndarray:
    """Per row of ``values``: accepted entries stay, then each new value is kept if it is the first of its
    value in stream order (accepted ones first, then new ones by position)."""
    order = np.argsort(~accepted, axis=1, kind="stable")  # accepted first, then by position
    in_order = np.take_along_axis(values, order, axis=1)
    by_value = np.argsort(in_order, axis=1, kind="stable")
    ranked = np.take_along_axis(in_order, by_value, axis=1)
    first = np.ones(ranked.shape, dtype=bool)
    first[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    keep = np.empty(values.shape, dtype=bool)
    np.put_along_axis(keep, np.take_along_axis(order, by_value, axis=1), first, axis=1)
    return keep


def _top_mass(table: Table, count: int) -> float:
    """Probability mass of the ``count`` most popular IDs."""
    if count <= 0:
        return 0.0
    if table.popularity == "uniform":
        return count / table.rows
    return float(_weights(1, count + 1, table.zipf_alpha).sum()) / zipf_normalizer(table.rows, table.zipf_alpha)


def _without_replacement(rng: np.random.Generator, table: Table, groups: int) -> np.ndarray:
    """(groups, hotness) IDs, distinct within each group: first ``hotness`` distinct IDs of i.i.d. draws."""
    h = table.hotness
    mass = _top_mass(table, h - 1)  # a redraw repeats an accepted ID with at most this probability
    if table.rows <= GUMBEL_MAX_ROWS and (mass > 0.999 or table.rows * (1 - mass) <= 8 * h):
        return _gumbel_top_k(rng, table, groups)  # cheaper than ~h / (1 - mass) redraws per group
    values = draw_ids(rng, table.rows, table.popularity, table.zipf_alpha, groups * h).reshape(groups, h)
    ordered = np.sort(values, axis=1)
    bad = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
    accepted = np.ones(values.shape, dtype=bool)
    if bad.size:
        accepted[bad] = _first_distinct(values[bad], np.zeros((bad.size, h), dtype=bool))
    rounds = 0
    while bad.size:
        rounds += 1
        if rounds > _MAX_ROUNDS:
            raise SpecError("hotness", h, f"cannot draw {h} distinct IDs per group from {table.rows} rows with this "
                            "popularity; use replacement: true or a smaller hotness")
        sub, ok = values[bad], accepted[bad]
        sub[~ok] = draw_ids(rng, table.rows, table.popularity, table.zipf_alpha, int((~ok).sum()))
        ok = _first_distinct(sub, ok)
        values[bad], accepted[bad] = sub, ok
        bad = bad[~ok.all(axis=1)]
    return values


def _gumbel_top_k(rng: np.random.Generator, table: Table, groups: int) -> np.ndarray:
    """Successive sampling without replacement by the Gumbel-top-k trick (the same law as the stream rule),
    for small tables where redrawing would be slow: the ``hotness - 1`` most popular IDs hold most of the mass."""
    rows, h = table.rows, table.hotness
    log_p = np.log(popularity_probs(rows, table.popularity, table.zipf_alpha))
    out = np.empty((groups, h), dtype=np.int64)
    step = max(1, 2**22 // rows)
    for start in range(0, groups, step):
        stop = min(start + step, groups)
        keys = -(log_p[None, :] + rng.gumbel(size=(stop - start, rows)))
        out[start:stop] = np.argpartition(keys, h - 1, axis=1)[:, :h] if h < rows else np.argsort(keys, axis=1)
    return out


def sample_ids(rng: np.random.Generator, table: Table, n_samples: int) -> np.ndarray:
    """IDs of ``n_samples`` samples for one table: int64 (n_samples, fields * hotness) in [0, rows); columns
    ``f*hotness .. (f+1)*hotness - 1`` belong to field f. Consumes ``rng`` (module doc for the method)."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 0:
        raise SpecError("n_samples", n_samples, "allowed: an integer >= 0")
    width = table.fields * table.hotness
    if table.replacement or table.hotness == 1:
        flat = draw_ids(rng, table.rows, table.popularity, table.zipf_alpha, n_samples * width)
    else:
        flat = _without_replacement(rng, table, n_samples * table.fields)
    return flat.reshape(n_samples, width)


def sample_batch_ids(workload: Workload, n_samples: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """IDs of one batch of ``n_samples`` samples, per table name, drawn from ``rng`` in workload table order."""
    return {t.name: sample_ids(rng, t, n_samples) for t in workload.tables}
