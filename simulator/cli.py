"""The ``dessim`` command line (typer). Bad input: one line on stderr and exit status 2."""

from __future__ import annotations

import inspect
import json
import sys
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import pydantic
import typer

if typing.TYPE_CHECKING:
    import pandas as pd
from rich.console import Console
from rich.table import Table
from typer.exceptions import Abort, Exit, TyperException

from simulator.errors import ExecutorError, SpecError
from simulator.network.fluid import DEFAULT_RATE_TOLERANCE
from simulator.network.models import DEFAULT_NETWORK_MODEL

app = typer.Typer(add_completion=False, no_args_is_help=False, help="dessim: simulate distributed-training "
                  "communication (PS vs DES and friends) over cluster topologies.")

DEFAULT_TOPOLOGY = "fattree:k=8,link_gbps=400,latency_us=1"


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


FaultOpt = Annotated[list[str] | None, typer.Option(
    "--fault", help="link fault SRC-DST=FACTOR: keep FACTOR of the bandwidth, 0 or fail = failed and rerouted "
                    "around (fnmatch patterns, SRC>DST one way, ,fraction=F,seed=S a random share of the "
                    "matches; repeatable)")]
StragglerOpt = Annotated[list[str] | None, typer.Option(
    "--straggler", help="slower compute: RANKS=FACTOR (3=2, 0-7=1.5), bernoulli:p=P,factor=F,seed=S or "
                        "lognormal:sigma=S,seed=S per rank and step (repeatable)")]
RankDeviceOpt = Annotated[list[str] | None, typer.Option(
    "--rank-device", help="mixed devices: RANKS=DEVICE runs those ranks on another device (0-7=a100; repeatable)")]
def check_network_model(name: str) -> None:
    from simulator.network.models import network_model

    network_model(name, "--network-model")


NetworkModelOpt = Annotated[str, typer.Option(
    "--network-model", help="how flows share links, as SimGrid names it: maxmin (equal shares, ideal capacity) | "
                            "cm02 (shares by 1/RTT, TCP window cap, ACK load) | lv08 (cm02 with SimGrid's TCP "
                            "corrections: latency x13.01, rate x0.97; for TCP/Ethernet clusters)")]


@app.command()
def collective(
    op: Annotated[str, typer.Option(help="allreduce|reducescatter|allgather|alltoall|broadcast|incast|pushpull")]
    = "allreduce",
    algo: Annotated[str | None, typer.Option(help="ring|tree|halving-doubling|direct|hierarchical|auto "
                                             "(default: ring for allreduce/reducescatter/allgather, tree for "
                                             "broadcast, direct otherwise)")] = None,
    size: Annotated[str, typer.Option(help="bytes per rank as nccl-tests counts them: 64MiB, 4KB, 1e9")] = "64MiB",
    topology: Annotated[str, typer.Option(help="preset name, YAML/JSON file, or inline builder string")]
    = DEFAULT_TOPOLOGY,
    fidelity: Annotated[str, typer.Option(help="flow (max-min fair, event driven) | analytical")] = "flow",
    servers: Annotated[int, typer.Option(help="pushpull: the last P endpoints are servers")] = 0,
    ecmp: Annotated[str, typer.Option(help="equal-cost next hop: hash (per flow) | dmodk (fat-tree static)")]
    = "hash",
    rate_tolerance: Annotated[float, typer.Option(
        help="flow: completions within this fraction of a flow's age share one rate recomputation "
             "(0 = exact event order)")] = DEFAULT_RATE_TOLERANCE,
    fault: FaultOpt = None,
    network_model: NetworkModelOpt = DEFAULT_NETWORK_MODEL,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
    links_out: Annotated[str | None, typer.Option("--links-out", help="write the per-link table (.csv/.parquet)")]
    = None,
) -> None:
    """Simulate one collective over every host of a topology (nccl-tests sizes and busbw)."""
    from simulator.collectives import DEFAULT_ALGO, OPS
    from simulator.fabric import Fabric
    from simulator.network import FIDELITIES
    from simulator.simulate import simulate_collective
    from simulator.units import parse_size_bytes
    from topologies import load_topology
    from topologies.faults import apply_faults

    if op not in OPS:
        raise SpecError("op", op, f"allowed: {', '.join(OPS)}")
    algo = algo or DEFAULT_ALGO[op]
    size_bytes = parse_size_bytes(size, "size")
    if fidelity not in FIDELITIES:
        raise SpecError("fidelity", fidelity, f"allowed: {', '.join(FIDELITIES)}")
    check_network_model(network_model)
    fabric = Fabric(apply_faults(load_topology(topology), fault or []), ecmp=ecmp)
    report, links = simulate_collective(op, algo, size_bytes, fabric, fidelity, servers, rate_tolerance,
                                        network_model)
    if links_out:
        _write_table(links, links_out)
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    console = Console()
    console.print(f"Ran {report.op} ({report.algo}) of {size} on {report.ranks} ranks of "
                  f"[bold]{report.topology}[/bold] at {report.fidelity} fidelity, {report.network_model} sharing.")
    table = Table(show_header=True)
    for column in ("quantity", "value"):
        table.add_column(column)
    rows = [
        ("time", f"{report.time_s * 1e3:.6g} ms"),
        ("algbw", f"{report.algbw_GBps:.4g} GB/s"),
        ("busbw", f"{report.busbw_GBps:.4g} GB/s"),
        ("bytes on wire", f"{report.bytes_on_wire:.6g}"),
        ("busiest link bytes", f"{report.max_link_bytes:.6g}"),
        ("steps / messages", f"{report.steps} / {report.messages}"),
        ("wall time", f"{report.wall_s:.3g} s"),
    ]
    if report.auto_times_s:
        rows.append(("auto candidates", ", ".join(f"{a} {t * 1e3:.4g} ms" for a, t in report.auto_times_s.items())))
    for row in rows:
        table.add_row(*row)
    console.print(table)


DEFAULT_WORKLOAD = "dlrm-criteo-tb"
DEFAULT_STEP_TOPOLOGY = "leafspine:leaves=4,hosts_per_leaf=4,spines=2,host_gbps=100,uplink_gbps=200,latency_us=1"

WorkloadOpt = Annotated[str, typer.Option(help="preset name, YAML file, or inline builder (dlrm:batch=2048)")]
TopologyOpt = Annotated[str, typer.Option(help="preset name, YAML/JSON file, or inline builder string")]
FidelityOpt = Annotated[str, typer.Option(help="flow (max-min fair, event driven) | analytical")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="workload override key=value (repeatable)")]
DeviceOpt = Annotated[str, typer.Option(help="worker device preset (v100, a100, h100, h200) or YAML file")]
ServerDeviceOpt = Annotated[str, typer.Option(help="PS server device preset or YAML file")]
WorkersOpt = Annotated[int | None, typer.Option(help="workers (default: every host not a dedicated server)")]
ServersOpt = Annotated[int | None, typer.Option(help="PS servers (default: one per worker co-located, "
                                                    "or hosts/8 dedicated)")]
PlacementOpt = Annotated[str, typer.Option(help="PS servers: colocated (on worker hosts) | dedicated")]
StepsOpt = Annotated[int, typer.Option(help="training steps to simulate (summary is per step)")]
PsModeOpt = Annotated[str, typer.Option(help="ps: sync | async | ssp")]
StalenessOpt = Annotated[int, typer.Option(help="ps --ps-mode ssp: staleness bound in steps")]
ServerThreadsOpt = Annotated[int | None, typer.Option(
    help="ps async/ssp: requests a server handles at once, first come first served (default: all)")]
DenseOpt = Annotated[str, typer.Option(help="ps: dense parameters on the servers (ps) or all-reduced")]
DesInputOpt = Annotated[str, typer.Option(help="des: gathered (all-gather IDs) | replicated input")]
DesPartialOpt = Annotated[str, typer.Option(help="des: what owners sum: fields (pooled vectors) | first-layer "
                                                 "(the first dense layer's partial) | auto (fewer values per "
                                                 "sample)")]
ColumnShardsOpt = Annotated[int, typer.Option(help="cw: column blocks per table")]
KnnKOpt = Annotated[int, typer.Option(help="mp-fc-knn: neighbours scored per label (1 to classes - 1)")]
KnnRebuildOpt = Annotated[int, typer.Option(help="mp-fc-knn: steps between rebuilds of the class-neighbour graph")]
KnnCandidatesOpt = Annotated[int | None, typer.Option(help="mp-fc-knn: classes compared per class in a rebuild "
                                                           "(default: all, brute force)")]
OverlapOpt = Annotated[bool, typer.Option(help="*-fc: bucketed backbone gradient reduction overlapping backward")]
TopkOpt = Annotated[float, typer.Option(help="*-fc: fraction of backbone gradient values sent, 0 < r <= 1 "
                                             "(1: dense all-reduce)")]
Fp16CommOpt = Annotated[bool, typer.Option(help="*-fc: features, gradients and weights travel as fp16 (as "
                                                  "--comm-dtype fp16)")]
PrecisionOpt = Annotated[str | None, typer.Option(
    help="GEMM precision: fp32 | tf32 | bf16 | fp16 (bf16/fp16: mixed precision, fp32 master weights and "
         "optimizer state, 2-byte activations; default: the workload's, fp32)")]
CommDtypeOpt = Annotated[str | None, typer.Option(
    help="dtype of values on the wire: fp32 | bf16 | fp16 (default: the activations', 2 bytes under bf16/fp16)")]
CalibrationOpt = Annotated[str | None, typer.Option(help="calibration profile JSON (dessim calibrate)")]
ToleranceOpt = Annotated[float, typer.Option(help="flow: completion batching tolerance (0 = exact)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document")]
TraceOutOpt = Annotated[str | None, typer.Option("--trace-out", help="write the trace (.csv/.parquet)")]
LinksOutOpt = Annotated[str | None, typer.Option("--links-out", help="write the per-link table (.csv/.parquet)")]
SaveOpt = Annotated[str | None, typer.Option("--save", help="save the results to this directory (summary, trace, "
                                                            "links, link timeline) for dessim report")]


FC_ALLOWED = {"knn_k": "an integer >= 1 (and < the classes)", "knn_rebuild_steps": "an integer >= 1",
              "knn_candidates": "an integer >= 1", "topk_ratio": "a number with 0 < ratio <= 1"}


def _strategy_options(ps_mode: str, staleness: int, dense: str, des_input: str, column_shards: int, knn_k: int,
                      knn_rebuild_steps: int, knn_candidates: int | None, overlap: bool, topk_ratio: float,
                      fp16_comm: bool, server_threads: int | None = None, des_partial: str = "auto") -> object:
    """The StrategyOptions of the command-line options; a bad value is one SpecError naming the option."""
    from simulator.strategies import StrategyOptions
    from simulator.strategies.des import PARTIALS, DESOptions
    from simulator.strategies.fc import FCOptions
    from simulator.strategies.ps import PSOptions
    from simulator.strategies.torchrec import ShardingOptions

    try:
        fc = FCOptions(knn_k=knn_k, knn_rebuild_steps=knn_rebuild_steps, knn_candidates=knn_candidates,
                       overlap=overlap, topk_ratio=topk_ratio, fp16_comm=fp16_comm)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0])
        raise SpecError("--" + name.replace("_", "-"), first.get("input"),
                        f"allowed: {FC_ALLOWED.get(name, first['msg'])}") from None
    if des_partial not in PARTIALS:
        raise SpecError("--des-partial", des_partial, f"allowed: {', '.join(PARTIALS)}")
    if server_threads is not None and server_threads < 1:
        raise SpecError("--server-threads", server_threads, "allowed: an integer >= 1")
    return StrategyOptions(PSOptions(mode=ps_mode, staleness=staleness, dense=dense, server_threads=server_threads),
                           DESOptions(input=des_input, partial=des_partial),
                           ShardingOptions(column_shards=column_shards), fc)


def _precision_overrides(precision: str | None, comm_dtype: str | None) -> dict[str, str]:
    """``--precision`` and ``--comm-dtype`` as workload overrides (field -> value), each value checked."""
    from workloads.precision import COMM_DTYPES, PRECISIONS

    given = {"precision": precision, "comm_dtype": comm_dtype}
    for name, allowed in (("precision", PRECISIONS), ("comm_dtype", COMM_DTYPES)):
        if given[name] is not None and given[name] not in allowed:
            raise SpecError(_OPTION_OF[name], given[name], f"allowed: {', '.join(allowed)}")
    return {name: value for name, value in given.items() if value is not None}


_OPTION_OF = {"precision": "--precision", "comm_dtype": "--comm-dtype"}


@contextmanager
def _named_as_options(fields: typing.Iterable[str]) -> Iterator[None]:
    """Errors about the workload ``fields`` a command-line option set name that option (``--precision``)."""
    try:
        yield
    except SpecError as error:
        field = error.field.removeprefix("classification.")
        if field not in fields:
            raise
        raise SpecError(_OPTION_OF[field], error.value, error.allowed) from None


def _step_reports(workload: str, topology: str, strategies: list[str] | None, fidelity: str,
                  overrides: list[str] | None, device: str, server_device: str, workers: int | None,
                  servers: int | None, placement: str, steps: int, options: object, calibration: str | None,
                  rate_tolerance: float, single: bool = False, record_rates: bool = False,
                  progress: ProgressUpdate | None = None, faults: list[str] | None = None,
                  stragglers: list[str] | None = None, rank_devices: list[str] | None = None,
                  precision: str | None = None, comm_dtype: str | None = None,
                  network_model: str = DEFAULT_NETWORK_MODEL) -> list:
    """Load, validate and simulate every strategy (default: the workload kind's defaults); returns their
    StepReports. ``precision`` and ``comm_dtype`` (the options) override the workload's."""
    numerics = _precision_overrides(precision, comm_dtype)
    with _named_as_options(numerics):
        return _simulate_all(workload, topology, strategies, fidelity,
                             [*(overrides or []), *(f"{k}={v}" for k, v in numerics.items())], device,
                             server_device, workers, servers, placement, steps, options, calibration,
                             rate_tolerance, single, record_rates, progress, faults, stragglers, rank_devices,
                             network_model)


def _simulate_all(workload: str, topology: str, strategies: list[str] | None, fidelity: str,
                  overrides: list[str], device: str, server_device: str, workers: int | None,
                  servers: int | None, placement: str, steps: int, options: object, calibration: str | None,
                  rate_tolerance: float, single: bool, record_rates: bool, progress: ProgressUpdate | None,
                  faults: list[str] | None, stragglers: list[str] | None, rank_devices: list[str] | None,
                  network_model: str) -> list:
    """``_step_reports`` with the workload overrides final."""
    from simulator.compute import apply_calibration, load_calibration, load_device
    from simulator.fabric import Fabric
    from simulator.network import FIDELITIES
    from simulator.strategies import STRATEGIES, strategies_for
    from simulator.training import make_cluster, simulate_step
    from topologies import load_topology
    from topologies.faults import apply_faults
    from workloads import ClassificationWorkload, load_workload

    for name in strategies or ():
        if name not in STRATEGIES:
            raise SpecError("strategy", name, f"allowed: {', '.join(STRATEGIES)}")
    if fidelity not in FIDELITIES:
        raise SpecError("fidelity", fidelity, f"allowed: {', '.join(FIDELITIES)}")
    check_network_model(network_model)
    spec = load_workload(workload, overrides)
    if not strategies:  # PS vs DES, or every extreme-classification strategy; one: the last of them
        strategies = list(strategies_for(spec)) if isinstance(spec, ClassificationWorkload) else ["ps", "des"]
        strategies = strategies[-1:] if single else strategies
    for name in strategies:
        if name not in strategies_for(spec):
            raise SpecError("strategy", name, f"allowed for this workload ({spec.model}): "
                                              f"{', '.join(strategies_for(spec))}")
    worker_device, host_device = load_device(device), load_device(server_device)
    if calibration:
        profile = load_calibration(calibration)
        worker_device, host_device = apply_calibration(worker_device, profile), apply_calibration(host_device, profile)
    fabric = Fabric(apply_faults(load_topology(topology), faults or []))
    reports = []
    for name in strategies:
        cluster = make_cluster(fabric, name, worker_device, host_device, workers, servers, placement)
        follow = (lambda done, total, name=name: progress(f"simulating {name}", done, total)) if progress else None
        reports.append(simulate_step(spec, cluster, name, fidelity, steps, options, rate_tolerance,
                                     record_rates=record_rates and fidelity == "flow", progress=follow,
                                     stragglers=stragglers or (), rank_devices=rank_devices or (),
                                     network_model=network_model))
    return reports


def _print_summary(reports: list, title: str) -> None:
    from simulator.training import comparison_table

    table = comparison_table(reports)
    console = Console()
    first = reports[0].summary
    servers = max(r.summary["servers"] for r in reports)
    with_servers = f" (ps: {servers} servers)" if servers else ""
    console.print(f"{title}: [bold]{first['workload']}[/bold] ({first['model']}) on {first['workers']} workers"
                  f"{with_servers} of [bold]{first['topology']}[/bold] at {first['fidelity']} fidelity "
                  f"({first['network_model']} sharing), batch "
                  f"{first['batch_per_worker']} per worker.")
    out = Table(show_header=True)
    for column in ("strategy", "step", "samples/s", "on wire", "per worker", "exposed comm", "memory"):
        out.add_column(column)
    for _, row in table.iterrows():
        out.add_row(row["strategy"], _seconds(row["step_time_s"]), f"{row['samples_per_s']:.3g}",
                    _bytes(row["bytes_on_wire"]), _bytes(row["bytes_per_worker_max"]),
                    _seconds(row["exposed_comm_s"]), "fits" if row["fits_memory"] else "DOES NOT FIT")
    console.print(out)
    whatif = [key for key in ("faults", "stragglers", "rank_devices") if first.get(key)]
    if whatif:
        console.print("what if: " + "; ".join(f"{key} {first[key]}" for key in whatif))
    for report in reports:
        summary = report.summary
        if "des_partial" in summary:
            console.print(f"{summary['strategy']}: partials summed per sample: {summary['partial_width']} values "
                          f"({summary['des_partial']}; --des-partial)")
        if whatif or summary["staleness_max"] > 0:
            pace = summary["worker_step_time_s"]
            console.print(f"{summary['strategy']}: each worker's own step {_seconds(pace['min'])} to "
                          f"{_seconds(pace['max'])}; at those paces all workers together "
                          f"{summary['worker_samples_per_s']:.3g} samples/s (the table's samples/s: every worker's "
                          f"batch per step of the whole run); staleness mean {summary['staleness_mean']:.3g}, max "
                          f"{summary['staleness_max']:.0f} updates by other workers between a read and its apply; "
                          f"a read at most {summary['clock_gap_max']:.0f} steps ahead of the slowest worker "
                          f"(SSP's bound)", soft_wrap=True)
        for role, used in report.summary["memory"].items():
            if not used["fits"]:
                console.print(f"{report.summary['strategy']}: {role} memory: {used['reason']}")
    base = table.iloc[0]
    for _, row in table.iloc[1:].iterrows():
        ratios = [f"step time x{row['step_time_s'] / base['step_time_s']:.3g}"]
        if base["bytes_on_wire"]:
            ratios.append(f"bytes on wire x{row['bytes_on_wire'] / base['bytes_on_wire']:.3g}")
        console.print(f"{row['strategy']} vs {base['strategy']}: " + ", ".join(ratios))


def _seconds(value: float) -> str:
    return f"{value * 1e3:.4g} ms" if value < 1 else f"{value:.4g} s"


def _bytes(value: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} B"


ProgressUpdate = typing.Callable[[str, float, float], None]


@contextmanager
def progress_bar(enabled: bool, console: Console | None = None) -> Iterator[ProgressUpdate]:
    """Progress bars (rich, on stderr) when ``enabled``: yields ``update(label, done, total)``, one bar per
    label. Disabled (a no-op) under --json or when stderr is not a terminal."""
    if not enabled:
        yield lambda label, done, total: None
        return
    from rich import progress as rp

    columns = (rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(), rp.TimeElapsedColumn(),
               rp.TextColumn("ETA"), rp.TimeRemainingColumn())
    with rp.Progress(*columns, console=console or Console(stderr=True), transient=True) as bar:
        tasks: dict[str, typing.Any] = {}

        def update(label: str, done: float, total: float) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        yield update


def _bars_wanted(as_json: bool) -> bool:
    return not as_json and sys.stderr.isatty()


def _write_step_outputs(reports: list, trace_out: str | None, links_out: str | None, save: str | None = None,
                        document: dict | None = None) -> None:
    import pandas as pd

    if save:
        from simulator.report import save_results

        save_results(save, document or {"strategies": [r.summary for r in reports]}, reports)
    if trace_out:
        _write_table(pd.concat([r.trace.assign(strategy=r.summary["strategy"]) for r in reports],
                               ignore_index=True), trace_out, "trace-out")
    if links_out:
        _write_table(pd.concat([r.links.assign(strategy=r.summary["strategy"]) for r in reports],
                               ignore_index=True), links_out, "links-out")


def _one_step(workload: str, topology: str, strategy: str | None, fidelity: str, overrides: list[str] | None,
              device: str, server_device: str, workers: int | None, servers: int | None, placement: str, steps: int,
              ps_mode: str, staleness: int, dense: str, des_input: str, column_shards: int, knn_k: int,
              knn_rebuild_steps: int, knn_candidates: int | None, overlap: bool, topk_ratio: float, fp16_comm: bool,
              calibration: str | None, rate_tolerance: float, fault: list[str] | None = None,
              straggler: list[str] | None = None, rank_device: list[str] | None = None,
              server_threads: int | None = None, des_partial: str = "auto", precision: str | None = None,
              comm_dtype: str | None = None, network_model: str = DEFAULT_NETWORK_MODEL,
              record_rates: bool = False, show_progress: bool = False) -> object:
    """The StepReport of one strategy (default: the workload kind's), as ``dessim run`` and ``trace`` run it."""
    options = _strategy_options(ps_mode, staleness, dense, des_input, column_shards, knn_k, knn_rebuild_steps,
                                knn_candidates, overlap, topk_ratio, fp16_comm, server_threads, des_partial)
    with progress_bar(show_progress) as update:
        return _step_reports(workload, topology, [strategy] if strategy else None, fidelity, overrides, device,
                             server_device, workers, servers, placement, steps, options, calibration,
                             rate_tolerance, single=True, record_rates=record_rates, progress=update,
                             faults=fault, stragglers=straggler, rank_devices=rank_device, precision=precision,
                             comm_dtype=comm_dtype, network_model=network_model)[0]


@app.command()
def run(
    workload: WorkloadOpt = DEFAULT_WORKLOAD, topology: TopologyOpt = DEFAULT_STEP_TOPOLOGY,
    strategy: Annotated[str | None, typer.Option(
        help="ps | des | des-rs | des-a2a | dp | tw | cw | rw | twrw; for extreme classification dp-fc | ps-fc | "
             "mp-fc | mp-fc-knn (default: des, or mp-fc-knn)")] = None,
    fidelity: FidelityOpt = "flow", overrides: SetOpt = None, device: DeviceOpt = "h100",
    server_device: ServerDeviceOpt = "cpu-server", workers: WorkersOpt = None, servers: ServersOpt = None,
    placement: PlacementOpt = "colocated", steps: StepsOpt = 1, ps_mode: PsModeOpt = "sync",
    staleness: StalenessOpt = 1, server_threads: ServerThreadsOpt = None, dense: DenseOpt = "ps",
    des_input: DesInputOpt = "gathered", des_partial: DesPartialOpt = "auto",
    column_shards: ColumnShardsOpt = 4, knn_k: KnnKOpt = 10, knn_rebuild_steps: KnnRebuildOpt = 1000,
    knn_candidates: KnnCandidatesOpt = None, overlap: OverlapOpt = False, topk_ratio: TopkOpt = 1.0,
    fp16_comm: Fp16CommOpt = False, precision: PrecisionOpt = None, comm_dtype: CommDtypeOpt = None,
    calibration: CalibrationOpt = None,
    rate_tolerance: ToleranceOpt = DEFAULT_RATE_TOLERANCE, fault: FaultOpt = None, straggler: StragglerOpt = None,
    rank_device: RankDeviceOpt = None, network_model: NetworkModelOpt = DEFAULT_NETWORK_MODEL,
    as_json: JsonOpt = False, trace_out: TraceOutOpt = None, links_out: LinksOutOpt = None, save: SaveOpt = None,
) -> None:
    """Simulate one training step of a workload under one strategy."""
    reports = [_one_step(workload, topology, strategy, fidelity, overrides, device, server_device, workers, servers,
                         placement, steps, ps_mode, staleness, dense, des_input, column_shards, knn_k,
                         knn_rebuild_steps, knn_candidates, overlap, topk_ratio, fp16_comm, calibration,
                         rate_tolerance, fault, straggler, rank_device, server_threads, des_partial, precision,
                         comm_dtype, network_model,
                         record_rates=save is not None, show_progress=_bars_wanted(as_json))]
    _write_step_outputs(reports, trace_out, links_out, save)
    if as_json:
        typer.echo(json.dumps(reports[0].summary))
        return
    _print_summary(reports, f"Ran {reports[0].summary['strategy']}")


@app.command()
def compare(
    workload: WorkloadOpt = DEFAULT_WORKLOAD, topology: TopologyOpt = DEFAULT_STEP_TOPOLOGY,
    strategies: Annotated[str | None, typer.Option(
        help="comma-separated; savings are against the first (default: ps,des, or dp-fc,ps-fc,mp-fc,mp-fc-knn "
             "for extreme classification)")] = None,
    fidelity: FidelityOpt = "flow", overrides: SetOpt = None, device: DeviceOpt = "h100",
    server_device: ServerDeviceOpt = "cpu-server", workers: WorkersOpt = None, servers: ServersOpt = None,
    placement: PlacementOpt = "colocated", steps: StepsOpt = 1, ps_mode: PsModeOpt = "sync",
    staleness: StalenessOpt = 1, server_threads: ServerThreadsOpt = None, dense: DenseOpt = "ps",
    des_input: DesInputOpt = "gathered", des_partial: DesPartialOpt = "auto",
    column_shards: ColumnShardsOpt = 4, knn_k: KnnKOpt = 10, knn_rebuild_steps: KnnRebuildOpt = 1000,
    knn_candidates: KnnCandidatesOpt = None, overlap: OverlapOpt = False, topk_ratio: TopkOpt = 1.0,
    fp16_comm: Fp16CommOpt = False, precision: PrecisionOpt = None, comm_dtype: CommDtypeOpt = None,
    calibration: CalibrationOpt = None,
    rate_tolerance: ToleranceOpt = DEFAULT_RATE_TOLERANCE, fault: FaultOpt = None, straggler: StragglerOpt = None,
    rank_device: RankDeviceOpt = None, network_model: NetworkModelOpt = DEFAULT_NETWORK_MODEL,
    as_json: JsonOpt = False, trace_out: TraceOutOpt = None, links_out: LinksOutOpt = None, save: SaveOpt = None,
) -> None:
    """Simulate one training step under several strategies side by side (default: PS vs DES, or every
    extreme-classification strategy)."""
    from simulator.training import SAVING_KEYS, comparison_table

    names = [name.strip() for name in strategies.split(",") if name.strip()] if strategies is not None else None
    if names == []:
        raise SpecError("strategies", strategies, "allowed: a comma-separated list such as ps,des")
    options = _strategy_options(ps_mode, staleness, dense, des_input, column_shards, knn_k, knn_rebuild_steps,
                                knn_candidates, overlap, topk_ratio, fp16_comm, server_threads, des_partial)
    with progress_bar(_bars_wanted(as_json)) as update:
        reports = _step_reports(workload, topology, names, fidelity, overrides, device, server_device, workers,
                                servers, placement, steps, options, calibration, rate_tolerance,
                                record_rates=save is not None, progress=update, faults=fault,
                                stragglers=straggler, rank_devices=rank_device, precision=precision,
                                comm_dtype=comm_dtype, network_model=network_model)
    names = [r.summary["strategy"] for r in reports]
    table = comparison_table(reports)
    savings = {row["strategy"]: {key: float(row[f"saving_{key}"]) for key in SAVING_KEYS}
               for _, row in table.iterrows()}
    document = {"baseline": names[0], "strategies": [r.summary for r in reports], "savings": savings}
    _write_step_outputs(reports, trace_out, links_out, save, document)
    if as_json:
        typer.echo(json.dumps(document))
        return
    _print_summary(reports, "Compared " + ", ".join(names))


def trace(out: Annotated[str, typer.Option(help="the trace-event JSON to write (ui.perfetto.dev, chrome://tracing)")],
          **run_options: object) -> None:
    """Simulate one step (the options of dessim run) and write its trace as Perfetto / Chrome trace-event JSON:
    a track per rank and stream, a slice per op, flows tying each collective's slices together."""
    from simulator.perfetto import write_trace_events

    if not out.endswith(".json"):
        raise SpecError("out", out, "must end in .json")
    report = _one_step(**run_options, show_progress=_bars_wanted(False))  # type: ignore[arg-type]
    summary = report.summary
    write_trace_events(report.trace, out, f"{summary['strategy']} / {summary['workload']} / {summary['topology']}")
    typer.echo(f"wrote {out}: {summary['strategy']}, {report.trace['rank'].nunique()} ranks, {len(report.trace)} ops, "
               f"step {_seconds(summary['step_time_s'])}; open it in https://ui.perfetto.dev")


_RUN_ONLY = ("as_json", "trace_out", "links_out", "save")


def _signature_of_run_plus_out() -> inspect.Signature:
    """``trace``'s signature: ``--out`` and every option of ``run`` but its outputs (annotations resolved, so
    typer reads their Option metadata)."""
    hints = {**typing.get_type_hints(run, include_extras=True), **typing.get_type_hints(trace, include_extras=True)}
    params = [inspect.signature(trace).parameters["out"],
              *(p for name, p in inspect.signature(run).parameters.items() if name not in _RUN_ONLY)]
    return inspect.Signature([p.replace(annotation=hints[p.name]) for p in params], return_annotation=None)


trace.__signature__ = _signature_of_run_plus_out()  # type: ignore[attr-defined]
trace.__annotations__ = {p.name: p.annotation for p in trace.__signature__.parameters.values()}  # type: ignore[attr-defined]
app.command("trace")(trace)


@app.command()
def sweep(
    spec: Annotated[str, typer.Argument(help="the sweep spec (YAML): base, grid, sample; see simulator/sweep.py")],
    out: Annotated[str, typer.Option(help="the results table (.parquet, or .csv), one row per run")] = (
        "results.parquet"),
    backend: Annotated[str, typer.Option(help="local (process pool) | dask (dask.distributed)")] = "local",
    scheduler: Annotated[str | None, typer.Option(help="dask: a scheduler address (default: a local cluster)")] = None,
    jobs: Annotated[int | None, typer.Option(help="worker processes (default: the cores)")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue a sweep that was stopped: skip finished "
                                                          "runs")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run every point of a sweep spec, writing each row as it finishes; resumable."""
    from simulator.sweep import sweep as run_sweep

    with progress_bar(_bars_wanted(as_json)) as update:
        table = run_sweep(spec, out, backend, jobs, resume, scheduler,
                          progress=lambda done, total: update("runs", done, total))
    failed = table[table.error != ""] if "error" in table else table.iloc[:0]
    if as_json:
        typer.echo(json.dumps({"out": out, "runs": len(table), "failed": len(failed)}))
        return
    typer.echo(f"wrote {out}: {len(table)} runs, {len(failed)} invalid")
    for row in failed.head(5).itertuples():
        typer.echo(f"  run {row.run}: {row.error}")


@app.command("jobs")
def jobs_command(
    spec: Annotated[str, typer.Argument(help="the jobs spec (YAML): topology, fidelity, jobs; see simulator/jobs.py")],
    out: Annotated[str | None, typer.Option(help="write the table (.csv/.parquet), one row per job")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run several training jobs at once on one topology, each on its own hosts and sharing links; per job,
    its step time alone and shared, and the interference it suffers."""
    from simulator.jobs import simulate_jobs

    if out is not None and not out.endswith((".parquet", ".csv")):
        raise SpecError("out", out, "must end in .csv or .parquet")
    with progress_bar(_bars_wanted(as_json)) as update:
        result = simulate_jobs(spec, progress=update)
    table = result.table
    if out is not None:
        _write_table(table, out, "out")
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    console = Console()
    console.print(f"Ran {len(table)} jobs together on [bold]{result.spec.topology}[/bold] at {result.spec.fidelity} "
                  "fidelity, and each alone on the same hosts (per step).")
    shown = Table(show_header=True)
    for column in ("job", "strategy", "hosts", "alone", "shared", "slowdown", "interference"):
        shown.add_column(column)
    for row in table.itertuples():
        shown.add_row(row.name, row.strategy, row.hosts, _seconds(row.step_time_alone_s),
                      _seconds(row.step_time_shared_s), f"x{row.slowdown:.3g}", _seconds(row.interference_s))
    console.print(shown)
    for name, report in result.shared.items():
        for role, used in report.summary["memory"].items():
            if not used["fits"]:
                console.print(f"{name}: {role} memory: {used['reason']}")
    if out is not None:
        console.print(f"wrote {out}")


@app.command()
def report(
    results: Annotated[str, typer.Argument(help="a directory saved by dessim run/compare --save, or a sweep table "
                                                "(.parquet/.csv)")],
    out: Annotated[str, typer.Option(help="the HTML file to write (self-contained, works offline)")] = "report.html",
) -> None:
    """One self-contained HTML report (summary table and figures) of saved results."""
    from pathlib import Path

    from simulator.report import build_report

    if not out.endswith((".html", ".htm")):
        raise SpecError("out", out, "must end in .html")
    page = build_report(results)
    Path(out).write_text(page, encoding="utf-8")
    typer.echo(f"wrote {out} ({len(page) / 1e6:.1f} MB)")


def _names(text: str, option: str, allowed: tuple[str, ...]) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names or [text]:
        if name not in allowed:
            raise SpecError(option, name, f"allowed: a comma-separated list of {', '.join(allowed)}")
    return names


def _worlds(text: str, option: str = "worlds", what: str = "world sizes from 1 to 64, such as 2,4,8",
            high: int = 64) -> list[int]:
    try:
        worlds = [int(w) for w in text.split(",")]
    except ValueError:
        worlds = []
    if not worlds or any(not 1 <= w <= high for w in worlds):
        raise SpecError(option, text, f"allowed: a comma-separated list of {what}")
    return worlds


def _executor() -> None:
    """Fail with one line when the executor's extra (torch) is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise SpecError("executor", "torch", "not installed; install the extra: pip install -e '.[torch]'") from None


BackendOpt = Annotated[str, typer.Option(help="gloo (CPU) | nccl (CUDA GPUs)")]
RepeatsOpt = Annotated[int, typer.Option(help="passes over the executor runs; each run keeps its quietest pass (a "
                                              "shared machine's speed changes in phases of seconds)")]


def _timeout(timeout_s: float) -> None:
    if not 0 < timeout_s <= 3600:
        raise SpecError("timeout-s", timeout_s, "allowed: seconds, > 0 and <= 3600")


def _backend(backend: str) -> None:
    if backend not in ("gloo", "nccl"):
        raise SpecError("backend", backend, "allowed: gloo, nccl")
    import torch

    if backend == "nccl" and not torch.cuda.is_available():
        raise SpecError("backend", backend, "needs CUDA GPUs; none is visible (use gloo on the CPU)")


@app.command()
def calibrate(
    out: Annotated[str, typer.Option(help="where to write the profile (JSON)")] = "profile.json",
    backend: BackendOpt = "gloo",
    worlds: Annotated[str, typer.Option(help="rank counts to measure at (comma-separated); the first is the "
                                              "profile's default")] = "2,4,8",
    device: Annotated[str | None, typer.Option(help="the device preset the profile calibrates "
                                                    "(default: cpu-server on gloo, h100 on nccl)")] = None,
    models: Annotated[str, typer.Option(help="executor models whose steps the compute terms are fitted to "
                                             "(comma-separated)")] = "lr,fm,widedeep,deepfm,dlrm",
    batches: Annotated[str, typer.Option(help="samples per worker of the fitted steps (comma-separated; keep "
                                              "validate's batch out of them: it is the held-out test)")] = "256,4096",
    steps: Annotated[int, typer.Option(help="executor steps per fitted run (the first is warm-up)")] = 6,
    repeats: RepeatsOpt = 5,
    timeout_s: Annotated[float, typer.Option(help="timeout of every collective (s)")] = 60.0,
) -> None:
    """Fit the simulator's parameters to this machine: collectives' per-call costs from microbenchmarks, and
    the compute terms to the per-op times of real executor steps (at batch sizes validate does not use)."""
    from pathlib import Path

    from simulator.compute import load_device

    _executor()
    _backend(backend)
    _timeout(timeout_s)
    sizes = _worlds(worlds)
    from simulator.executor.run import RECOMMENDERS

    fitted_models = _names(models, "models", RECOMMENDERS)
    fitted_batches = _worlds(batches, "batches", "batch sizes from 1 to 65536, such as 256,4096", 65536)
    if not 2 <= steps <= 1000:
        raise SpecError("steps", steps, "allowed: 2 to 1,000 (the first step is warm-up)")
    if not 1 <= repeats <= 100:
        raise SpecError("repeats", repeats, "allowed: 1 to 100")
    preset = load_device(device or ("h100" if backend == "nccl" else "cpu-server")).name
    if not out.endswith(".json"):
        raise SpecError("out", out, "must end in .json")
    from simulator.executor.calibrate import calibrate as run_calibration

    with progress_bar(_bars_wanted(False)) as update:
        profile, quality = run_calibration(sizes, preset, backend, timeout_s,
                                           progress=lambda done: update("worker counts calibrated", done, len(sizes)),
                                           models=fitted_models, batches=fitted_batches, steps=steps,
                                           repeats=repeats)
    Path(out).write_text(json.dumps(profile, indent=1))
    table = Table(title=f"Fit quality ({backend}, worlds {worlds}, device {preset})")
    for column in ("ranks", "group", "op", "points", "median error", "max error"):
        table.add_column(column, justify="left" if column in ("group", "op") else "right")
    for row in quality.itertuples():
        table.add_row(str(row.ranks), row.group, row.op, str(row.points), f"{row.median_error:.1%}",
                      f"{row.max_error:.1%}")
    console = Console()
    console.print(table)
    for ranks, fields in profile["ranks"].items():
        fitted = fields["devices"][preset]
        calls = ", ".join(f"{op} {c['call_us']:.0f} us + {c['ns_per_byte']:.3f} ns/B"
                          for op, c in fields["collectives"].items())
        console.print(f"{ranks} workers: launch {fitted['launch_overhead_us']:.1f} us, "
                      f"eff_flops {fitted['eff_flops']:.4f}, eff_gather {fitted['eff_gather']:.4f}, "
                      f"eff_mem {fitted['eff_mem']:.4f}, lookup {fitted['lookup_ns']:.1f} ns, "
                      f"id {fitted['id_ns']:.1f} ns, backward factor {fitted['backward_factor']:.2f}, "
                      f"step host {fitted['step_overhead_us']:.0f} us, jitter sigma {fields['jitter_sigma'] or 0:.2f}; "
                      f"per call: {calls}", soft_wrap=True)
    console.print(f"wrote {out}")


@app.command()
def validate(
    profile: Annotated[str | None, typer.Option(help="calibration profile (dessim calibrate)")] = None,
    models: Annotated[str, typer.Option(help="comma-separated executor models")] = "lr,fm,widedeep,deepfm,dlrm",
    strategies: Annotated[str, typer.Option(help="comma-separated executor strategies")] = (
        "ps,ps-async,des,des-rs,des-a2a,dp"),
    worlds: Annotated[str, typer.Option(help="worker counts (comma-separated; PS adds half as many servers)")] = (
        "2,4,8"),
    steps: Annotated[int, typer.Option(help="steps per run (the first is warm-up)")] = 6,
    repeats: RepeatsOpt = 5,
    batch: Annotated[int, typer.Option(help="samples per worker per step")] = 1024,
    device: Annotated[str, typer.Option(help="the device preset the local ranks are modelled as")] = "cpu-server",
    backend: BackendOpt = "gloo",
    timeout_s: Annotated[float, typer.Option(help="timeout of every collective (s)")] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as one JSON list (with each row's "
                                                        "breakdown)")] = False,
    breakdown: Annotated[bool, typer.Option("--breakdown", help="also print, per row, predicted vs measured "
                                                                "time per step by op category")] = False,
    out: Annotated[str | None, typer.Option(help="also write the rows (.csv/.parquet)")] = None,
) -> None:
    """Run a grid of models x strategies x world sizes on the real executor and on the simulator: predicted
    and measured bytes and step time, side by side, with their errors (and where the time went:
    --breakdown)."""
    from simulator.compute import load_calibration, load_device

    _executor()
    from simulator.executor.run import MODELS, STRATEGIES, strategies_for
    from simulator.validation import validate as run_validation

    grid = (_names(models, "models", MODELS), _names(strategies, "strategies", STRATEGIES), _worlds(worlds))
    _backend(backend)
    _timeout(timeout_s)
    if backend == "nccl" and "ps-async" in grid[1]:
        raise SpecError("strategies", "ps-async", "needs gloo (its servers receive from any worker; NCCL cannot)")
    if not 2 <= steps <= 1000:
        raise SpecError("steps", steps, "allowed: 2 to 1,000 (the first step is warm-up)")
    if not 1 <= repeats <= 100:
        raise SpecError("repeats", repeats, "allowed: 1 to 100")
    if not 1 <= batch <= 65536:
        raise SpecError("batch", batch, "allowed: 1 to 65536")
    if out is not None and not out.endswith((".parquet", ".csv")):
        raise SpecError("out", out, "must end in .csv or .parquet")
    calibration = load_calibration(profile) if profile else None
    load_device(device)
    stream = sys.stderr if as_json else sys.stdout
    console = Console(stderr=as_json, width=None if stream.isatty() else 150)  # the table, unwrapped in files
    done: list[dict] = []
    runs = sum(s in strategies_for(m) for m in grid[0] for s in grid[1]) * len(grid[2])

    def progress(row: dict) -> None:
        done.append(row)
        update("executor runs", len(done), runs)
        if not as_json:
            console.print(f"{row['model']:>8} {row['strategy']:>8} x{row['workers']}: bytes error "
                          f"{row['bytes_error']:.2g}, step {row['measured_step_s'] * 1e3:.1f} ms measured, "
                          f"{row['step_time_error']:+.1%} predicted")

    try:
        with progress_bar(_bars_wanted(as_json), console) as update:
            rows = run_validation(*grid, steps=steps, profile=calibration, device=device, batch_per_worker=batch,
                                  timeout_s=timeout_s, backend=backend, progress=progress,
                                  repeats=repeats)
    except ExecutorError:
        if out and done:  # the runs that finished are not lost
            import pandas as pd

            _write_table(_flat_breakdown(pd.DataFrame(done)), out, "out")
            typer.echo(f"dessim: wrote the {len(done)} finished runs to {out}", err=True)
        raise
    if out:
        _write_table(_flat_breakdown(rows), out, "out")
    if as_json:
        typer.echo(json.dumps(rows.to_dict(orient="records")))
        return
    table = Table(title="Predicted vs measured" + (f" (profile {profile})" if profile else " (uncalibrated)"))
    for column in ("model", "strategy", "workers", "servers", "bytes pred", "bytes meas", "bytes err",
                   "step pred", "step meas", "step err", "spread"):
        table.add_column(column, justify="left" if column in ("model", "strategy") else "right")
    for r in rows.itertuples():
        table.add_row(r.model, r.strategy, str(r.workers), str(r.servers), _bytes(r.predicted_bytes),
                      _bytes(r.measured_bytes), f"{r.bytes_error:.2g}", _seconds(r.predicted_step_s),
                      _seconds(r.measured_step_s), f"{r.step_time_error:+.1%}", f"{r.measured_spread:.0%}")
    console.print(table)
    if breakdown:
        console.print(_breakdown_table(rows))
    errors = rows.step_time_error.abs()
    console.print(f"bytes error: max {rows.bytes_error.max():.2g}; step-time error |pred/meas - 1|: "
                  f"mean {errors.mean():.1%}, max {errors.max():.1%} over {len(rows)} runs (measured steps' "
                  f"spread, IQR / median: {rows.measured_spread.median():.0%} typical)", soft_wrap=True)
    if not profile:
        console.print(f"uncalibrated: the ranks are modelled as the {device} datasheet; for this machine's numbers, "
                      "dessim calibrate --out profile.json, then --profile profile.json", soft_wrap=True)


def _flat_breakdown(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with each breakdown as a JSON string (a table file's cells are flat)."""
    return rows.assign(breakdown=rows.breakdown.map(json.dumps))


def _breakdown_table(rows: pd.DataFrame) -> Table:
    """Predicted and measured ms per step by op category, a line per (validate row, category)."""
    from simulator.validation import breakdown_table

    table = Table(title="Where the step goes, ms per step by op category (a worker's; server.*: a server's; "
                        "other: the executor's time outside every timed phase)")
    for column in ("model", "strategy", "workers", "category", "predicted", "measured", "error"):
        table.add_column(column, justify="left" if column in ("model", "strategy", "category") else "right")
    for r in breakdown_table(rows).itertuples():
        error = f"{r.predicted_s / r.measured_s - 1:+.0%}" if r.measured_s > 0 else ""
        table.add_row(r.model, r.strategy, str(r.workers), r.category, f"{r.predicted_s * 1e3:.3f}",
                      f"{r.measured_s * 1e3:.3f}", error)
    return table


@app.command("list")
def list_things(what: Annotated[str, typer.Argument(
        help="topologies | collectives | workloads | hardware | strategies | links")] = "topologies",
        topology: Annotated[str, typer.Option(help="links: the topology whose cables to list (names for --fault)")]
        = DEFAULT_STEP_TOPOLOGY) -> None:
    """List topologies, collectives, workloads, hardware presets, strategies, or a topology's links."""
    if what == "topologies":
        from topologies import BUILDERS, list_presets

        typer.echo("builders: " + ", ".join(BUILDERS))
        typer.echo("presets:  " + ", ".join(list_presets()))
    elif what == "collectives":
        from simulator.collectives import SUPPORTED

        for op, algos in SUPPORTED.items():
            typer.echo(f"{op}: {', '.join((*algos, 'auto'))}")
    elif what == "workloads":
        from workloads import MODELS, list_presets

        typer.echo("builders: " + ", ".join(MODELS))
        typer.echo("presets:  " + ", ".join(list_presets()))
    elif what == "hardware":
        from simulator.compute import list_devices, load_device
        from workloads.precision import PRECISIONS

        for name in list_devices():
            device = load_device(name)
            peaks = ", ".join(f"{p} {device.peak_tflops[p]:g}" for p in PRECISIONS if p in device.peak_tflops)
            typer.echo(f"{name}: {device.description}; --precision peaks (TFLOP/s): {peaks}")
    elif what == "strategies":
        from simulator.strategies import DESCRIPTIONS

        for name, text in DESCRIPTIONS.items():
            typer.echo(f"{name}: {text}")
    elif what == "links":
        from topologies import load_topology

        for u, v, gbps in load_topology(topology).edges(data="link_gbps"):
            typer.echo(f"{u}-{v} {gbps:g} Gb/s")
    else:
        raise SpecError("list", what, "allowed: topologies, collectives, workloads, hardware, strategies, links")


def _write_table(frame: object, path: str, option: str = "links-out") -> None:
    if not path.endswith((".parquet", ".csv")):
        raise SpecError(option, path, "must end in .csv or .parquet")
    if path.endswith(".parquet"):
        frame.to_parquet(path)  # type: ignore[attr-defined]
    else:
        frame.to_csv(path, index=False)  # type: ignore[attr-defined]


def _one_line(error: pydantic.ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "input"
    return f"{field}: got {first.get('input')!r}; {first['msg']}"


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``dessim`` console script."""
    try:
        code = app(args=argv, standalone_mode=False)
    except Abort:
        sys.exit(130)
    except Exit as done:
        sys.exit(done.exit_code)
    except TyperException as error:
        typer.echo(f"dessim: error: {error.format_message()}", err=True)
        sys.exit(2)
    except SpecError as error:
        typer.echo(f"dessim: error: {error}", err=True)
        sys.exit(2)
    except pydantic.ValidationError as error:
        typer.echo(f"dessim: error: {_one_line(error)}", err=True)
        sys.exit(2)
    except ExecutorError as error:
        typer.echo(f"dessim: run failed: {error}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
