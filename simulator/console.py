"""What the command line prints: step summaries, calibration and validation tables, progress bars, tables
written to files. Rendering only (rich); the numbers come from the layers below."""

from __future__ import annotations

import json
import sys
import threading
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.table import Table

from simulator.units import format_bytes

if typing.TYPE_CHECKING:
    import pandas as pd


def print_header(console: Console, text: str, specs: dict[str, str]) -> None:
    """``text`` (prose, wrapped at the console's width), then each machine-readable string of ``specs`` (name ->
    a topology or workload spec) on a line of its own, never wrapped, so that it copies whole at any width."""
    from rich.markup import escape

    console.print(text)
    for name, spec in specs.items():
        console.print(f"  {name}: [bold]{escape(spec)}[/bold]", soft_wrap=True)


def print_summary(reports: list, title: str, console: Console | None = None) -> None:
    """``dessim run`` and ``compare``'s report: the header, a line per strategy, what the byte columns count, and
    the notes of each strategy (fidelity, DES partials, paces and staleness, memory)."""
    from simulator.run.training import comparison_table

    table = comparison_table(reports)
    console = console or Console()
    first = reports[0].summary
    servers = max(r.summary.servers for r in reports)
    with_servers = f" (ps: {servers} servers)" if servers else ""
    fidelities = {r.summary.fidelity for r in reports}
    fidelity = f"at {first.fidelity} fidelity" if len(fidelities) == 1 else "at the fidelities below"
    print_header(console, f"{title}: {first.workers} workers{with_servers} {fidelity} ({first.network_model} "
                          f"sharing), batch {first.batch_per_worker} per worker, per step:",
                 {"workload": f"{first.workload} ({first.model})", "topology": first.topology})
    out = Table(show_header=True)
    for column in ("strategy", "step", "samples/s", "on wire", "per worker", "exposed comm", "memory"):
        out.add_column(column)
    for _, row in table.iterrows():
        out.add_row(row["strategy"], seconds(row["step_time_s"]), f"{row['samples_per_s']:.3g}",
                    format_bytes(row["bytes_on_wire"]), format_bytes(row["bytes_per_worker_max"]),
                    seconds(row["exposed_comm_s"]), "fits" if row["fits_memory"] else "DOES NOT FIT")
    console.print(out)
    hops = ", ".join(f"{row['strategy']} {format_bytes(row['bytes_on_links'])}" for _, row in table.iterrows())
    console.print(f"on wire: bytes all ranks send, each message once; counted on every link it crosses (--links-out's "
                  f"bytes summed, per step): {hops}. per worker: the busiest worker's bytes sent plus received.")
    whatif = {key: getattr(first, key) for key in ("faults", "stragglers", "rank_devices") if getattr(first, key)}
    if whatif:
        console.print("what if: " + "; ".join(f"{key} {value}" for key, value in whatif.items()))
    for report in reports:
        summary = report.summary
        if summary.fidelity_reason != "requested":
            sample = ("" if summary.analytical_difference is None else
                      f"; the analytical model's step time differs by {100 * summary.analytical_difference:+.3g}%")
            console.print(f"{summary.strategy}: {summary.fidelity} fidelity ({summary.fidelity_reason}{sample}; "
                          "--fidelity flow|analytical to choose)", soft_wrap=True)
        if summary.des_partial is not None:
            console.print(f"{summary.strategy}: partials summed per sample: {summary.partial_width} values "
                          f"({summary.des_partial}; --des-partial)")
        if whatif or summary.staleness_max > 0:
            pace = summary.worker_step_time_s
            console.print(f"{summary.strategy}: each worker's own step {seconds(pace.min)} to "
                          f"{seconds(pace.max)}; at those paces all workers together "
                          f"{summary.worker_samples_per_s:.3g} samples/s (the table's samples/s: every worker's "
                          f"batch per step of the whole run); staleness mean {summary.staleness_mean:.3g}, max "
                          f"{summary.staleness_max:.0f} updates (other workers' steps applied between a gradient's "
                          "read and its apply); "
                          f"a read at most {summary.clock_gap_max:.0f} steps ahead of the slowest worker "
                          f"(SSP's bound)", soft_wrap=True)
        for role, used in report.summary.memory.items():
            if not used.fits:
                console.print(f"{report.summary.strategy}: {role} memory: {used.reason}")
    base = table.iloc[0]
    for _, row in table.iloc[1:].iterrows():
        ratios = [f"step time x{row['step_time_s'] / base['step_time_s']:.3g}"]
        if base["bytes_on_wire"]:
            ratios.append(f"bytes on wire x{row['bytes_on_wire'] / base['bytes_on_wire']:.3g}")
        console.print(f"{row['strategy']} vs {base['strategy']}: " + ", ".join(ratios))


def key_sections() -> list[tuple[str, str, pd.DataFrame]]:
    """Every key of a run, a workload, a device, a sweep file and a jobs file: (title, how they are given, one row
    per key: ``key``, run keys' ``option``, ``type`` (allowed values), ``unit``, ``default``, ``help``), from the
    models that validate them; ``dessim list keys`` prints them and docs/KEYS.md shows them."""
    from simulator.compute.roofline import Device
    from simulator.run.jobs import NOT_IN_JOBS, SHARED, JobSpec, JobsSpec
    from simulator.run.spec import KEYS, RunSpec, field_table, key_table
    from simulator.run.sweep import DEFAULTS, Sample, SweepSpec
    from workloads import ClassificationWorkload, Table, Workload

    job_only = field_table(JobSpec)
    not_in_jobs = "; ".join(f"{k} ({why})" for k, why in NOT_IN_JOBS.items())
    return [
        ("Run keys", f"the {len(KEYS)} keys of one run: the options of dessim run, compare and trace (compare takes "
         "--strategies for --strategy), the keys of a sweep's base, grid and sample.ranges and of a job (with "
         "underscores or dashes)", key_table()),
        ("Workload keys", "--set KEY=VALUE (run, compare, trace), workload.KEY in sweeps, set: [KEY=VALUE] in jobs, "
         "BUILDER:KEY=VALUE inline (dlrm:batch=2048), and the fields of a workload file", field_table(Workload)),
        ("Table keys", "a recommender's embedding tables: --set KEY=VALUE sets every table, --set "
         "tables.NAME.KEY=VALUE one (tables are t0, t1, ... in the builders)", field_table(Table)),
        ("Extreme-classification workload keys", "the workload keys of xc-1e6, xc-1e7, xc-1e8 and classification:...",
         field_table(ClassificationWorkload)),
        ("Device keys", "device.KEY in sweeps (the worker device), and the fields of a device YAML file (--device "
         "FILE.yaml)", field_table(Device)),
        ("Sweep files (dessim sweep SPEC.yaml)", "the file's keys; base, grid and sample.ranges take the run keys, "
         "workload.KEY (workload and table keys), topology.PARAM (a parameter of the topology's builder, dessim list "
         "topologies; the topology must be a builder string or a preset of one) and device.KEY (device keys). A "
         "sweep's defaults differ from the command line's: " + ", ".join(f"{k}: {v}" for k, v in DEFAULTS.items()),
         field_table(SweepSpec)),
        ("Sweep sample", "the keys of a sweep file's sample", field_table(Sample)),
        ("Jobs files (dessim jobs SPEC.yaml)", "the file's keys", field_table(JobsSpec)),
        ("Job keys", "each job takes the run keys but the file's own (" + ", ".join(SHARED) + ") and "
         f"{not_in_jobs}; workload and strategy are required; and these",
         job_only[~job_only.key.isin(list(RunSpec.model_fields))]),
    ]


def print_keys() -> None:
    """``dessim list keys``: each section of ``key_sections``, a line per key."""
    for title, given, rows in key_sections():
        print(f"{title} -- {given}:")
        for row in rows.itertuples(index=False):
            option = f"{row.option}; " if "option" in rows else ""
            unit = f", in {row.unit}" if row.unit else ""
            print(f"  {row.key} ({option}{row.type}{unit}, default {row.default}): {row.help}")


def builder_table(name: str) -> pd.DataFrame:
    """Topology builder ``name``'s parameters: ``key``, ``type``, ``unit``, ``default`` (``derived``: computed from
    the others, as the builder's description says), from its signature."""
    import pandas as pd

    from simulator.run.spec import field_table
    from topologies import PARAMS

    rows = field_table(PARAMS[name]).drop(columns="help")
    rows["default"] = pd.Series(["derived" if v is None else v for v in rows.default], index=rows.index, dtype=object)
    return rows


def print_topologies() -> None:
    """``dessim list topologies``: every builder with its parameters, the presets, the custom-graph format."""
    from topologies import BUILDERS, CUSTOM_FORMAT, describe, preset_descriptions

    print("builders (inline: NAME:PARAM=VALUE,..., such as fattree:k=8,link_gbps=400; topology.PARAM in sweeps):")
    for name in BUILDERS:
        print(f"{name}: {' '.join(describe(name).split(chr(10) * 2)[0].split())}")
        for row in builder_table(name).itertuples(index=False):
            unit = f", in {row.unit}" if row.unit else ""
            print(f"  {row.key} ({row.type}{unit}, default {row.default})")
    print("presets:")
    for name, text in preset_descriptions().items():
        print(f"  {name}: {text}")
    print(f"custom graphs: {CUSTOM_FORMAT}; example: docs/examples/custom-graph.yaml")


def write_table(frame: pd.DataFrame, path: str, field: str) -> None:
    """``results.tables.write_table``, imported only when a table is written: commands that print need no
    pandas."""
    from simulator.results.tables import write_table as write

    write(frame, path, field)


class _Help:
    """Help pages as people read them: a flag shows no value type (typer's rich help writes ``--json <bool>``, as if
    it took one), and the usage line names a required argument ``SPEC``, not ``{SPEC}``."""

    def get_params(self, ctx: typer.Context) -> list:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False):
                param.metavar = ""
        return params

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        return [piece.strip("{}") for piece in super().collect_usage_pieces(ctx)]  # type: ignore[misc]


class HelpCommand(_Help, typer.core.TyperCommand):
    """A ``dessim`` command, with ``_Help``'s help page."""


class HelpGroup(_Help, typer.core.TyperGroup):
    """The ``dessim`` command group, with ``_Help``'s help page."""


def seconds(value: float) -> str:
    return f"{value * 1e3:.4g} ms" if value < 1 else f"{value:.4g} s"


PROGRESS_INTERVAL_S = 10.0  # off a terminal: a progress line this often


class Progress(typing.Protocol):
    """What ``progress_bar`` yields: ``update(label, done, total)``, and ``note(text)``, said at once."""

    def __call__(self, label: str, done: float, total: float) -> None: ...

    def note(self, text: str) -> None: ...


class _Bars:
    """Rich progress bars, one per label; notes print above them."""

    def __init__(self, bar: typing.Any) -> None:
        self.bar = bar
        self.tasks: dict[str, typing.Any] = {}

    def __call__(self, label: str, done: float, total: float) -> None:
        if label not in self.tasks:
            self.tasks[label] = self.bar.add_task(label, total=total)
        self.bar.update(self.tasks[label], completed=done, total=total)

    def note(self, text: str) -> None:
        self.bar.console.print(f"dessim: {text}", soft_wrap=True, markup=False, highlight=False)


class ProgressLines:
    """Progress off a terminal: ``tick()`` writes one line on ``stream`` saying where the latest update stands,
    with an estimate of the label's whole time (``progress_line``; a label's time starts at its first update,
    or at the start for the first label); notes are written at once. ``clock``: seconds, ``time.monotonic`` or
    a test's."""

    def __init__(self, stream: typing.TextIO, clock: typing.Callable[[], float] = time.monotonic) -> None:
        self.stream, self.clock = stream, clock
        self.latest: tuple[str, float, float] | None = None
        self.started_s: dict[str, float] = {}
        self.updated_s = clock()

    def __call__(self, label: str, done: float, total: float) -> None:
        self.started_s.setdefault(label, self.updated_s)  # a label's work starts when the previous one's ended
        self.latest, self.updated_s = (label, done, total), self.clock()

    def note(self, text: str) -> None:
        print(f"dessim: {text}", file=self.stream, flush=True)

    def tick(self) -> None:
        if self.latest is None:
            line = f"dessim: preparing, {self.clock() - self.updated_s:.0f} s so far (nothing to count yet)"
        else:
            label, done, total = self.latest
            line = progress_line(label, done, total, self.clock() - self.started_s[label])
        print(line, file=self.stream, flush=True)


def progress_line(label: str, done: float, total: float, elapsed_s: float) -> str:
    """One progress line: how far ``label`` is after ``elapsed_s`` seconds and, once under way, an estimate of
    its whole time (the time so far scaled by total / done: the work left as fast as the work done).

    >>> progress_line("simulating des", 250, 1000, 10.0)
    'dessim: simulating des: 250 of 1,000 (25%) after 10 s; about 40 s in all, 30 s to go'
    """
    if not done > 0 or not total > 0:
        return f"dessim: {label}: 0 of {total:,.0f} after {elapsed_s:.0f} s"
    whole_s = elapsed_s * total / done
    return (f"dessim: {label}: {done:,.0f} of {total:,.0f} ({done / total:.0%}) after {elapsed_s:.0f} s; about "
            f"{whole_s:.0f} s in all, {max(whole_s - elapsed_s, 0.0):.0f} s to go")


@contextmanager
def progress_bar(enabled: bool, console: Console | None = None, stream: typing.TextIO | None = None,
                 interval_s: float = PROGRESS_INTERVAL_S) -> Iterator[Progress]:
    """Progress as work goes: yields ``update(label, done, total)`` (with ``.note(text)``). ``enabled`` (a
    terminal, not --json): rich bars on stderr, one per label. Otherwise a line on ``stream`` (default stderr)
    every ``interval_s`` seconds while the work lasts (``ProgressLines``, from a timer thread), so a short run
    prints nothing and a long one is never silent."""
    if enabled:
        from rich import progress as rp

        columns = (rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
                   rp.TimeElapsedColumn(), rp.TextColumn("ETA"), rp.TimeRemainingColumn())
        with rp.Progress(*columns, console=console or Console(stderr=True), transient=True) as bar:
            yield _Bars(bar)
        return
    lines = ProgressLines(stream or sys.stderr)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(interval_s):
            lines.tick()

    timer = threading.Thread(target=tick, name="dessim-progress", daemon=True)
    timer.start()
    try:
        yield lines
    finally:
        stop.set()
        timer.join()


def bars_wanted(as_json: bool) -> bool:
    return not as_json and sys.stderr.isatty()


def print_collective(report: object, size: str) -> None:
    """``dessim collective``'s report (a ``run.collective.CollectiveReport``; ``size`` as the user gave it)."""
    console = Console()
    print_header(console, f"Ran {report.op} ({report.algo}) of {size} on {report.ranks} ranks at {report.fidelity} "
                          f"fidelity, {report.network_model} sharing:", {"topology": report.topology})
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
    if report.fidelity_reason != "requested":
        console.print(f"{report.fidelity} fidelity ({report.fidelity_reason}; --fidelity flow|analytical to choose)",
                      soft_wrap=True)


def print_sweep(table: pd.DataFrame, out: str, as_json: bool) -> None:
    """``dessim sweep``'s result (``table``, written to ``out``): its runs, how many ran at each fidelity and how
    many are invalid (the first five with their errors); with ``as_json``, those counts as one JSON document."""
    failed = table[table.error != ""] if "error" in table else table.iloc[:0]
    valid = table.drop(failed.index)
    fidelity = {str(name): int(n) for name, n in valid["fidelity"].value_counts().items()} if len(valid) else {}
    if as_json:
        typer.echo(json.dumps({"out": out, "runs": len(table), "failed": len(failed), "fidelity": fidelity}))
        return
    ran = "".join(f", {n} at {name} fidelity" for name, n in fidelity.items())
    typer.echo(f"wrote {out}: {len(table)} runs{ran}, {len(failed)} invalid")
    for row in failed.head(5).itertuples():
        typer.echo(f"  run {row.run}: {row.error}")


def write_step_outputs(reports: list, trace_out: str | None, links_out: str | None, save: str | None = None,
                       document: dict | None = None) -> None:
    """A run's files: ``--save`` (the JSON ``document``, default every summary; trace and link tables),
    ``--trace-out`` and ``--links-out`` (every report's table, with a ``strategy`` column)."""
    import pandas as pd

    if save:
        from simulator.results.report import save_results

        save_results(save, document or {"strategies": [r.summary.document() for r in reports]}, reports)
    if trace_out:
        write_table(pd.concat([r.trace.assign(strategy=r.summary.strategy) for r in reports], ignore_index=True),
                    trace_out, "trace-out")
    if links_out:
        write_table(pd.concat([r.links.assign(strategy=r.summary.strategy) for r in reports], ignore_index=True),
                    links_out, "links-out")


def flat_breakdown(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with each breakdown as a JSON string (a table file's cells are flat)."""
    return rows.assign(breakdown=rows.breakdown.map(json.dumps))


def breakdown_table(rows: pd.DataFrame) -> Table:
    """Predicted and measured ms per step by op category, a line per (validate row, category)."""
    from simulator.calibration.validation import breakdown_table

    table = Table(title="Where the step goes, ms per step by op category (a worker's; server.*: a server's; "
                        "other: the executor's time outside every timed phase)")
    for column in ("model", "strategy", "workers", "category", "predicted", "measured", "error"):
        table.add_column(column, justify="left" if column in ("model", "strategy", "category") else "right")
    for r in breakdown_table(rows).itertuples():
        error = f"{r.predicted_s / r.measured_s - 1:+.0%}" if r.measured_s > 0 else ""
        table.add_row(r.model, r.strategy, str(r.workers), r.category, f"{r.predicted_s * 1e3:.3f}",
                      f"{r.measured_s * 1e3:.3f}", error)
    return table


def print_calibration(profile: dict, quality: pd.DataFrame, title: str, preset: str) -> None:
    """``dessim calibrate``'s report: the fit quality per (ranks, group, op), then each worker count's terms."""
    table = Table(title=f"Fit quality ({title})")
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


def print_validation(rows: pd.DataFrame, profile: str | None, device: str, breakdown: bool, out: Console) -> None:
    """``dessim validate``'s table (predicted vs measured, per run), its breakdown and the summary line."""
    table = Table(title="Predicted vs measured" + (f" (profile {profile})" if profile else " (uncalibrated)"))
    for column in ("model", "strategy", "workers", "servers", "bytes pred", "bytes meas", "bytes err",
                   "step pred", "step meas", "step err", "spread"):
        table.add_column(column, justify="left" if column in ("model", "strategy") else "right")
    for r in rows.itertuples():
        table.add_row(r.model, r.strategy, str(r.workers), str(r.servers), format_bytes(r.predicted_bytes),
                      format_bytes(r.measured_bytes), f"{r.bytes_error:.2g}", seconds(r.predicted_step_s),
                      seconds(r.measured_step_s), f"{r.step_time_error:+.1%}", f"{r.measured_spread:.0%}")
    out.print(table)
    if breakdown:
        out.print(breakdown_table(rows))
    errors = rows.step_time_error.abs()
    out.print(f"bytes error: max {rows.bytes_error.max():.2g}; step-time error |pred/meas - 1|: "
                  f"mean {errors.mean():.1%}, max {errors.max():.1%} over {len(rows)} runs (measured steps' "
                  f"spread, IQR / median: {rows.measured_spread.median():.0%} typical)", soft_wrap=True)
    if not profile:
        out.print(f"uncalibrated: the ranks are modelled as the {device} datasheet; for this machine's numbers, "
                      "dessim calibrate --out profile.json, then --profile profile.json", soft_wrap=True)
