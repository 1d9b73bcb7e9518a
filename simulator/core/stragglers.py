"""Per-rank compute speed: stragglers and mixed device types, applied to a lowered step graph.

Both act on a worker's compute ops (``Op.role`` ``compute``: its GPU work); a PS server's CPU work, the
calls of collectives and the network are untouched.

- A straggler spec ``RANKS=FACTOR`` makes those ranks (fabric host indices, as in the trace) take
  ``FACTOR`` times as long for every compute op: ``3=2``, ``0-7=1.5``, ``0,5,9=3``.
- A random spec draws a factor per (rank, step) from a seeded distribution, so a synchronous step waits
  for that step's slowest rank:
  ``bernoulli:p=0.05,factor=3,seed=1`` (slowed by ``factor`` with probability ``p``, else 1) or
  ``lognormal:sigma=0.3,seed=1`` (``exp(sigma Z)``, median 1). Factors of several specs multiply.
- Mixed devices ``RANKS=DEVICE`` (``64-127=a100``) run those ranks' ops at that device's speed: the
  strategy is lowered once per device type and each rank takes its own device's durations (the graph's
  structure does not depend on the device), so every roofline term changes, not one factor.

>>> parse_ranks("0-3,8", 16).tolist()
[0, 1, 2, 3, 8]
>>> slowdown_factors(["1=2", "bernoulli:p=1,factor=3"], n_ranks=4, steps=1)[:, 0].tolist()
[3.0, 6.0, 3.0, 3.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from simulator.core.stepgraph import StepGraph
from simulator.errors import SpecError
from simulator.units import parse_ranges

RANDOM_KINDS = ("bernoulli", "lognormal")
MAX_FACTOR = 1e6


def parse_ranks(text: str, n_ranks: int, field: str = "straggler") -> np.ndarray:
    """``"0-3,8"`` -> [0, 1, 2, 3, 8]: sorted distinct ranks, each in [0, n_ranks) (``units.parse_ranges``; a
    SpecError naming ``field``)."""
    try:
        return np.array(parse_ranges(str(text), n_ranks, "rank"), dtype=np.int64)
    except ValueError as error:
        raise SpecError(field, text, f"{error} (hosts of the topology)") from None


def _positive(text: str, value: str, name: str, upper: float = MAX_FACTOR) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0 < number <= upper:
        raise SpecError("straggler", text, f"{name} must be a number in (0, {upper:g}]")
    return number


def _random_factors(text: str, n_ranks: int, steps: int) -> np.ndarray:
    kind, _, rest = text.partition(":")
    params = dict(item.partition("=")[::2] for item in rest.split(",") if item)
    allowed = {"bernoulli": ("p", "factor", "seed"), "lognormal": ("sigma", "seed")}[kind]
    unknown = [k for k in params if k not in allowed]
    if unknown:
        raise SpecError("straggler", text, f"unknown parameter {unknown[0]!r}; {kind} takes {', '.join(allowed)}")
    seed = params.get("seed", "0")
    if not seed.isdigit():
        raise SpecError("straggler", text, "seed must be an integer >= 0")
    rng = np.random.default_rng(int(seed))
    if kind == "bernoulli":
        p = _positive(text, params.get("p", "nan"), "p", 1.0)
        factor = _positive(text, params.get("factor", "nan"), "factor")
        return np.where(rng.random((n_ranks, steps)) < p, factor, 1.0)
    sigma = _positive(text, params.get("sigma", "nan"), "sigma", 5.0)
    return np.exp(sigma * rng.standard_normal((n_ranks, steps)))


def slowdown_factors(specs: Sequence[str], n_ranks: int, steps: int) -> np.ndarray:
    """(n_ranks, steps) compute-time factors of the straggler specs (1 where none applies)."""
    factors = np.ones((n_ranks, steps))
    for text in specs:
        text = str(text).strip()
        if text.partition(":")[0] in RANDOM_KINDS:
            factors *= _random_factors(text, n_ranks, steps)
            continue
        ranks, eq, value = text.partition("=")
        if not eq:
            raise SpecError("straggler", text, "expected RANKS=FACTOR (3=2, 0-7=1.5) or "
                                               "bernoulli:p=P,factor=F,seed=S or lognormal:sigma=S,seed=S")
        factors[parse_ranks(ranks, n_ranks)] *= _positive(text, value, "factor")
    return factors


def slow_down(graph: StepGraph, factors: np.ndarray) -> None:
    """Multiply the duration of each of a worker's compute ops (``Op.role`` ``compute``) on rank r in step k by
    ``factors[r, k]``."""
    for op in graph.ops:
        if op.role == "compute":
            op.duration_s = op.duration_s * factors[op.ranks, op.step]


def device_of_rank(specs: Sequence[str], n_ranks: int) -> dict[str, np.ndarray]:
    """Device name -> the ranks it runs, from ``RANKS=DEVICE`` specs (a rank named twice is an error)."""
    owner = np.full(n_ranks, "", dtype=object)
    for text in specs:
        ranks_text, eq, device = str(text).partition("=")
        if not (eq and device.strip()):
            raise SpecError("rank_device", text, "expected RANKS=DEVICE, e.g. 0-63=a100")
        ranks = parse_ranks(ranks_text, n_ranks, "rank_device")
        if np.any(owner[ranks] != ""):
            raise SpecError("rank_device", text, "a rank is given a device more than once")
        owner[ranks] = device.strip()
    return {name: np.nonzero(owner == name)[0] for name in dict.fromkeys(owner) if name}


def mix_devices(graph: StepGraph, ranks: np.ndarray, other: StepGraph) -> None:
    """Give ``ranks`` the compute durations of ``other``, the same step lowered for their device."""
    if [op.name for op in other.ops] != [op.name for op in graph.ops]:
        raise SpecError("rank_device", "", "this strategy's step graph depends on the device; mixed devices "
                                           "are not supported for it")
    on = np.zeros(graph.n_ranks, dtype=bool)
    on[ranks] = True
    for op, theirs in zip(graph.ops, other.ops, strict=True):
        if op.role == "compute":
            mine = on[op.ranks]
            op.duration_s = np.where(mine, theirs.duration_s, op.duration_s)
