"""The ``dessim`` commands that run the real executor (``calibrate``, ``validate``; they need the ``torch``
extra), which ``register`` adds to the command line (``simulator.cli.app``). Parsing only; the work is in
``simulator.executor`` and ``simulator.calibration.validation``, the printing in ``simulator.console``."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from simulator import console as ui
from simulator.errors import ExecutorError, SpecError, torch_missing


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
        raise torch_missing() from None


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

    from simulator.compute.roofline import load_device

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
    from simulator.calibration.calibrate import calibrate as run_calibration

    with ui.progress_bar(ui.bars_wanted(False)) as update:
        profile, quality = run_calibration(sizes, preset, backend, timeout_s,
                                           progress=lambda done: update("worker counts calibrated", done, len(sizes)),
                                           models=fitted_models, batches=fitted_batches, steps=steps,
                                           repeats=repeats)
    Path(out).write_text(json.dumps(profile, indent=1))
    ui.print_calibration(profile, quality, f"{backend}, worlds {worlds}, device {preset}", preset)
    typer.echo(f"wrote {out}")


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
    from simulator.compute.roofline import load_calibration, load_device

    _executor()
    from simulator.calibration.validation import validate as run_validation
    from simulator.executor.run import MODELS, STRATEGIES, strategies_for

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
    out_console = Console(stderr=as_json, width=None if stream.isatty() else 150)  # the table, unwrapped in files
    done: list[dict] = []
    runs = sum(s in strategies_for(m) for m in grid[0] for s in grid[1]) * len(grid[2])

    def progress(row: dict) -> None:
        done.append(row)
        update("executor runs", len(done), runs)
        if not as_json:
            out_console.print(f"{row['model']:>8} {row['strategy']:>8} x{row['workers']}: bytes error "
                          f"{row['bytes_error']:.2g}, step {row['measured_step_s'] * 1e3:.1f} ms measured, "
                          f"{row['step_time_error']:+.1%} predicted")

    try:
        with ui.progress_bar(ui.bars_wanted(as_json), out_console) as update:
            rows = run_validation(*grid, steps=steps, profile=calibration, device=device, batch_per_worker=batch,
                                  timeout_s=timeout_s, backend=backend, progress=progress,
                                  repeats=repeats)
    except ExecutorError:
        if out and done:  # the runs that finished are not lost
            import pandas as pd

            ui.write_table(ui.flat_breakdown(pd.DataFrame(done)), out, "out")
            typer.echo(f"dessim: wrote the {len(done)} finished runs to {out}", err=True)
        raise
    if out:
        ui.write_table(ui.flat_breakdown(rows), out, "out")
    if as_json:
        typer.echo(json.dumps(rows.to_dict(orient="records")))
        return
    ui.print_validation(rows, profile, device, breakdown, out_console)


def register(app: typer.Typer) -> None:
    """Add ``calibrate`` and ``validate`` to ``app``."""
    app.command()(calibrate)
    app.command()(validate)
