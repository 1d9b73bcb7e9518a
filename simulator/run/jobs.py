"""Several training jobs on one fabric: each on its own hosts, all sharing the fabric's links.

A jobs spec (YAML, ``JobsSpec``) names one topology and a list of jobs, each a workload under a strategy on
its own hosts (``hosts: 0-63``, ``0-62:2``, ``0-3,8-11`` or a list of host indices; or ``workers: N``, the
next N free hosts; or neither, every host still free). Hosts of two jobs never overlap; a job's ranks
follow its hosts' order, and a ``ps``/``ps-fc`` job's servers sit on its first ``servers`` hosts.

What is shared: links only. Jobs never share a host, so compute is not shared. ``simulate_jobs`` runs every
job alone on the fabric with its hosts, and shared, at the file's ``fidelity``:

- ``flow``: all jobs together on one flow-level network (each starting at its ``start_s``), where links are
  max-min fair shared among the flows of every job crossing them; each alone on a fresh one. A shared
  report's ``links`` table covers every job's traffic.
- ``analytical``: alone is the job's analytical step. Shared, the job's step is priced again on the fabric
  where each link keeps ``link_shares`` of its capacity for it: max-min fair sharing between jobs, each job's
  bytes per step on the link taken as one flow and all starting together. The link gives the jobs crossing it
  equal shares until the one with the fewest bytes is done, then splits again among the rest, so job j's
  traffic on link l drains in ``sum_k min(b_k, b_j) / capacity`` (``b``: each job's bytes per step on l, from
  its analytical step alone): twice its own drain time for two jobs with equal bytes, and exact for one flow per
  job (tested against flow level). What it cannot capture is timing: it assumes every job's traffic on a link
  coincides with the others' in every step (their communication phases overlap fully, whatever their compute,
  step lengths and ``start_s``), so it overstates the interference where their phases interleave or their runs
  do not overlap. Nor does it see flows: flow level shares per flow, so a job with many flows on a link (an
  all-to-all) gets more than an equal share against one with few (a ring). Within a job the analytical model's
  own assumptions hold (docs/NETWORK_MODEL.md). A job that shares no link with another keeps its step alone
  exactly. A shared report's ``links`` table holds the
  job's own bytes, over its share of each link's capacity.
- ``auto`` (the default): flow level if its estimated cost fits ``budget_s`` wall seconds, analytical
  otherwise (``simulator.run.fidelity``): the jobs alone and then together each cost at least the sum of the
  jobs' estimates, so the estimate is twice that sum. Past the budget a flow run stops and every job runs at
  analytical fidelity instead. ``fidelity_reason`` says which and why.

Per job and per step (s): ``step_time_shared_s`` and ``step_time_alone_s`` (makespan from the job's own start,
divided by its steps), ``interference_s`` = shared - alone, ``slowdown`` = shared / alone (1: the other jobs
cost it nothing). Bytes are per step and the job's own (``bytes_on_wire``: bytes its ranks send; the same
alone or shared). A shared report's trace has times from the job's start.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simulator.compute.roofline import apply_calibration, load_calibration, load_device
from simulator.core.engine import Engine, EngineResult
from simulator.core.stragglers import slow_down, slowdown_factors
from simulator.errors import SpecError, from_validation, read_mapping
from simulator.network import (
    DEFAULT_NETWORK_MODEL,
    DEFAULT_RATE_TOLERANCE,
    MAX_RATE_TOLERANCE,
    Network,
    make_network,
)
from simulator.network.fabric import Fabric
from simulator.network.flow import FlowBudgetExceeded
from simulator.options import DEFAULT_BUDGET_S, MAX_BUDGET_S, EcmpName, NetworkModelName
from simulator.run.fidelity import choose, over_budget_reason
from simulator.run.spec import RunSpec
from simulator.run.training import StepReport, step_report
from simulator.strategies import lower, needs_servers
from simulator.strategies.base import Cluster, Lowered
from simulator.units import parse_ranges
from topologies import load_cables
from topologies.builders import MAX_ELEMENTS
from workloads import AnyWorkload, load_workload
from workloads.load import override

MAX_START_S = 1e9


def parse_hosts(value: Any) -> list[int]:
    """Host indices (``units.parse_ranges``): sorted, distinct, each below ``MAX_ELEMENTS``."""
    return parse_ranges(value, MAX_ELEMENTS, "host")


def hosts_text(hosts: np.ndarray) -> str:
    """Host indices as ``parse_hosts`` reads them: ``a-b``, ``a-b:stride``, else comma-separated runs."""
    hosts = np.asarray(hosts, dtype=np.int64)
    if len(hosts) == 1:
        return str(hosts[0])
    steps = np.diff(hosts)
    if np.all(steps == steps[0]):
        return f"{hosts[0]}-{hosts[-1]}" + (f":{steps[0]}" if steps[0] != 1 else "")
    cuts = np.nonzero(steps != 1)[0] + 1
    return ",".join(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in np.split(hosts, cuts))


SHARED = ("topology", "faults", "ecmp", "fidelity", "budget_s", "network_model", "rate_tolerance")  # the file's
NOT_IN_JOBS = {"placement": "servers sit on the job's own hosts", "rank_devices": "give each job its own device"}


class JobSpec(RunSpec):
    """One job: a run (``simulator.run.spec.RunSpec``: workload, ``set`` overrides such as ``precision=bf16``,
    strategy and every strategy option, devices, calibration, steps, stragglers) on ``hosts`` or on the next
    ``workers`` free hosts (neither: every host still free), from ``start_s`` (s). The topology, its faults, the
    fidelity and how links are shared are the file's, the same for every job (``SHARED``); servers sit on the
    job's first ``servers`` hosts."""

    refused_keys: ClassVar[frozenset[str]] = frozenset({*SHARED, *NOT_IN_JOBS})  # a run's, not a job's
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$", description="unique; letters, digits, _ . -")
    workload: str
    strategy: str
    hosts: list[int] | None = Field(None, description="host indices: 0-63, 0-62:2, 0-3,8-11 or a list; "
                                                      "default: the next `workers` free hosts, or every free one")
    start_s: float = Field(0.0, ge=0.0, le=MAX_START_S, allow_inf_nan=False, description="start time (s)")

    @field_validator("hosts", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> list[int] | None:
        return None if value is None else parse_hosts(value)


class JobsSpec(BaseModel):
    """A topology (any string ``load_topology`` accepts) with optional link ``faults`` (``topologies.faults``),
    the fidelity (auto, flow or analytical) and its budget, how flows share links (``network_model``: maxmin,
    cm02, lv08) and the jobs sharing it."""

    model_config = ConfigDict(extra="forbid")
    topology: str = Field(description="every job's topology: a preset, file or builder string")
    faults: list[str] = Field(default_factory=list, description="link faults, as --fault")
    ecmp: EcmpName = Field("hash", description="equal-cost next hop, as --ecmp")
    fidelity: Literal["auto", "flow", "analytical"] = Field("auto", description=(
        "auto (flow level if its estimated cost fits budget_s, else analytical; the result says which and why) | "
        "flow (links max-min shared among every job's flows) | analytical (each link's capacity shared among the "
        "jobs crossing it, all sending at once: simulator/run/jobs.py)"))
    budget_s: float = Field(DEFAULT_BUDGET_S, gt=0.0, le=MAX_BUDGET_S, allow_inf_nan=False, description=(
        "fidelity auto: the most wall seconds flow level may take for every job alone and all together; past "
        "it, analytical"))
    rate_tolerance: float | None = Field(None, ge=0.0, le=MAX_RATE_TOLERANCE, description="as --rate-tolerance")
    network_model: NetworkModelName = Field(DEFAULT_NETWORK_MODEL, description="as --network-model")
    jobs: list[JobSpec] = Field(min_length=1, description="the jobs: each a run's keys plus name, hosts, start_s")


def load_jobs(spec: str | Path | dict | JobsSpec, overrides: dict[str, Any] | None = None) -> JobsSpec:
    """A validated JobsSpec from a YAML/JSON file, a dict or a JobsSpec, with ``overrides`` replacing its keys
    (the command line's ``--fidelity``, ``--budget-s``); every problem is one SpecError."""
    if isinstance(spec, JobsSpec):
        spec = dict(spec)  # validated jobs stay as they are
    elif not isinstance(spec, dict):
        spec = read_mapping(Path(spec), "jobs", "topology, fidelity and jobs")
    try:
        spec = JobsSpec.model_validate({**spec, **(overrides or {})})
    except ValidationError as exc:
        raise from_validation(exc, JobsSpec, default="jobs") from None
    names = [job.name for job in spec.jobs]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise SpecError(f"jobs[{i}].name", name, f"used by jobs[{names.index(name)}]; allowed: unique names")
    return spec


def place(spec: JobsSpec, n_hosts: int) -> list[np.ndarray]:
    """The hosts of each job: its ``hosts``; then, in job order, the lowest block of ``workers`` consecutive
    free hosts (the lowest free hosts if no block is long enough), or every free host."""
    used = np.full(n_hosts, -1, dtype=np.int64)  # job holding each host
    placed: list[np.ndarray | None] = [None] * len(spec.jobs)
    for i, job in enumerate(spec.jobs):
        if job.hosts is None:
            continue
        if job.workers is not None:
            raise SpecError(f"jobs[{i}].workers", job.workers, "give hosts or workers, not both")
        hosts = np.asarray(job.hosts, dtype=np.int64)
        if hosts[-1] >= n_hosts:
            raise SpecError(f"jobs[{i}].hosts", hosts_text(hosts), f"allowed: hosts 0 to {n_hosts - 1} "
                                                                   "(the topology's)")
        taken = used[hosts] >= 0
        if taken.any():
            other = spec.jobs[int(used[hosts[taken][0]])].name
            raise SpecError(f"jobs[{i}].hosts", hosts_text(hosts), f"overlaps job {other!r} on hosts "
                                                                   f"{hosts_text(hosts[taken])}; allowed: free hosts")
        used[hosts] = i
        placed[i] = hosts
    for i, job in enumerate(spec.jobs):
        if placed[i] is not None:
            continue
        free = np.nonzero(used < 0)[0]
        n = len(free) if job.workers is None else job.workers
        if not len(free):
            raise SpecError(f"jobs[{i}].hosts", None, f"every host of the {n_hosts} is taken by other jobs; "
                                                      "allowed: free hosts")
        if n > len(free):
            raise SpecError(f"jobs[{i}].workers", job.workers, f"allowed: 1 to {len(free)} "
                                                               f"(the hosts still free of {n_hosts})")
        # runs of consecutive free hosts: the first long enough
        starts = np.nonzero(np.diff(free, prepend=-2) != 1)[0]
        lengths = np.diff(np.append(starts, len(free)))
        fit = np.nonzero(lengths >= n)[0]
        first = int(starts[fit[0]]) if len(fit) else 0
        hosts = free[first:first + n]
        used[hosts] = i
        placed[i] = hosts
    return placed  # type: ignore[return-value]


@contextmanager
def _in_job(i: int, rename: dict[str, str] | None = None, prefix: str = "") -> Iterator[None]:
    """SpecErrors raised inside name the job's field: ``jobs[i].<prefix><field>`` (``rename``: whole names)."""
    try:
        yield
    except SpecError as exc:
        field = (rename or {}).get(exc.field, prefix + exc.field)
        raise SpecError(f"jobs[{i}].{field}", exc.value, exc.allowed) from None


@dataclass
class _Job:
    spec: JobSpec
    workload: AnyWorkload
    cluster: Cluster
    lowered: Lowered


def _prepare(i: int, job: JobSpec, fabric: Fabric, hosts: np.ndarray) -> _Job:
    for key in job.model_fields_set & {*SHARED, *NOT_IN_JOBS}:
        why = NOT_IN_JOBS.get(key, "set once, at the top of the jobs file, for every job")
        raise SpecError(f"jobs[{i}].{key}", getattr(job, key), f"not a job's key: {why}")
    with _in_job(i):
        workload = load_workload(job.workload)
        device = load_device(job.device)
    with _in_job(i, {"set": "set"}, prefix="set."):
        workload = override(workload, job.workload_overrides)
    with _in_job(i, {"device": "server_device"}):
        server_device = load_device(job.server_device)
    if job.calibration:
        with _in_job(i):
            profile = load_calibration(job.calibration)
        device, server_device = apply_calibration(device, profile), apply_calibration(server_device, profile)
    servers = np.zeros(0, dtype=np.int64)
    if needs_servers(job.strategy):
        p = job.servers if job.servers is not None else len(hosts)
        if p > len(hosts):
            raise SpecError(f"jobs[{i}].servers", p, f"allowed: 1 to {len(hosts)} (co-located on the job's hosts)")
        servers = hosts[:p]
    elif job.servers is not None:
        raise SpecError(f"jobs[{i}].servers", job.servers, "allowed only for ps and ps-fc (omit it)")
    cluster = Cluster(fabric, hosts, device, servers, server_device)
    with _in_job(i):
        lowered = lower(job.strategy, workload, cluster, job.steps, job.options)
    with _in_job(i, {"straggler": "stragglers"}):
        factors = slowdown_factors(job.stragglers, fabric.n_hosts, job.steps)
    outside = np.setdiff1d(np.nonzero((factors != 1).any(axis=1))[0], hosts)
    if len(outside):
        raise SpecError(f"jobs[{i}].stragglers", job.stragglers, f"host {outside[0]} is not one of the job's "
                                                                 f"hosts ({hosts_text(hosts)})")
    slow_down(lowered.graph, factors)
    return _Job(job, workload, cluster, lowered)


@dataclass
class JobsResult:
    """Per job (by name): its hosts, its StepReport alone and shared; ``table``: one row per job; the fidelity
    every job ran at and why (``requested``, or what ``auto`` estimated and chose)."""

    spec: JobsSpec
    hosts: dict[str, np.ndarray]
    alone: dict[str, StepReport]
    shared: dict[str, StepReport]
    table: pd.DataFrame
    fidelity: str
    fidelity_reason: str

    def to_dict(self) -> dict:
        """The topology, the fidelity the jobs ran at and why, and the table's rows (JSON-ready)."""
        return {"topology": self.spec.topology, "fidelity": self.fidelity, "fidelity_reason": self.fidelity_reason,
                "network_model": self.spec.network_model, "jobs": self.table.to_dict(orient="records")}


def link_shares(link_bytes: np.ndarray) -> np.ndarray:
    """Per job (row) and link (column), the fraction of the link's capacity the job gets at analytical fidelity,
    from each job's bytes per step on each link (``link_bytes``, b): ``b_j / sum_k min(b_k, b_j)``, so that job
    j's bytes on the link drain in ``sum_k min(b_k, b_j) / capacity`` (max-min fair between jobs: the module's
    docstring). 1 where no other job sends, and where the job sends nothing."""
    link_bytes = np.asarray(link_bytes, dtype=np.float64)
    drained = sum(np.minimum(link_bytes, row) for row in link_bytes)
    return np.divide(link_bytes, drained, out=np.ones_like(link_bytes), where=link_bytes > 0)


def _from_start(result: EngineResult, start_s: float) -> EngineResult:
    """``result`` with times from the job's start."""
    if start_s == 0:
        return result
    rows = {**result.rows, "start_s": result.rows["start_s"] - start_s, "end_s": result.rows["end_s"] - start_s}
    return EngineResult(result.graph, rows, result.link_bytes, result.makespan_s)


Follow = Callable[[str], Callable[[int, int], None] | None]  # a run's label -> its progress callback
Reports = dict[str, StepReport]  # by job name


def _network(spec: JobsSpec, fabric: Fabric, fidelity: str, deadline: float | None = None) -> Network:
    """A fresh network of ``fidelity`` on ``fabric``; a flow network stops past ``deadline`` (perf_counter s)."""
    network = make_network(fabric, fidelity, rate_tolerance=spec.rate_tolerance, model=spec.network_model)
    if fidelity == "flow":
        network.deadline = deadline  # type: ignore[union-attr]
    return network


def _report(job: _Job, fidelity: str, result: EngineResult, network: Network, started: float) -> StepReport:
    return step_report(job.workload, job.cluster, job.spec.strategy, fidelity, job.spec.steps, job.lowered, result,
                       network, started)


def _alone(spec: JobsSpec, fabric: Fabric, jobs: list[_Job], fidelity: str, follow: Follow,
           deadline: float | None = None) -> Reports:
    """Each job alone on a fresh network of ``fidelity``."""
    alone = {}
    for job in jobs:
        started = time.perf_counter()
        network = _network(spec, fabric, fidelity, deadline)
        result = Engine(job.lowered.graph, network).run(follow(f"{job.spec.name} alone"))
        alone[job.spec.name] = _report(job, fidelity, result, network, started)
    return alone


def _flow_runs(spec: JobsSpec, fabric: Fabric, jobs: list[_Job], follow: Follow,
               deadline: float | None) -> tuple[Reports, Reports]:
    """Each job alone on its own flow network, then every job on one, each from its ``start_s``."""
    alone = _alone(spec, fabric, jobs, "flow", follow, deadline)
    started = time.perf_counter()
    network = _network(spec, fabric, "flow", deadline)
    env = network.env
    engines = [Engine(job.lowered.graph, network) for job in jobs]

    def start_at(engine: Engine, at_s: float, label: str) -> Iterator[Any]:
        yield env.timeout(at_s)
        engine.start(follow(label))

    for job, engine in zip(jobs, engines, strict=True):
        if job.spec.start_s == 0:
            engine.start(follow(f"{job.spec.name} shared"))
        else:
            env.process(start_at(engine, job.spec.start_s, f"{job.spec.name} shared"))
    env.run(until=env.all_of([engine.all_done for engine in engines]))
    shared = {job.spec.name: _report(job, "flow", _from_start(engine.finish(), job.spec.start_s), network, started)
              for job, engine in zip(jobs, engines, strict=True)}
    return alone, shared


def _analytical_runs(spec: JobsSpec, fabric: Fabric, jobs: list[_Job], follow: Follow) -> tuple[Reports, Reports]:
    """Each job's analytical step alone, then on the fabric with its ``link_shares`` of each link's capacity
    (the same step where it shares no link)."""
    alone = _alone(spec, fabric, jobs, "analytical", follow)
    shares = link_shares(np.array([alone[job.spec.name].result.link_bytes / job.spec.steps for job in jobs]))
    shared = {}
    for job, share in zip(jobs, shares, strict=True):
        name = job.spec.name
        if np.all(share == 1):
            shared[name] = alone[name]
            continue
        started = time.perf_counter()
        network = _network(spec, fabric.with_capacity(fabric.capacity_Bps * share), "analytical")
        shared[name] = _report(job, "analytical", Engine(job.lowered.graph, network).run(follow(f"{name} shared")),
                               network, started)
    return alone, shared


def simulate_jobs(spec: str | Path | dict | JobsSpec,
                  progress: Callable[[str, int, int], None] | None = None) -> JobsResult:
    """Run every job alone and all of them together at the spec's fidelity (see the module's docstring).
    ``progress(label, done, total)`` follows each run's (op, rank) pairs."""
    started = time.perf_counter()
    spec = load_jobs(spec)
    fabric = Fabric(load_cables(spec.topology, spec.faults), ecmp=spec.ecmp)
    placed = place(spec, fabric.n_hosts)
    jobs = [_prepare(i, job, fabric, hosts) for i, (job, hosts) in enumerate(zip(spec.jobs, placed, strict=True))]

    def follow(label: str) -> Callable[[int, int], None] | None:
        return (lambda done, total: progress(label, done, total)) if progress else None

    fidelity, reason, deadline = spec.fidelity, "requested", None
    if fidelity == "auto":  # every job alone, then all together: each pass costs at least the jobs' estimates
        schedules = [op.schedule for job in jobs for op in job.lowered.graph.ops if op.schedule is not None]
        choice = choose(schedules, spec.budget_s, maxmin=spec.network_model == "maxmin",
                        spread=fabric.ecmp == "dmodk", rate_tolerance=spec.rate_tolerance, shared=schedules)
        fidelity, reason, deadline = choice.fidelity, choice.reason, started + spec.budget_s
        spec = spec.model_copy(update={"rate_tolerance": choice.rate_tolerance})
    elif spec.rate_tolerance is None:
        spec = spec.model_copy(update={"rate_tolerance": DEFAULT_RATE_TOLERANCE})
    try:
        alone, shared = (_flow_runs(spec, fabric, jobs, follow, deadline) if fidelity == "flow"
                         else _analytical_runs(spec, fabric, jobs, follow))
    except FlowBudgetExceeded:
        fidelity, reason = "analytical", over_budget_reason(spec.budget_s, choice.estimate_s)
        alone, shared = _analytical_runs(spec, fabric, jobs, follow)
    for report in (*alone.values(), *shared.values()):
        report.summary.fidelity_reason = reason
    hosts = {job.spec.name: job.cluster.workers for job in jobs}
    return JobsResult(spec, hosts, alone, shared, jobs_table(jobs, alone, shared), fidelity, reason)


def jobs_table(jobs: list[_Job], alone: dict[str, StepReport], shared: dict[str, StepReport]) -> pd.DataFrame:
    """One row per job: placement, the fidelity it ran at, step time alone and shared (s), slowdown,
    interference (s), bytes (per step)."""
    rows = []
    for job in jobs:
        a, s = alone[job.spec.name].summary, shared[job.spec.name].summary
        t_alone, t_shared = a.step_time_s, s.step_time_s
        rows.append({
            "name": job.spec.name, "workload": a.workload, "strategy": job.spec.strategy,
            "workers": a.workers, "servers": a.servers, "hosts": hosts_text(job.cluster.workers),
            "start_s": job.spec.start_s, "steps": job.spec.steps, "fidelity": s.fidelity,
            "step_time_alone_s": t_alone, "step_time_shared_s": t_shared,
            "slowdown": t_shared / t_alone if t_alone > 0 else math.nan, "interference_s": t_shared - t_alone,
            "end_shared_s": job.spec.start_s + t_shared * job.spec.steps,
            "exposed_comm_alone_s": a.exposed_comm_s, "exposed_comm_shared_s": s.exposed_comm_s,
            "samples_per_s_alone": a.samples_per_s, "samples_per_s_shared": s.samples_per_s,
            "bytes_on_wire": s.bytes_on_wire, "bytes_per_worker_max": s.bytes_per_worker.max,
            "fits_memory": s.fits_memory})
    return pd.DataFrame(rows)
