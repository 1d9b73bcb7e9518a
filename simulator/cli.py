"""The ``dessim`` command line (typer). Bad input: one line on stderr and exit status 2."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import pydantic
import typer
from rich.console import Console
from rich.table import Table
from typer.exceptions import Abort, Exit, TyperException

from simulator.errors import SpecError
from simulator.network.fluid import DEFAULT_RATE_TOLERANCE

app = typer.Typer(add_completion=False, no_args_is_help=False, help="dessim: simulate distributed-training "
                  "communication (PS vs DES and friends) over cluster topologies.")

DEFAULT_TOPOLOGY = "fattree:k=8,link_gbps=400,latency_us=1"


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


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

    if op not in OPS:
        raise SpecError("op", op, f"allowed: {', '.join(OPS)}")
    algo = algo or DEFAULT_ALGO[op]
    size_bytes = parse_size_bytes(size, "size")
    if fidelity not in FIDELITIES:
        raise SpecError("fidelity", fidelity, f"allowed: {', '.join(FIDELITIES)}")
    fabric = Fabric(load_topology(topology), ecmp=ecmp)
    report, links = simulate_collective(op, algo, size_bytes, fabric, fidelity, servers, rate_tolerance)
    if links_out:
        _write_table(links, links_out)
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    console = Console()
    console.print(f"Ran {report.op} ({report.algo}) of {size} on {report.ranks} ranks of "
                  f"[bold]{report.topology}[/bold] at {report.fidelity} fidelity.")
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


@app.command("list")
def list_things(what: Annotated[str, typer.Argument(help="topologies | collectives")] = "topologies") -> None:
    """List topology builders and presets, or collectives and their algorithms."""
    if what == "topologies":
        from topologies import BUILDERS, list_presets

        typer.echo("builders: " + ", ".join(BUILDERS))
        typer.echo("presets:  " + ", ".join(list_presets()))
    elif what == "collectives":
        from simulator.collectives import SUPPORTED

        for op, algos in SUPPORTED.items():
            typer.echo(f"{op}: {', '.join((*algos, 'auto'))}")
    else:
        raise SpecError("list", what, "allowed: topologies, collectives")


def _write_table(frame: object, path: str) -> None:
    if path.endswith(".parquet"):
        frame.to_parquet(path)  # type: ignore[attr-defined]
    elif path.endswith(".csv"):
        frame.to_csv(path, index=False)  # type: ignore[attr-defined]
    else:
        raise SpecError("links-out", path, "must end in .csv or .parquet")


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
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
