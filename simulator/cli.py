"""The ``dessim`` command line (typer). Bad input: one line on stderr and exit status 2."""

from __future__ import annotations

import copy
import importlib.metadata
import inspect
import json
import sys
import types
import typing
from collections.abc import Callable
from typing import Annotated

import pydantic
import typer
from rich.console import Console
from rich.table import Table
from typer.exceptions import Abort, Exit, TyperException

from simulator import cli_executor
from simulator import console as ui
from simulator.errors import ExecutorError, SpecError, from_validation
from simulator.options import DEFAULT_BUDGET_S, DEFAULT_NETWORK_MODEL, DEFAULT_RATE_TOLERANCE
from simulator.run.spec import simulate_all

app = typer.Typer(cls=ui.HelpGroup, add_completion=False, no_args_is_help=False, context_settings={
    "help_option_names": ["-h", "--help"]}, help="dessim: simulate distributed-training communication (PS vs DES "
    "and friends) over cluster topologies.")

DEFAULT_TOPOLOGY = "fattree:k=8,link_gbps=400,latency_us=1"


def _version(show: bool) -> None:
    if show:
        typer.echo(f"dessim {importlib.metadata.version('dessim')}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context, version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="print the version and exit")] = False) -> None:
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


def _key_option(name: str) -> object:
    """A run key's typer option, for commands that take a few of them (``collective``)."""
    from simulator.run.spec import KEYS

    return typer.Option(KEYS[name].cli, help=KEYS[name].field.description)


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
    fidelity: Annotated[str, _key_option("fidelity")] = "auto",
    budget_s: Annotated[float, _key_option("budget_s")] = DEFAULT_BUDGET_S,
    servers: Annotated[int, typer.Option(help="pushpull: the last P endpoints are servers")] = 0,
    ecmp: Annotated[str, typer.Option(help="equal-cost next hop: hash (per flow) | dmodk (fat-tree static)")]
    = "hash",
    rate_tolerance: Annotated[float, typer.Option(
        help="flow: completions within this fraction of a flow's age share one rate recomputation "
             "(0 = exact event order)")] = DEFAULT_RATE_TOLERANCE,
    fault: Annotated[list[str] | None, _key_option("faults")] = None,
    network_model: Annotated[str, _key_option("network_model")] = DEFAULT_NETWORK_MODEL,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
    links_out: Annotated[str | None, typer.Option("--links-out", help="write the per-link table (.csv/.parquet)")]
    = None,
) -> None:
    """Simulate one collective over every host of a topology (nccl-tests sizes and busbw)."""
    from simulator.run.collective import run_collective

    report, links = run_collective(op, algo, size, topology, fault or [], ecmp, fidelity, servers, rate_tolerance,
                                   network_model, budget_s)
    if links_out:
        ui.write_table(links.table(), links_out, "links-out")
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    ui.print_collective(report, size)


JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document")]
OUTPUTS = [  # run and compare: what to write besides the table
    ("as_json", bool, False, typer.Option("--json", help="print one JSON document")),
    ("trace_out", str | None, None, typer.Option("--trace-out", help="write the trace (.csv/.parquet)")),
    ("links_out", str | None, None, typer.Option("--links-out", help="write the per-link table (.csv/.parquet)")),
    ("save", str | None, None, typer.Option("--save", help="save the results to this directory (summary, trace, "
                                                           "links, link timeline) for dessim report")),
]


def _run_options(skip: tuple[str, ...] = (), extra: list[tuple] | None = None) -> Callable[[Callable], Callable]:
    """Give a command one option per run key (``run.spec.KEYS``: type, default and help from ``RunSpec``), but
    ``skip``, then ``extra`` (name, type, default, typer.Option); the command receives them as keywords."""
    from simulator.errors import choices
    from simulator.run.spec import KEYS

    params = []
    for name, key in KEYS.items():
        if name in skip:
            continue
        field = key.field
        default = field.get_default(call_default_factory=True)
        kind = typing.get_origin(field.annotation)
        if isinstance(default, list):
            annotation, default = list[str] | None, None
        elif choices(field):
            annotation = str | None if default is None else str
        elif kind in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(field.annotation) if a is not type(None)) | None
        else:
            annotation = field.annotation
        option = typer.Option(key.cli, help=field.description, show_default=default is not None)
        params.append((name, annotation, default, option))
    params += extra or []

    def decorate(command: Callable) -> Callable:
        signature = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                       annotation=Annotated[annotation, option])
                     for name, annotation, default, option in params]
        command.__signature__ = inspect.Signature(signature, return_annotation=None)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in signature}
        return command

    return decorate


def _spec(options: dict[str, object]) -> object:
    """The RunSpec of a command's run options (those not given keep RunSpec's defaults)."""
    from simulator.run.spec import KEYS, RunSpec, cli_name

    return RunSpec.from_flat({k: v for k, v in options.items() if k in KEYS and v is not None}, cli_name)


def _one_step(show_progress: bool = False, record_rates: bool = False, **options: object) -> object:
    """The StepReport of one strategy (default: the workload kind's), as ``dessim run`` and ``trace`` run it."""
    with ui.progress_bar(show_progress) as update:
        return simulate_all(_spec(options), single=True, record_rates=record_rates, progress=update,
                            notice=update.note)[0]


@_run_options(extra=OUTPUTS)
def run(as_json: bool = False, trace_out: str | None = None, links_out: str | None = None, save: str | None = None,
        **options: object) -> None:
    """Simulate one training step of a workload under one strategy."""
    reports = [_one_step(ui.bars_wanted(as_json), save is not None, **options)]
    ui.write_step_outputs(reports, trace_out, links_out, save)
    if as_json:
        typer.echo(json.dumps(reports[0].summary.document()))
        return
    ui.print_summary(reports, f"Ran {reports[0].summary.strategy}")


@_run_options(skip=("strategy",), extra=[("strategies", str | None, None, typer.Option(
    help="comma-separated; changes are against the first (default: ps,des, or dp-fc,ps-fc,mp-fc,mp-fc-knn for "
         "extreme classification)")), *OUTPUTS])
def compare(strategies: str | None = None, as_json: bool = False, trace_out: str | None = None,
            links_out: str | None = None, save: str | None = None, **options: object) -> None:
    """Simulate one training step under several strategies side by side (default: PS vs DES, or every
    extreme-classification strategy)."""
    from simulator.run.training import comparison_document

    names = [name.strip() for name in strategies.split(",") if name.strip()] if strategies is not None else None
    if names == []:
        raise SpecError("strategies", strategies, "allowed: a comma-separated list such as ps,des")
    with ui.progress_bar(ui.bars_wanted(as_json)) as update:
        reports = simulate_all(_spec(options), names, record_rates=save is not None, progress=update,
                               notice=update.note)
    names = [r.summary.strategy for r in reports]
    document = comparison_document(reports)
    ui.write_step_outputs(reports, trace_out, links_out, save, document)
    if as_json:
        typer.echo(json.dumps(document))
        return
    ui.print_summary(reports, "Compared " + ", ".join(names))


@_run_options(extra=[("out", str, ..., typer.Option(
    help="the trace-event JSON to write (ui.perfetto.dev, chrome://tracing)"))])
def trace(out: str, **options: object) -> None:
    """Simulate one step (the options of dessim run) and write its trace as Perfetto / Chrome trace-event JSON:
    a track per rank and stream, a slice per op, flows tying each collective's slices together."""
    from simulator.results.perfetto import write_trace_events

    if not out.endswith(".json"):
        raise SpecError("out", out, "must end in .json")
    report = _one_step(ui.bars_wanted(False), **options)
    summary = report.summary
    write_trace_events(report.trace, out, f"{summary.strategy} / {summary.workload} / {summary.topology}")
    typer.echo(f"wrote {out}: {summary.strategy}, {report.trace['rank'].nunique()} ranks, {len(report.trace)} ops, "
               f"step {ui.seconds(summary.step_time_s)} at {summary.fidelity} level; open it in https://ui.perfetto.dev")


for _command in (run, compare, trace):
    app.command()(_command)


@app.command()
def sweep(
    spec: Annotated[str, typer.Argument(metavar="SPEC", help=(
        "the sweep spec (YAML): base, grid, sample, closed_form; its keys are in docs/KEYS.md (the run keys: "
        "dessim list keys)"))],
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
    from simulator.run.sweep import sweep as run_sweep

    with ui.progress_bar(ui.bars_wanted(as_json)) as update:
        table = run_sweep(spec, out, backend, jobs, resume, scheduler,
                          progress=lambda done, total: update("runs", done, total))
    ui.print_sweep(table, out, as_json)


@app.command("jobs")
def jobs_command(
    spec: Annotated[str, typer.Argument(metavar="SPEC", help=(
        "the jobs spec (YAML): topology, fidelity, jobs, as docs/examples/jobs.yaml; its keys are in docs/KEYS.md "
        "(a job's run keys: dessim list keys)"))],
    out: Annotated[str | None, typer.Option(help="write the table (.csv/.parquet), one row per job")] = None,
    fidelity: Annotated[str | None, typer.Option(help="auto | flow | analytical (default: the file's fidelity, "
                                                      "auto; see dessim list keys)")] = None,
    budget_s: Annotated[float | None, typer.Option(help="fidelity auto: the most wall seconds flow level may take "
                                                        "for all the runs (default: the file's budget_s, 60)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run several training jobs at once on one topology, each on its own hosts and sharing links; per job,
    its step time alone and shared, and the interference it suffers."""
    from simulator.run.jobs import load_jobs, simulate_jobs

    if out is not None and not out.endswith((".parquet", ".csv")):
        raise SpecError("out", out, "must end in .csv or .parquet")
    given = {"fidelity": fidelity, "budget_s": budget_s}
    loaded = load_jobs(spec, {key: value for key, value in given.items() if value is not None})
    with ui.progress_bar(ui.bars_wanted(as_json)) as update:
        result = simulate_jobs(loaded, progress=update)
    table = result.table
    if out is not None:
        ui.write_table(table, out, "out")
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    console = Console()
    ui.print_header(console, f"Ran {len(table)} jobs together at {result.fidelity} fidelity "
                             f"({result.fidelity_reason}), and each alone on the same hosts (per step):",
                    {"topology": result.spec.topology})
    if result.fidelity == "analytical":
        console.print("Shared, each link's capacity is split max-min among the jobs crossing it, as if their traffic "
                      "on it always coincided (an upper estimate where their phases interleave).")
    shown = Table(show_header=True)
    for column in ("job", "strategy", "hosts", "alone", "shared", "slowdown", "interference"):
        shown.add_column(column)
    for row in table.itertuples():
        shown.add_row(row.name, row.strategy, row.hosts, ui.seconds(row.step_time_alone_s),
                      ui.seconds(row.step_time_shared_s), f"x{row.slowdown:.3g}", ui.seconds(row.interference_s))
    console.print(shown)
    for name, report in result.shared.items():
        for role, used in report.summary.memory.items():
            if not used.fits:
                console.print(f"{name}: {role} memory: {used.reason}")
    if out is not None:
        console.print(f"wrote {out}")


@app.command()
def report(
    results: Annotated[str, typer.Argument(metavar="RESULTS", help="a directory saved by dessim run/compare --save, "
                                                                   "or a sweep table (.parquet/.csv)")],
    out: Annotated[str, typer.Option(help="the HTML file to write (self-contained, works offline)")] = "report.html",
) -> None:
    """One self-contained HTML report (summary table and figures) of saved results."""
    from pathlib import Path

    from simulator.results.report import build_report

    if not out.endswith((".html", ".htm")):
        raise SpecError("out", out, "must end in .html")
    page = build_report(results)
    Path(out).write_text(page, encoding="utf-8")
    typer.echo(f"wrote {out} ({len(page) / 1e6:.1f} MB)")


@app.command("list")
def list_things(what: Annotated[str, typer.Argument(
        help="topologies | collectives | workloads | hardware | strategies | links | keys")] = "topologies",
        topology: Annotated[str | None, typer.Option(
            help="links: the topology whose cables to list (names for --fault; default: run's)")] = None) -> None:
    """List topologies, collectives, workloads, hardware presets, strategies, a topology's links, or the run
    keys (options of run, compare and trace; keys of sweeps and jobs)."""
    if what == "topologies":
        ui.print_topologies()
    elif what == "collectives":
        from simulator.collectives.algorithms import SUPPORTED

        for op, algos in SUPPORTED.items():
            typer.echo(f"{op}: {', '.join((*algos, 'auto'))}")
    elif what == "workloads":
        from workloads import MODELS, list_presets

        typer.echo("builders: " + ", ".join(MODELS))
        typer.echo("presets:  " + ", ".join(list_presets()))
    elif what == "hardware":
        from simulator.compute.roofline import list_devices, load_device
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
        from simulator.run.spec import DEFAULT_TOPOLOGY
        from topologies import load_topology

        for u, v, gbps in load_topology(topology or DEFAULT_TOPOLOGY).edges(data="link_gbps"):
            typer.echo(f"{u}-{v} {gbps:g} Gb/s")
    elif what == "keys":
        ui.print_keys()
    else:
        raise SpecError("list", what, "allowed: topologies, collectives, workloads, hardware, strategies, links, "
                                      "keys")


cli_executor.register(app)
for _info in app.registered_commands:
    _info.cls = ui.HelpCommand


def _app_for(args: list[str]) -> typer.Typer:
    """``app`` with only the command ``args`` name, or all of them: typer builds the options of every command it
    holds on each call, about 10 ms (run, compare and trace have one per run key) of a 0.3 s command."""
    named = [info for info in app.registered_commands
             if args[:1] == [info.name or typer.main.get_command_name(info.callback.__name__)]]
    if not named:
        return app
    one = copy.copy(app)
    one.registered_commands = named
    return one


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``dessim`` console script."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = _app_for(args)(args=args, standalone_mode=False)
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
        typer.echo(f"dessim: error: {from_validation(error, None)}", err=True)
        sys.exit(2)
    except ExecutorError as error:
        typer.echo(f"dessim: run failed: {error}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
