"""DES vs PS crossover study: writes docs/CROSSOVER.md (tables) and docs/crossover.html (plotly).

For each model preset, per-worker bytes and step time under ``ps`` (servers co-located, one per worker),
``des`` (IDs all-gathered) and ``des`` with ``input=replicated`` (each worker reads the global batch's IDs
itself, so only partial results cross the network) as the number of workers N, the IDs per sample
(hotness) and the ID skew vary, at analytical fidelity on a leaf-spine of 100G hosts. docs/TRAINING_MODEL.md
predicts: PS bytes follow the distinct IDs of a worker's batch and do not depend on N; DES partials
follow (N-1)/N x B x r and do not depend on the IDs (the all-gathered IDs do). ``des`` takes DES's default
partial (``auto``: the first dense layer's where that sums fewer values, TRAINING_MODEL.md).

A second study pits DES's two partials against PS on the deep models whose first layer can be substituted
(W&D, DeepFM, DNN): ``des-fields`` sums r = F k (+1) values per sample, ``des-first-layer`` r = h1 (+ k + 1
DeepFM, + 1 W&D), as the fields per table (F = 26 x that for W&D and DNN, 39 x for DeepFM), the hotness
and N vary (DeepFM's first layer only one-hot).

    .venv/bin/python docs/crossover.py            # about a minute on 2 cores
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import plotly.express as px

from simulator.compute.roofline import load_device
from simulator.network.fabric import Fabric
from simulator.results.tables import markdown
from simulator.run.training import make_cluster, simulate_step
from simulator.strategies import StrategyOptions
from simulator.strategies.des import DESOptions
from topologies import load_topology
from workloads import load_workload

MODELS = ["lr-criteo", "fm-criteo", "widedeep-criteo", "deepfm-criteo", "dnn-criteo", "dlrm-criteo-tb",
          "dcn-criteo"]
WORKERS = [4, 16, 64]
HOTNESS = [1, 8, 32]
SKEW = [("uniform", None), ("zipf", 1.05), ("zipf", 1.5)]
BATCH = 1024
PARTIAL_MODELS = ["widedeep-criteo", "deepfm-criteo", "dnn-criteo"]
FIELDS_PER_TABLE = [1, 2, 4]


def des_options(**fields: str) -> StrategyOptions:
    """The default options with DES's ``fields`` (DESOptions) set."""
    options = StrategyOptions.default()
    options.des = DESOptions(**fields)
    return options


REPLICATED = des_options(input="replicated")
VARIANTS = [("ps", "ps", None), ("des", "des", None), ("des-repl", "des", REPLICATED)]  # (label, strategy, options)
PARTIALS = [("des-fields", des_options(partial="fields")), ("des-first-layer", des_options(partial="first-layer"))]
HERE = Path(__file__).parent


def topology(workers: int) -> str:
    per_leaf = min(workers, 16)
    return (f"leafspine:leaves={workers // per_leaf},hosts_per_leaf={per_leaf},spines=4,host_gbps=100,"
            "uplink_gbps=400,latency_us=1")


def study() -> pd.DataFrame:
    device, server = load_device("h100"), load_device("cpu-server")
    rows = []
    for n in WORKERS:
        fabric = Fabric(load_topology(topology(n)))
        for model, hot, (popularity, alpha) in itertools.product(MODELS, HOTNESS, SKEW):
            sets = [f"batch_per_worker={BATCH}", f"hotness={hot}", f"popularity={popularity}"]
            if alpha:
                sets.append(f"zipf_alpha={alpha}")
            spec = load_workload(model, sets)
            for label, strategy, options in VARIANTS:
                summary = simulate_step(spec, make_cluster(fabric, strategy, device, server), strategy,
                                        "analytical", options=options).summary
                rows.append({"model": model, "workers": n, "hotness": hot,
                             "skew": popularity if not alpha else f"zipf {alpha}", "strategy": label,
                             "bytes_per_worker": summary["bytes_per_worker"]["max"],
                             "step_time_ms": summary["step_time_s"] * 1e3})
    return pd.DataFrame(rows)


def partial_study() -> pd.DataFrame:
    """PS vs DES with fields and with first-layer partials (uniform IDs), one row per run."""
    device, server = load_device("h100"), load_device("cpu-server")
    rows = []
    for n in WORKERS:
        fabric = Fabric(load_topology(topology(n)))
        for model, per_table, hot in itertools.product(PARTIAL_MODELS, FIELDS_PER_TABLE, HOTNESS):
            spec = load_workload(model, [f"batch_per_worker={BATCH}", f"hotness={hot}", f"fields={per_table}"])
            runs = [("ps", "ps", None)] + [(label, "des", options) for label, options in PARTIALS]
            for label, strategy, options in runs:
                if label == "des-first-layer" and spec.first_layer_obstacle:
                    continue
                summary = simulate_step(spec, make_cluster(fabric, strategy, device, server), strategy,
                                        "analytical", options=options).summary
                rows.append({"model": model, "workers": n, "fields": spec.n_fields, "hotness": hot,
                             "r_fields": spec.partial_width, "r_first_layer": spec.first_layer_partial_width,
                             "strategy": label, "bytes_per_worker": summary["bytes_per_worker"]["max"],
                             "step_time_ms": summary["step_time_s"] * 1e3})
    return pd.DataFrame(rows)


def partial_winners(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: each DES partial's bytes over PS's, the step times and the fastest."""
    index = ["model", "workers", "fields", "hotness", "r_fields", "r_first_layer"]
    wide = frame.pivot_table(index=index, columns="strategy",
                             values=["bytes_per_worker", "step_time_ms"]).reset_index()
    wide.columns = ["_".join(c for c in col if c) for col in wide.columns]
    labels = ["ps", *(label for label, _ in PARTIALS)]
    for label in labels[1:]:
        wide[f"bytes_{label}_over_ps"] = wide[f"bytes_per_worker_{label}"] / wide["bytes_per_worker_ps"]
    times = wide[[f"step_time_ms_{label}" for label in labels]]
    wide["fastest"] = times.idxmin(axis=1).str.removeprefix("step_time_ms_")
    wide["r_first_layer"] = wide["r_first_layer"].replace(0, "-")
    return wide[[*index, *(f"bytes_{label}_over_ps" for label in labels[1:]),
                 *(f"step_time_ms_{label}" for label in labels), "fastest"]]


def winners(frame: pd.DataFrame) -> pd.DataFrame:
    wide = frame.pivot_table(index=["model", "workers", "hotness", "skew"], columns="strategy",
                             values=["bytes_per_worker", "step_time_ms"]).reset_index()
    wide.columns = ["_".join(c for c in col if c) for col in wide.columns]
    for label in ("des", "des-repl"):
        wide[f"bytes_{label}_over_ps"] = wide[f"bytes_per_worker_{label}"] / wide["bytes_per_worker_ps"]
    times = wide[[f"step_time_ms_{label}" for label, _, _ in VARIANTS]].to_numpy()
    wide["fastest"] = [VARIANTS[i][0] for i in times.argmin(axis=1)]
    return wide[["model", "workers", "hotness", "skew", "bytes_des_over_ps", "bytes_des-repl_over_ps",
                 "step_time_ms_ps", "step_time_ms_des", "step_time_ms_des-repl", "fastest"]]


def main() -> None:
    frame = study()
    wide = winners(frame)
    figure = px.line(frame, x="hotness", y="bytes_per_worker", color="strategy", line_dash="skew",
                     facet_col="model", facet_row="workers", log_x=True, log_y=True, markers=True,
                     title="Per-worker bytes per step: PS vs DES (batch 1024 per worker)")
    partial = partial_study()
    partial_figure = px.line(partial[partial.hotness == 1], x="fields", y="bytes_per_worker", color="strategy",
                             facet_col="model", facet_row="workers", log_x=True, log_y=True, markers=True,
                             title="One-hot fields: per-worker bytes per step, PS vs DES fields vs first-layer")
    (HERE / "crossover.html").write_text(
        "<html><head><meta charset='utf-8'></head><body>"
        + figure.to_html(include_plotlyjs="cdn", full_html=False)
        + partial_figure.to_html(include_plotlyjs=False, full_html=False) + "</body></html>")
    lines = ["# DES vs PS crossover", "",
             "Generated by `docs/crossover.py` (analytical fidelity; H100 workers; PS servers co-located, one per",
             f"worker; leaf-spine of 100G hosts; batch {BATCH} per worker). Figure: `docs/crossover.html`.", "",
             "`bytes_<des>_over_ps` < 1: that DES variant moves fewer bytes per worker than PS; `fastest`: the",
             "shortest step. `des` all-gathers the batch's IDs; `des-repl` has every worker read them",
             "(`--des-input replicated`). Both take DES's default partial, `auto`: the first dense layer's where",
             "that sums fewer values per sample (DeepFM at hotness 1), else the fields' (last section).",
             ""]
    lines += model_sections(wide, "", [label for label, _, _ in VARIANTS])
    lines += partial_section(partial_winners(partial))
    (HERE / "CROSSOVER.md").write_text("\n".join(lines))
    print(wide.groupby("model")["fastest"].value_counts().unstack(fill_value=0))


def partial_section(wide: pd.DataFrame) -> list[str]:
    """CROSSOVER.md's section on DES's fields vs first-layer partials."""
    lines = ["# DES partials: fields vs first layer", "",
             "DES's owners sum either every field's pooled vector (`--des-partial fields`: r = F k values per",
             "sample, + 1 first-order for W&D and DeepFM) or their share of the first dense layer",
             "(`--des-partial first-layer`: r = h1, + k + 1 for DeepFM's FM part, + 1 for W&D; TRAINING_MODEL.md,",
             "\"DES partials\"); uniform IDs, F grown by sharing each table among 1, 2 or 4 fields. r does not",
             "depend on the hotness, so first-layer wins wherever r_first_layer < r_fields, by r_fields /",
             "r_first_layer on the partials; DeepFM's first layer needs one-hot fields (`-`: not exact).",
             "First-layer sums fewer values once F k exceeds h1 (W&D from F = 52; DNN and DeepFM at the",
             "presets' F already) and is then the faster DES. DES's bytes grow with N (B x r) where PS's do",
             "not, so it beats PS only at few workers with many IDs per sample: here DNN and W&D at hotness",
             "8-32 (and DNN one-hot at F = 104), DeepFM one-hot at F = 156, all at 4 workers but a few at 16.",
             ""]
    return lines + model_sections(wide, " (partials)", ["ps", *(label for label, _ in PARTIALS)])


def model_sections(wide: pd.DataFrame, suffix: str, labels: list[str]) -> list[str]:
    """A section per model: its table, then how many configurations each of ``labels`` is fastest in."""
    lines = []
    for model, part in wide.groupby("model", sort=False):
        counts = part["fastest"].value_counts()
        lines += [f"## {model}{suffix}", "", markdown(part.drop(columns="model")), "",
                  "Fastest in " + ", ".join(f"{label}: {counts.get(label, 0)}" for label in labels)
                  + f" of {len(part)} configurations.", ""]
    return lines


if __name__ == "__main__":
    main()
