"""``--fidelity auto``: flow level when it fits a wall-clock budget, analytical otherwise, and why.

Flow level is exact where flows contend and costs up to minutes on thousands of ranks; the analytical model
costs milliseconds to seconds and assumes equal shares on each link (docs/NETWORK_MODEL.md). ``auto``
estimates flow level's cost from the step's messages before running it:

- under max-min sharing, each message costs ``PER_MESSAGE_S`` and each pattern (a step of concurrent messages)
  ``STEP_IN_TRAINING_S``, or ``STEP_ALONE_S`` in a lone collective; in a pattern where some rank sends or receives more
  than one message, those messages share its host link, so every flow is coupled to others and takes part in rate
  solves: ``PER_SHARED_MESSAGE_S`` more per message, x (m / ``SHARED_REF_MESSAGES``) ** ``SHARED_GROWTH`` in a pattern
  of m > ``SHARED_REF_MESSAGES`` messages (a larger pattern has more distinct rates, so more completion waves, each
  re-solving most of its flows: a shared message of the 1,024-host ps step costs 1.13 x one of the 256-host step, with
  16 x the messages per pattern; at ``COARSE_RATE_TOLERANCE``, ``PER_SHARED_MESSAGE_COARSE_S`` x that ratio **
  ``SHARED_GROWTH_COARSE``, 1.43 x. Fitted on the ps steps on 256 and 1,024 hosts; held out, the ps step on 4,096 hosts
  at 1e-2 is estimated at 0.91 x its measured 217 s). A pattern costs most of its time in lookahead windows (about 150
  us each), one per distinct event time. A lone collective's ranks move in step (3.6 windows per pattern step for a ring
  all-reduce on 1,024 fat-tree hosts). In a training step under per-flow hashing they drift apart, since hops that
  collide on an uplink and routes of different lengths finish at different times, and ops overlap: a DES or DP step on
  256 hosts runs about ``WINDOWS_PER_STEP`` (85) windows per pattern step. Past ``flow.COMPILED_WINDOWS`` windows the
  flow backend runs them compiled, a lone message's windows with its run's progress in one call
  (``flow.FlowNetwork._lone_windows``), so such a message then costs ``LONE_MESSAGE_COMPILED_S`` in all, after numba's
  ``NUMBA_LOAD_S`` (``drifting_steps_s``; fitted on the des step on 1,024 hosts, 5.6 s measured; held out: des on 256
  and 4,096 hosts, dp on 256 and 1,024, estimated at 0.99, 1.36, 1.34 and 0.99 x their measured time). Runs that share
  the network with others (``jobs`` together) are not fused: their messages keep ``PER_MESSAGE_S`` and a compiled
  pattern step costs ``STEP_COMPILED_S`` (fitted on the des step on 1,024 hosts before fusing: 15.6 s measured, 16.3
  estimated);
- with routing that spreads traffic evenly (``ecmp: dmodk`` on a fat-tree), flows get equal rates by symmetry:
  rate solves settle in a few levels, ranks stay in step, and a shared message costs
  ``PER_SHARED_MESSAGE_SPREAD_S`` more, a pattern step ``STEP_ALONE_S``. Per-flow hashing instead collides flows
  on uplinks: hundreds of distinct rates per solve, and ranks drifting apart;
- under ``cm02``/``lv08`` the ACK streams couple every flow, so every pattern needs weighted rate solves: each
  costs ``WEIGHTED_STEP_S`` + ``WEIGHTED_MESSAGE_S`` x m.

A lone collective whose messages never share a link (a ring on a fat-tree) runs at flow level in closed form
(``network.alone``) without asking: exact, and as cheap as the analytical model (``run.collective``).

The constants come from measured flow-level runs on this project's 2-core machine (docs/BENCHMARKS.md): the
default ps step on 256 and 1,024 fat-tree hosts under hashing (5 patterns of 65,280 and 1.05 M shared messages:
2.34 s and 40.5 s, large rate solves compiled; at ``COARSE_RATE_TOLERANCE`` 0.64 s and 10.6 s), the window counts
above and, for ``dmodk``, the 1,024-host ps step and all-to-all (5.2 M messages in 4.5 s; 1 M in 2.2 s: the
constant lies between). ``benchmarks/fidelity.py`` compares the estimate with held-out runs of lone collectives
and default training steps on 64 to 1,024 hosts. It can still err either way, so ``auto`` runs flow level only
when estimated within ``ESTIMATE_MARGIN`` of the budget, and the run gets a deadline: past the budget it stops and
the step runs at analytical fidelity instead, and the result says so. Every result names the fidelity it ran at and why
(``StepSummary.fidelity_reason``). When flow level was cheap (under ``SAMPLE_FRACTION`` of the budget), the
analytical model runs too and ``analytical_difference`` says how far its step time is from flow level's. A
flow-level run, chosen or forced, estimated at more than ``LONG_RUN_S`` is announced before it starts, with
the faster option (``long_run_note``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.network.flow import COMPILED_WINDOWS
from simulator.network.schedule import Schedule
from simulator.options import COARSE_RATE_TOLERANCE, DEFAULT_BUDGET_S, DEFAULT_RATE_TOLERANCE

PER_MESSAGE_S = 1.2e-6
STEP_IN_TRAINING_S = 0.013
WINDOWS_PER_STEP = 85
LONE_MESSAGE_COMPILED_S = 8.7e-7
STEP_COMPILED_S = 0.002
NUMBA_LOAD_S = 0.4
STEP_ALONE_S = 0.0015
PER_SHARED_MESSAGE_S = 5.8e-6
SHARED_REF_MESSAGES = 65_536
SHARED_GROWTH = 0.045
PER_SHARED_MESSAGE_COARSE_S = 5.6e-7
SHARED_GROWTH_COARSE = 0.13
PER_SHARED_MESSAGE_SPREAD_S = 5e-7
WEIGHTED_STEP_S = 0.05
WEIGHTED_MESSAGE_S = 4e-4
SAMPLE_FRACTION = 0.1
ESTIMATE_MARGIN = 0.8  # flow level is chosen when estimated within this share of the budget
LONG_RUN_S = 30.0  # a flow-level run estimated longer is announced at its start, with the faster option


def flow_cost_s(schedules: list[Schedule], maxmin: bool = True, alone: bool = False, spread: bool = False,
                rate_tolerance: float = DEFAULT_RATE_TOLERANCE, fused: bool = True) -> float:
    """Estimated wall seconds of running ``schedules`` at flow level (this project's 2-core machine): the ops of
    a training step, or one collective ``alone``; ``spread``: routed by ``dmodk`` rather than hashed; at
    ``rate_tolerance`` >= ``COARSE_RATE_TOLERANCE`` a hashed shared message costs ``PER_SHARED_MESSAGE_COARSE_S``,
    growing more slowly with the pattern's size (completion waves are fewer and batched wider). ``fused``: one run
    on the network at a time, whose lone windows run fused past the compiled switch; not when several share it
    (``jobs``)."""
    in_step = alone or spread  # ranks in step: a pattern step takes a few windows
    coarse = rate_tolerance >= COARSE_RATE_TOLERANCE
    numpy_limit = COMPILED_WINDOWS // WINDOWS_PER_STEP  # drifting pattern steps before the compiled switch
    total, drifting_steps = 0.0, 0
    for schedule in schedules:
        for step in schedule.steps:
            m = len(step.pattern)
            if maxmin:
                shared = m and max(np.bincount(step.pattern.src).max(), np.bincount(step.pattern.dst).max()) > 1
                growth = max(1.0, m / SHARED_REF_MESSAGES) ** (SHARED_GROWTH_COARSE if coarse else SHARED_GROWTH)
                per_shared_s = (PER_SHARED_MESSAGE_SPREAD_S if spread else
                                growth * (PER_SHARED_MESSAGE_COARSE_S if coarse else PER_SHARED_MESSAGE_S))
                total += step.repeat * ((PER_MESSAGE_S + shared * per_shared_s) * m + in_step * STEP_ALONE_S)
                if not in_step:
                    compiled = step.repeat - min(step.repeat, max(0, numpy_limit - drifting_steps))
                    if fused and not shared:  # past the switch, a lone message's windows run fused
                        total -= compiled * (PER_MESSAGE_S - LONE_MESSAGE_COMPILED_S) * m
                    elif not fused:
                        total += compiled * STEP_COMPILED_S
                    drifting_steps += step.repeat
            else:
                total += step.repeat * (WEIGHTED_STEP_S + WEIGHTED_MESSAGE_S * m)
    return total + drifting_steps_s(drifting_steps)


def drifting_steps_s(steps: int) -> float:
    """Wall seconds of ``steps`` pattern steps whose ranks drift apart (``WINDOWS_PER_STEP`` windows each) beyond
    their messages' cost: numpy windows up to the compiled switch (``flow.COMPILED_WINDOWS``), then numba's load."""
    numpy_steps = min(steps, COMPILED_WINDOWS // WINDOWS_PER_STEP)
    return numpy_steps * STEP_IN_TRAINING_S + (NUMBA_LOAD_S if steps > numpy_steps else 0.0)


@dataclass(frozen=True)
class FidelityChoice:
    """What ``auto`` chose (``fidelity``: flow or analytical), at which ``rate_tolerance`` flow level runs, its
    estimate of flow level's cost and why; ``default_estimate_s``: the estimate at the default tolerance, when
    ``auto`` tried the coarse one after it."""

    fidelity: str
    estimate_s: float
    budget_s: float
    rate_tolerance: float = DEFAULT_RATE_TOLERANCE
    default_estimate_s: float | None = None

    @property
    def reason(self) -> str:
        budget = (f"within the {self.budget_s:g} s budget" if self.fidelity == "flow"
                  else f"over {ESTIMATE_MARGIN:g} x the {self.budget_s:g} s budget")
        if self.default_estimate_s is None:
            return f"auto: flow level estimated at {self.estimate_s:.3g} s, {budget}"
        coarse = f"at rate tolerance {self.rate_tolerance:g}"
        if self.fidelity == "flow":
            return (f"auto: flow level {coarse}, estimated at {self.estimate_s:.3g} s, {budget} (at the default "
                    f"{DEFAULT_RATE_TOLERANCE:g}: {self.default_estimate_s:.3g} s)")
        return (f"auto: flow level estimated at {self.default_estimate_s:.3g} s ({self.estimate_s:.3g} s {coarse}), "
                f"{budget}")


def choose(schedules: list[Schedule], budget_s: float = DEFAULT_BUDGET_S, maxmin: bool = True,
           alone: bool = False, spread: bool = False, rate_tolerance: float | None = None,
           shared: list[Schedule] | None = None) -> FidelityChoice:
    """Flow level if its estimated cost (``flow_cost_s``) fits ``budget_s`` (wall seconds) with a margin
    (``ESTIMATE_MARGIN``), analytical otherwise. The margin: the estimate errs by up to a third either way
    (docs/BENCHMARKS.md), and a flow run chosen here stops at the budget and runs again analytically, so a run
    estimated just under the budget would as likely waste the whole budget as fit it.
    ``rate_tolerance`` None (not set by the user): the default tolerance, or ``COARSE_RATE_TOLERANCE`` when only
    that fits (a stated error bound of 2% on a rank's end, measured effects of 1e-5 to 1e-4: docs/BENCHMARKS.md),
    which flow level at a tolerance bounds and the analytical model does not. ``shared``: schedules that also run
    with other runs on the network at once (``fused`` False), after ``schedules`` ran one run at a time."""

    def cost_s(tolerance: float) -> float:
        return (flow_cost_s(schedules, maxmin, alone, spread, tolerance)
                + flow_cost_s(shared or [], maxmin, alone, spread, tolerance, fused=False))

    limit_s = ESTIMATE_MARGIN * budget_s
    tolerance = DEFAULT_RATE_TOLERANCE if rate_tolerance is None else rate_tolerance
    estimate = cost_s(tolerance)
    if estimate <= limit_s or rate_tolerance is not None:
        return FidelityChoice("flow" if estimate <= limit_s else "analytical", estimate, budget_s, tolerance)
    coarse = cost_s(COARSE_RATE_TOLERANCE)
    if coarse >= estimate:  # no hashed shared messages: the tolerance changes nothing there
        return FidelityChoice("analytical", estimate, budget_s, tolerance)
    return FidelityChoice("flow" if coarse <= limit_s else "analytical", coarse, budget_s, COARSE_RATE_TOLERANCE,
                          estimate)


def over_budget_reason(budget_s: float, estimate_s: float) -> str:
    """Why a step chosen for flow level ran at analytical fidelity after all."""
    return (f"auto: flow level passed the {budget_s:g} s budget (estimated at {estimate_s:.3g} s) and was "
            "stopped; analytical instead")


def long_run_note(estimate_s: float, fidelity: str, budget_s: float = DEFAULT_BUDGET_S) -> str | None:
    """What to say before a flow-level run whose estimated cost (``flow_cost_s``, wall seconds) passes
    ``LONG_RUN_S``: the estimate and the faster option; None for a shorter run. ``fidelity``: what was asked
    for, ``flow``, or ``auto`` (which chose flow level within ``budget_s``)."""
    if estimate_s <= LONG_RUN_S:
        return None
    why = "as --fidelity flow asks" if fidelity == "flow" else f"within --fidelity auto's {budget_s:g} s budget"
    other = "" if fidelity == "flow" else f" (or --budget-s {LONG_RUN_S:g}, for auto to choose it)"
    return (f"flow level ({why}) is estimated at {estimate_s:.3g} s on a 2-core machine; --fidelity analytical "
            f"takes seconds at most{other}, with equal shares on each link")
