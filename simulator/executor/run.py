"""One executor configuration, for real: a model's small workload, a strategy, a world size -> what every
rank sent (per category) and how long its steps took.

Local ranks (the spawner)::

    python -m simulator.executor.run --model dlrm --strategy des --world 4 --steps 5

Across machines, the same module under torchrun (gloo, or NCCL when CUDA is present)::

    torchrun --nnodes 2 --nproc-per-node 4 ... -m simulator.executor.run --model dlrm --strategy des

``world`` counts workers; ``ps`` and ``ps-async`` add ``servers`` ranks (default: half the workers, at
least one) after them, as dedicated servers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simulator.errors import torch_missing

try:
    import torch
    import torch.distributed as dist
except ImportError:  # run as a program without the torch extra: one line, exit status 2
    if __name__ != "__main__":
        raise
    print(f"error: {torch_missing()}", file=sys.stderr)
    raise SystemExit(2) from None

from simulator.executor import EXECUTOR_KNN, fc_models, ps, tensors
from simulator.executor import train as loops
from simulator.executor.launch import ExecutorError, init_from_env, rank_device, run_local
from simulator.options import PARTIALS
from workloads import AnyWorkload, deepfm, dlrm, dnn, fm, lr, widedeep

RECOMMENDERS = ("lr", "fm", "widedeep", "deepfm", "dnn", "dlrm")
RECOMMENDER_STRATEGIES = ("ps", "ps-async", "des", "des-rs", "des-a2a", "dp")
MODELS = (*RECOMMENDERS, "xc")  # xc: extreme classification (fc_models)
STRATEGIES = (*RECOMMENDER_STRATEGIES, *fc_models.STRATEGIES)
NOT_COUNTED = ("metrics", "metadata")  # the loss metric and message lengths: not the model's traffic


def small_workload(model: str, batch_per_worker: int = 1024, seed: int = 0) -> AnyWorkload:
    """The executor-sized workload of ``model``: a few tables of 20k-50k rows, sampled IDs, SGD (fp32); for
    ``xc``, a 960-class softmax over a small MLP backbone."""
    if model == "xc":
        return fc_models.small_classification_workload(batch_per_worker, seed=seed)
    common = {"batch_per_worker": batch_per_worker, "ids": "sampled", "seed": seed, "optimizer": "sgd"}
    if model == "lr":
        return lr(n_tables=8, rows=50_000, hotness=4, popularity="zipf", zipf_alpha=1.1, **common)
    if model == "fm":
        return fm(n_tables=8, rows=20_000, dim=16, hotness=2, **common)
    if model == "dlrm":
        return dlrm(n_tables=8, rows=20_000, dim=16, bottom_mlp=[64, 16], top_mlp=[64, 32, 1], **common)
    if model in ("widedeep", "deepfm", "dnn"):
        build = {"widedeep": widedeep, "deepfm": deepfm, "dnn": dnn}[model]
        return build(n_tables=8, rows=20_000, dim=16, hotness=2, top_mlp=[64, 32], **common)
    raise ValueError(f"model {model!r}: allowed: {', '.join(MODELS)}")


def model_name(workload: AnyWorkload) -> str:
    """The executor's name of ``workload``'s model (``xc`` for extreme classification)."""
    return "xc" if workload.model == "classification" else workload.model


def strategies_for(model: str) -> tuple[str, ...]:
    """The executor strategies that train ``model``."""
    return fc_models.STRATEGIES if model == "xc" else RECOMMENDER_STRATEGIES


def check(strategy: str, backend: str, model: str | None = None) -> None:
    """A ValueError unless ``strategy`` runs on ``backend`` (and trains ``model`` if given)."""
    allowed = strategies_for(model) if model else STRATEGIES
    if strategy not in allowed:
        raise ValueError(f"strategy {strategy!r}: allowed{f' for {model}' if model else ''}: {', '.join(allowed)}")
    if strategy == "ps-async" and backend == "nccl":
        raise ValueError("strategy 'ps-async': needs gloo (its servers receive from any worker; NCCL cannot)")


def default_servers(world: int) -> int:
    return max(1, world // 2)


def train(rank: int, ranks: int, workload: AnyWorkload, strategy: str, steps: int, servers: int,
          des_partial: str = "auto") -> dict:
    """Rank ``rank`` of ``ranks`` trains ``steps`` steps of ``workload`` with ``strategy`` (DES: with
    ``des_partial`` partials); its report."""
    if strategy in fc_models.STRATEGIES:
        knn_k = EXECUTOR_KNN.knn_k if strategy == "mp-fc-knn" else None
        return fc_models.train_mp_fc(rank, ranks, workload, steps, knn_k, EXECUTOR_KNN.knn_rebuild_steps)
    if strategy in ("ps", "ps-async"):
        return ps.train_ps(rank, ranks, workload, steps, servers, "async" if strategy == "ps-async" else "sync")
    if strategy in ("des", "des-rs"):
        return loops.train_des(rank, ranks, workload, steps, strategy, des_partial)
    if strategy == "des-a2a":
        return loops.train_des_a2a(rank, ranks, workload, steps, des_partial)
    if strategy == "dp":
        return loops.train_dp(rank, ranks, workload, steps)
    raise ValueError(f"strategy {strategy!r}: allowed: {', '.join(STRATEGIES)}")


@dataclass
class Measurement:
    """What one run measured. ``counters``: one row per (rank, category) with bytes_sent, bytes_received
    and time_s summed over all steps; ``step_s``: (worker ranks, steps) wall seconds; ``ops``: one row per
    (rank, step, category) with the seconds that rank's step spent in it (``simulator.executor.timing``)."""

    strategy: str
    workers: int
    servers: int
    steps: int
    counters: pd.DataFrame
    step_s: np.ndarray
    ops: pd.DataFrame

    def bytes_per_step(self) -> pd.Series:
        """Bytes sent per step, per (category, rank), the model's traffic only."""
        rows = self.counters[~self.counters.category.isin(NOT_COUNTED)]
        return rows.groupby(["category", "rank"]).bytes_sent.sum() / self.steps

    def measured_steps_s(self, warmup: int = 1) -> np.ndarray:
        """The step times after ``warmup``: the slowest worker's per step (synchronous strategies), or every
        worker's own (``ps-async``, where workers do not wait for each other)."""
        measured = self.step_s[:, warmup:]
        return measured.ravel() if self.strategy == "ps-async" else measured.max(axis=0)

    def median_step_s(self, warmup: int = 1) -> float:
        return float(np.median(self.measured_steps_s(warmup)))

    def step_spread(self, warmup: int = 1) -> float:
        """How much the measured steps vary: interquartile range / median (0.2: the middle half of the
        steps lie within 20% of the median's size)."""
        q25, q50, q75 = np.percentile(self.measured_steps_s(warmup), [25, 50, 75])
        return float((q75 - q25) / q50)

    def unwaited(self, warmup: int = 1) -> pd.Series:
        """Seconds per step by category as the last worker to arrive spends them: per step the least over the
        workers (who arrives last at a collective waits for nobody: its time is the call's own), mean over
        steps. For a collective, what it costs without the skew between ranks."""
        ops = self.ops[(self.ops.step >= warmup) & (self.ops["rank"] < self.workers)]
        per_rank = ops.groupby(["step", "category", "rank"]).time_s.sum().unstack("rank", fill_value=0.0)
        return per_rank.min(axis=1).groupby(level="category").sum() / (self.steps - warmup)

    def breakdown(self, warmup: int = 1) -> pd.Series:
        """Seconds per step by category, after ``warmup``: a worker's mean (over steps, then workers), and for
        the servers' own categories (``server.*``) a server's. A worker's categories add up to its mean step."""
        ops = self.ops[self.ops.step >= warmup]
        per_rank = ops.groupby(["rank", "category"]).time_s.sum() / (self.steps - warmup)
        frame = per_rank.rename("time_s").reset_index()
        worker = frame[frame["rank"] < self.workers]
        server = frame[(frame["rank"] >= self.workers) & frame.category.str.startswith("server.")]
        return pd.concat([worker.groupby("category").time_s.sum() / self.workers,
                          server.groupby("category").time_s.sum() / max(self.servers, 1)]).sort_index()


def measurement(strategy: str, workers: int, servers: int, steps: int, reports: list[dict]) -> Measurement:
    counters = pd.DataFrame([{"rank": rank, "category": category, **values} for rank, report in enumerate(reports)
                             for category, values in report["counters"].items()],
                            columns=["rank", "category", "bytes_sent", "bytes_received", "time_s"])
    ops = []
    for rank, report in enumerate(reports):
        steps_timed = report.get("ops", [])
        if len(steps_timed) == 1 and steps > 1:  # an ASP server: the totals of all its requests, spread evenly
            steps_timed = [{c: t / steps for c, t in steps_timed[0].items()}] * steps
        ops += [{"rank": rank, "step": k, "category": c, "time_s": t} for k, spent in enumerate(steps_timed)
                for c, t in spent.items()]
    return Measurement(strategy, workers, servers, steps, counters,
                       np.array([report["step_s"] for report in reports[:workers]]),
                       pd.DataFrame(ops, columns=["rank", "step", "category", "time_s"]))


def execute(workload: AnyWorkload, strategy: str, world: int, steps: int, servers: int | None = None,
            backend: str = "gloo", timeout_s: float = 60.0, des_partial: str = "auto") -> Measurement:
    """Train ``steps`` steps on ``world`` local worker ranks (plus servers for PS); what they measured."""
    return execute_many([(workload, strategy)], world, steps, servers, backend, timeout_s, des_partial=des_partial)[0]


def execute_many(configs: list[tuple[AnyWorkload, str]], world: int, steps: int, servers: int | None = None,
                 backend: str = "gloo", timeout_s: float = 60.0, repeats: int = 1,
                 des_partial: str = "auto") -> list[Measurement]:
    """Each (workload, strategy) trained for ``steps`` steps, one after the other, on ranks started once:
    ``world`` workers, plus ``servers`` (default ``default_servers``) when the strategies are PS (then all
    of them must be). DES runs sum ``des_partial`` partials (``DESOptions.partial``).

    With ``repeats`` > 1 the whole list runs that many times over, and each configuration keeps its quietest
    pass (``quietest``): a shared machine's speed changes in phases of seconds, and interference only ever
    adds time, so the pass with the smallest median step is the one the machine's own costs explain."""
    for workload, strategy in configs:
        check(strategy, backend, model_name(workload))
        if strategy.startswith("des"):  # a partial the model cannot sum: one SpecError here, not one per rank
            workload.des_partial(des_partial)
    with_servers = {strategy.startswith("ps") for _, strategy in configs}
    if len(with_servers) > 1:
        raise ValueError("execute_many: PS and non-PS strategies need different ranks; run them apart")
    p = (servers or default_servers(world)) if with_servers.pop() else 0
    passes = configs * repeats
    reports = run_local(_spawned, world + p, passes, steps, p, backend, des_partial, backend=backend,
                        timeout_s=timeout_s)
    measured = [measurement(strategy, world, p, steps, [rank[i] for rank in reports])
                for i, (_, strategy) in enumerate(passes)]
    return [quietest(measured[i::len(configs)]) for i in range(len(configs))]


def quietest(passes: list[Measurement], warmup: int = 1) -> Measurement:
    """The pass with the smallest median step after ``warmup`` (repeated runs of one configuration)."""
    return min(passes, key=lambda m: m.median_step_s(warmup))


def _spawned(rank: int, ranks: int, configs: list[tuple[AnyWorkload, str]], steps: int, servers: int,
             backend: str, des_partial: str = "auto") -> list[dict]:
    use_device(backend, rank)
    results = []
    for workload, strategy in configs:
        results.append(train(rank, ranks, workload, strategy, steps, servers, des_partial))
        # every rank ends this configuration before any starts the next: an asynchronous PS server still
        # serving a slow worker must not receive a fast worker's next request (gloo aborts on the mismatch)
        dist.barrier()
    return results


def use_device(backend: str, local_rank: int) -> None:
    """Put this rank's executor tensors on its device (``tensors.use``); one thread per rank on the CPU (ranks
    share the cores)."""
    device = rank_device(backend, local_rank)
    tensors.use(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(1)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simulator.executor.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=MODELS, default="dlrm")
    parser.add_argument("--strategy", choices=STRATEGIES, default="des")
    parser.add_argument("--world", type=int, default=2, help="worker ranks (local runs; under torchrun, every rank "
                        "but the servers is a worker)")
    parser.add_argument("--servers", type=int, default=None, help="PS server ranks (default: half the workers; "
                        "under torchrun, 1: the last rank)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--des-partial", choices=PARTIALS, default="auto",
                        help="DES: what owners sum (fields, first-layer, auto: fewer values per sample)")
    parser.add_argument("--batch", type=int, default=1024, help="samples per worker per step")
    parser.add_argument("--backend", choices=("gloo", "nccl"), default="nccl" if torch.cuda.is_available() else "gloo")
    parser.add_argument("--timeout-s", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=None, help="write the measurement as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    for name, value, low in (("world", args.world, 1), ("steps", args.steps, 2), ("batch", args.batch, 1),
                             ("servers", args.servers or 1, 1), ("timeout-s", args.timeout_s, 1e-3)):
        if value < low:
            print(f"error: {name}: got {value}; allowed: >= {low}", file=sys.stderr)
            raise SystemExit(2)
    workload = small_workload(args.model, args.batch)
    try:
        check(args.strategy, args.backend, args.model)
        if "RANK" in os.environ:  # under torchrun: this process is one rank
            init_from_env(args.backend, args.timeout_s)
            rank, ranks = dist.get_rank(), dist.get_world_size()
            servers = (args.servers or 1) if args.strategy.startswith("ps") else 0
            use_device(args.backend, int(os.environ.get("LOCAL_RANK", rank)))
            report = train(rank, ranks, workload, args.strategy, args.steps, servers, args.des_partial)
            reports = [None] * ranks if rank == 0 else None
            dist.gather_object(report, reports)
            dist.destroy_process_group()
            if rank:
                return
            result = measurement(args.strategy, ranks - servers, servers, args.steps, reports)
        else:
            result = execute(workload, args.strategy, args.world, args.steps, args.servers, args.backend,
                             args.timeout_s, args.des_partial)
    except (ExecutorError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2 if isinstance(error, ValueError) else 1) from None
    summary = {"model": args.model, "strategy": args.strategy, "workers": result.workers,
               "servers": result.servers, "steps": args.steps, "median_step_s": result.median_step_s(),
               "bytes_per_step": {f"{c}@{r}": v for (c, r), v in result.bytes_per_step().items()}}
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
