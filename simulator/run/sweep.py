"""Sweeps: many what-if training steps from one spec, run on a process pool or Dask, written as they finish.

A sweep spec (YAML or a dict)::

    base:                        # one run: the options of ``dessim run`` (underscores or dashes)
      workload: dlrm-small
      topology: leafspine:leaves=4,hosts_per_leaf=4,spines=2,host_gbps=100,uplink_gbps=200,latency_us=1
      fidelity: analytical
    grid:                        # every combination, in this order
      strategy: [ps, des]
      workers: [4, 8, 16]
      workload.batch_per_worker: [512, 2048]      # workload.<field>: a --set override
      workload.precision: [fp32, bf16]            # GEMM precision (mixed precision: bf16, fp16)
      topology.host_gbps: [100, 400]              # topology.<param>: a parameter of the inline builder
    sample:                      # optional: points drawn in ranges (times every grid point)
      method: lhs                # lhs (Latin hypercube) or random
      n: 50
      seed: 0
      ranges: {topology.uplink_gbps: [50, 400], device.eff_flops: [0.3, 0.7]}  # int bounds: integers

Keys: the run options (``RUN_KEYS``), ``workload.<field>``, ``topology.<param>`` (inline builder topologies)
and ``device.<field>`` (a Device field of the worker device). Each run becomes one row: its inputs (the
swept keys), the step summary's scalars (``results.tables.flat_summary``) and ``error`` (empty, or the one-line
reason the point is invalid: an invalid point does not stop the others). Points run at ``fidelity: auto`` unless
they say otherwise, as commands do: each row's ``fidelity`` is the one it ran at, and ``fidelity_reason`` why.

With ``closed_form: true`` the points the closed form covers (``simulator.run.closed_form``: every strategy,
ps synchronous only, recommenders with expected IDs; at ``fidelity: analytical``, maxmin sharing) are
evaluated together, one numpy evaluation per group of points that differ only in
``workload.batch_per_worker`` and in their inline topology's link rates and latencies
(``topology.host_gbps``, ``topology.latency_us``, ...: one fabric's routes serve them all); their rows
(``evaluation``: ``closed form``) hold the step time, samples/s, bytes on the wire and per worker (mean),
compute, exposed communication and memory, equal to the engine's. Other points run on the engine
(``evaluation``: ``engine``).

Rows are appended and flushed to ``<out>.journal.jsonl`` as runs finish (fsynced at most every half
second); the table (Parquet, or CSV for ``.csv``) is written atomically at the end, sorted by ``run``.
``resume`` skips every run already in the journal or the table, so a sweep killed at any moment (even
``kill -9``) loses at most the runs in flight. Backends: ``local`` (a process pool) and ``dask``
(dask.distributed: a local cluster, or the scheduler at ``scheduler``); they give the same rows.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from simulator.errors import SpecError, check_choice, from_validation, read_mapping
from simulator.results.tables import write_table
from simulator.run.spec import KEYS

RUN_KEYS = tuple(KEYS)  # every run key (``simulator.run.spec``), underscores or dashes
PREFIXES = ("workload.", "topology.", "device.")
DEFAULTS: dict[str, Any] = {"workload": "dlrm-small", "topology": "leafspine16", "strategy": None,
                            "fidelity": "auto", "device": "h100", "server_device": "cpu-server",
                            "workers": None, "servers": None, "placement": "colocated", "steps": 1}
BACKENDS = ("local", "dask")
FSYNC_EVERY_S = 0.5
MAX_POINTS = 10_000_000
PR_SET_PDEATHSIG = 1  # prctl option (<linux/prctl.h>): a signal the kernel sends this process when its parent dies
PARENT_CHECK_S = 1.0  # elsewhere: how often a pool worker checks that its parent is alive


def _key(name: str) -> str:
    name = str(name).replace("-", "_") if "." not in str(name) else str(name)
    if name not in RUN_KEYS and not name.startswith(PREFIXES):
        raise ValueError(f"unknown key {name!r}; allowed: {', '.join(RUN_KEYS)}, workload.<field>, "
                         "topology.<param>, device.<field>")
    return name


class Sample(BaseModel):
    """Points drawn in ranges: ``lhs`` (one point per stratum of every range) or ``random`` (uniform)."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["lhs", "random"] = Field("lhs", description="lhs: Latin hypercube; random: uniform")
    n: int = Field(ge=1, le=1_000_000, description="points drawn")
    seed: int = Field(0, ge=0, description="the draw's seed")
    ranges: dict[str, tuple[int | float, int | float]] = Field(
        min_length=1, description="key: [low, high]; integers stay integers (a range of two ints draws ints)")

    @field_validator("ranges")
    @classmethod
    def _ranges(cls, ranges: dict[str, tuple[int | float, int | float]]) -> dict[str, tuple[int | float, int | float]]:
        for name, (low, high) in ranges.items():
            if not (np.isfinite(low) and np.isfinite(high) and low <= high):
                raise ValueError(f"range of {name}: [{low}, {high}]; allowed: finite bounds with low <= high")
        return {_key(name): bounds for name, bounds in ranges.items()}


class SweepSpec(BaseModel):
    """What to run: ``base`` options for every run, a ``grid`` of values, and optional ``sample`` points."""

    model_config = ConfigDict(extra="forbid")
    base: dict[str, Any] = Field(default_factory=dict, description="key: value for every point")
    grid: dict[str, list[Any]] = Field(default_factory=dict,
                                       description="key: [values]; every combination, the first key slowest")
    sample: Sample | None = Field(None, description="points drawn in ranges, times every grid point")
    closed_form: bool = Field(False, description="evaluate points in closed form over whole axes of batch sizes "
                                                 "and link rates and latencies (analytical, maxmin; every "
                                                 "strategy, ps synchronous only; recommenders: expected IDs); "
                                                 "others go to the engine")

    @field_validator("base", "grid")
    @classmethod
    def _keys(cls, values: dict[str, Any]) -> dict[str, Any]:
        return {_key(name): value for name, value in values.items()}

    @field_validator("grid")
    @classmethod
    def _non_empty(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for name, values in grid.items():
            if not values:
                raise ValueError(f"grid.{name} is empty; allowed: a list of at least one value")
        return grid


def load_sweep(spec: str | Path | dict | SweepSpec) -> SweepSpec:
    """A validated SweepSpec from a YAML/JSON file, a dict or a SweepSpec; errors are one SpecError line."""
    if isinstance(spec, SweepSpec):
        return spec
    source = "sweep"
    if not isinstance(spec, dict):
        source = str(spec)
        spec = read_mapping(Path(spec), "sweep", "base, grid and/or sample")
    try:
        return SweepSpec.model_validate(spec)
    except ValidationError as exc:
        raise from_validation(exc, SweepSpec, prefix=f"{source}:", default="sweep",
                              label=lambda loc: ".".join(map(str, loc))) from None


def expand(spec: SweepSpec) -> list[dict[str, Any]]:
    """The sweep's points in run order: every grid combination (first key slowest), times every sample."""
    count = math.prod(len(values) for values in spec.grid.values()) * (spec.sample.n if spec.sample else 1)
    if count > MAX_POINTS:
        raise SpecError("sweep", f"{count:.3g} points", f"allowed: at most {MAX_POINTS:,} points per sweep "
                                                         "(split it, or sample it with sample.n)")
    names = list(spec.grid)
    grid = [dict(zip(names, values, strict=True)) for values in itertools.product(*spec.grid.values())]
    samples = _samples(spec.sample) if spec.sample else [{}]
    return [{**g, **s} for g in grid for s in samples]


def _samples(sample: Sample) -> list[dict[str, Any]]:
    rng = np.random.default_rng(sample.seed)
    names = list(sample.ranges)
    if sample.method == "random":
        unit = rng.random((sample.n, len(names)))
    else:  # one point in each of n equal strata of every range, strata paired at random
        unit = (np.argsort(rng.random((len(names), sample.n)), axis=1).T + rng.random((sample.n, len(names))))
        unit /= sample.n
    points = []
    for row in unit:
        point = {}
        for name, u in zip(names, row, strict=True):
            low, high = sample.ranges[name]
            value = low + u * (high - low)
            integral = isinstance(low, int) and isinstance(high, int)
            point[name] = int(min(high, np.floor(value + 0.5))) if integral else float(value)
        points.append(point)
    return points


def run_key(params: dict[str, Any]) -> str:
    """A run's identity: a hash of its resolved parameters (what ``resume`` matches)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _texts(value: Any) -> tuple[str, ...]:
    """A list of specs, or one string of them separated by ``;`` (``faults``, ``stragglers``, ``rank_devices``)."""
    if value is None:
        return ()
    items = value if isinstance(value, list | tuple) else str(value).split(";")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _topology(base: str, params: dict[str, Any]) -> str:
    if not params:
        return base
    from topologies import parse_inline

    if ":" not in base:
        raise SpecError(f"topology.{next(iter(params))}", base, "sweeping a topology parameter needs an inline "
                                                                 "builder topology such as leafspine:leaves=4,...")
    name, current = parse_inline(base)
    merged = {**current, **params}
    return f"{name}:" + ",".join(f"{k}={v}" for k, v in merged.items())


def _resolve(params: dict[str, Any]) -> tuple[Any, str]:
    """The scenario (``simulator.run.spec``) and strategy of a point; a SpecError or ValueError if invalid.
    ``workload.<field>`` keys are ``set`` overrides, ``topology.<param>`` change the inline builder's
    parameters and ``device.<field>`` the worker device's fields."""
    from simulator.run.spec import RunSpec, resolve
    from workloads import ClassificationWorkload

    plain = {k: v for k, v in params.items() if "." not in k}
    for key in ("set", "faults", "stragglers", "rank_devices"):
        plain[key] = list(_texts(plain.get(key)))
    plain["set"] += [f"{k.split('.', 1)[1]}={v}" for k, v in params.items() if k.startswith("workload.")]
    plain["topology"] = _topology(plain["topology"], {k.split(".", 1)[1]: v for k, v in params.items()
                                                      if k.startswith("topology.")})
    spec = RunSpec.from_flat(plain)
    scenario = resolve(spec, {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("device.")})
    strategy = spec.strategy or ("mp-fc" if isinstance(scenario.workload, ClassificationWorkload) else "des")
    return scenario, strategy


def _failed(row: dict[str, Any], exc: Exception) -> dict[str, Any]:
    row["error"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return row


def run_point(index: int, params: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """Simulate one point on the engine; its row: ``run``, ``key``, the inputs, ``evaluation``
    (``engine``), the summary's scalars and ``error``."""
    from simulator.results.tables import flat_summary

    row: dict[str, Any] = {"run": index, "key": run_key(params), **inputs, "evaluation": "engine"}
    try:
        scenario, strategy = _resolve(params)
        summary = scenario.simulate(strategy).summary
    except (SpecError, ValueError, ValidationError) as exc:
        return _failed(row, exc)
    # the fidelity that ran replaces the one asked for (auto); fidelity_reason says why
    row.update({k: v for k, v in flat_summary(summary).items() if k not in inputs or k == "fidelity"}, error="")
    return row


BATCH = "workload.batch_per_worker"


def closed_form_rows(points: list[tuple[int, dict, dict]]) -> tuple[list[dict[str, Any]], list[tuple[int, dict, dict]]]:
    """Rows of the points the closed form covers (``simulator.run.closed_form``), one evaluation per group of
    points that differ only in their batch size and their topology's link rates and latencies (one fabric's
    routes and profiles serve them all: ``Fabric.grid``); and the points left for the engine."""
    from simulator.run.closed_form import step_times, supports
    from simulator.strategies import needs_servers

    groups: dict[str, list[tuple[tuple[int, dict, dict], str | None, tuple[tuple[str, float], ...]]]] = {}
    rows, left = [], []
    for point in points:
        try:
            topology, shape, link_values = _link_shape(point[1])
        except (SpecError, ValueError, ValidationError, TypeError):
            left.append(point)  # the engine path records the error
            continue
        shared = {k: v for k, v in point[1].items() if k != BATCH and not k.startswith("topology.")}
        groups.setdefault(run_key({**shared, "topology": shape}), []).append((point, topology, link_values))
    for group in groups.values():
        shared = {k: v for k, v in group[0][0][1].items() if k != BATCH}
        try:
            scenario, strategy = _resolve(shared)
        except (SpecError, ValueError, ValidationError):
            left += [point for point, _, _ in group]  # the engine path records the error of each point
            continue
        spec, workload = scenario.spec, scenario.workload
        if (spec.stragglers or spec.rank_devices or spec.network_model != "maxmin"
                or not supports(workload, strategy, spec.fidelity, spec.steps, spec.options)):
            left += [point for point, _, _ in group]
            continue
        batches = np.array([p[1].get(BATCH, workload.batch_per_worker) for p, _, _ in group], dtype=np.float64)
        try:
            cluster = scenario.cluster(strategy)
            grid = cluster.fabric.grid([dict(link_values) for _, _, link_values in group])
            values = step_times(workload, cluster, strategy, batches, spec.options, grid)
        except (SpecError, ValueError, ValidationError) as exc:
            rows += [_failed({"run": i, "key": run_key(params), **inputs, "evaluation": "closed form"}, exc)
                     for (i, params, inputs), _, _ in group]
            continue
        topology = str(cluster.fabric.graph.graph.get("spec", "custom"))
        servers = len(cluster.servers) if needs_servers(strategy) else 0
        for j, ((index, params, inputs), point_topology, _) in enumerate(group):
            row = {"strategy": strategy, "workload": workload.name, "model": workload.model,
                   "topology": point_topology or topology, "fidelity": "analytical", "fidelity_reason": "requested",
                   "workers": cluster.n_workers, "servers": servers, "batch_per_worker": int(batches[j]), "steps": 1,
                   **{k: v[j].item() for k, v in values.items()}}
            rows.append({"run": index, "key": run_key(params), **inputs, "evaluation": "closed form",
                         **{k: v for k, v in row.items() if k not in inputs}, "error": ""})
    return rows, left


def _link_shape(params: dict[str, Any]) -> tuple[str | None, str, tuple[tuple[str, float], ...]]:
    """A point's topology as ``topologies.spec.link_shape`` splits it: (its spec, its shape, its link rates and
    latencies); a preset or a file is a shape of its own, without link values. A TypeError for unhashable
    ``topology.<param>`` values."""
    changes = tuple((k.split(".", 1)[1], v) for k, v in params.items() if k.startswith("topology."))
    return _topology_shape(params["topology"], changes)


@functools.lru_cache(maxsize=4096)
def _topology_shape(base: str, changes: tuple[tuple[str, Any], ...]) -> tuple[str | None, str,
                                                                             tuple[tuple[str, float], ...]]:
    """``_link_shape`` of topology ``base`` with ``changes`` to its parameters, once per process."""
    from topologies import BUILDERS
    from topologies.spec import link_shape

    topology = _topology(base, dict(changes))
    if ":" not in topology and topology not in BUILDERS:
        return None, topology, ()
    return link_shape(topology)


def _journal(out: Path) -> Path:
    return out.with_name(out.name + ".journal.jsonl")


def _done_rows(out: Path) -> list[dict[str, Any]]:
    """Rows already finished: the table's (if written) and the journal's (a torn last line is dropped)."""
    rows: list[dict[str, Any]] = []
    if out.exists():
        rows += (pd.read_parquet(out) if out.suffix == ".parquet" else pd.read_csv(out, keep_default_na=False)
                 ).to_dict(orient="records")
    journal = _journal(out)
    if journal.exists():
        for line in journal.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # killed mid-write: that run runs again
    unique = {row["key"]: row for row in rows}
    return list(unique.values())


def _die_with_parent(parent_pid: int) -> None:
    """A pool worker's initializer: the worker ends when the sweep's process (``parent_pid``) does, even killed
    with -9 (a worker waits on the task queue, whose pipe it holds open itself, so it would live on). On Linux
    the kernel kills it (prctl PR_SET_PDEATHSIG, SIGKILL); elsewhere, or where prctl fails, a thread checks
    every ``PARENT_CHECK_S`` that its parent process is unchanged."""
    if sys.platform == "linux" and ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0:
        try:
            os.kill(parent_pid, 0)  # the parent died before prctl: no signal will come
        except ProcessLookupError:
            os._exit(1)
        return
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_S)
    os._exit(1)


def _local(points: list[tuple[int, dict, dict]], jobs: int) -> Iterator[dict[str, Any]]:
    jobs = min(jobs, len(points))
    if jobs <= 1:
        yield from (run_point(*p) for p in points)
        return
    # spawned, not forked: a fork while the progress timer's thread holds a lock could leave a worker hung
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(run_point, *p) for p in points]
        for future in as_completed(futures):
            yield future.result()


def _dask(points: list[tuple[int, dict, dict]], jobs: int, scheduler: str | None) -> Iterator[dict[str, Any]]:
    try:
        from dask.distributed import Client, LocalCluster
        from dask.distributed import as_completed as dask_completed
    except ImportError:
        raise SpecError("backend", "dask", "needs dask: pip install -e '.[dask]'") from None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = [client.submit(run_point, *p, pure=False) for p in points]
        for future in dask_completed(futures):
            yield future.result()
    finally:
        client.close()
        if not scheduler:
            cluster.close()


def sweep(spec: str | Path | dict | SweepSpec, out: str | Path | None = None, backend: str = "local",
          jobs: int | None = None, resume: bool = False, scheduler: str | None = None,
          progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Run every point of ``spec``; one row per run, sorted by ``run`` (see the module doc).

    ``out``: the table to write (``.parquet`` or ``.csv``), with its journal beside it; without it rows are
    only returned. ``jobs``: worker processes (default: the machine's cores). ``progress(done, total)``
    follows the runs.
    """
    plan = load_sweep(spec)
    check_choice("backend", backend, BACKENDS)
    jobs = jobs or os.cpu_count() or 1
    if jobs < 1:
        raise SpecError("jobs", jobs, "allowed: >= 1")
    base = {**DEFAULTS, **plan.base}
    points = []
    for index, point in enumerate(expand(plan)):
        params = {k: v for k, v in {**base, **point}.items() if v is not None}
        points.append((index, params, point))
    path = Path(out) if out is not None else None
    done: list[dict[str, Any]] = []
    if path is not None:
        if path.suffix not in (".parquet", ".csv"):
            raise SpecError("out", str(path), "must end in .parquet or .csv")
        existing = path.exists() or _journal(path).exists()
        if existing and not resume:
            raise SpecError("out", str(path), "exists (or its journal does); add --resume to continue it, or "
                                              "choose another file")
        done = _done_rows(path) if existing else []
    finished = {row["key"] for row in done}
    todo = [p for p in points if run_key(p[1]) not in finished]
    total, count = len(points), len(points) - len(todo)
    if progress:
        progress(count, total)
    journal = open(_journal(path), "a", encoding="utf-8") if path is not None else None  # noqa: SIM115
    synced = time.monotonic()
    try:
        quick, todo = closed_form_rows(todo) if plan.closed_form else ([], todo)
        runner = _local(todo, jobs) if backend == "local" else _dask(todo, jobs, scheduler)
        for row in itertools.chain(quick, runner):
            done.append(row)
            if journal is not None:
                journal.write(json.dumps(row, default=_json_value) + "\n")
                journal.flush()  # in the OS's hands: a kill -9 of this process loses nothing written
                if time.monotonic() - synced > FSYNC_EVERY_S:  # on the disk: a machine crash loses < 0.5 s
                    os.fsync(journal.fileno())
                    synced = time.monotonic()
            count += 1
            if progress:
                progress(count, total)
    finally:
        if journal is not None:
            journal.flush()
            os.fsync(journal.fileno())
            journal.close()
    keys = {run_key(p[1]) for p in points}
    table = pd.DataFrame([row for row in done if row["key"] in keys]).sort_values("run", ignore_index=True)
    for name in [c for c in table.columns if table[c].dtype == np.dtype("O")]:  # an invalid run's gaps: None
        table[name] = table[name].astype(object).where(table[name].notna(), None)
    if path is not None:
        write_table(table, path)
        _journal(path).unlink(missing_ok=True)
    return table


def _json_value(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


