"""Strategies: each lowers a workload onto a cluster into a ``StepGraph`` plus its memory per device.

| name | what crosses the network per step |
|---|---|
| ``ps`` | worker <-> server: keys, rows, row gradients (and dense values/gradients or a dense all-reduce) |
| ``des``, ``des-rs``, ``des-a2a`` | IDs and partial results (and their gradients); dense all-reduce |
| ``dp`` | all-reduce of every table's gradient and of dense gradients |
| ``tw``, ``cw``, ``rw``, ``twrw`` | TorchRec input/output distribution of IDs and pooled embeddings; dense all-reduce |
| ``dp-fc``, ``ps-fc``, ``mp-fc``, ``mp-fc-knn`` | extreme classification (``strategies.fc``): FC gradients or |
| | rows, or features and softmax scalars; backbone all-reduce |

Recommender strategies take a ``Workload``; the ``*-fc`` ones a ``ClassificationWorkload``.
"""

from __future__ import annotations

from simulator.errors import SpecError
from simulator.options import StrategyOptions
from simulator.strategies.base import Cluster, Lowered
from simulator.strategies.des import VARIANTS, lower_des
from simulator.strategies.dp import lower_dp
from simulator.strategies.fc import FC_STRATEGIES, lower_fc
from simulator.strategies.ps import lower_ps
from simulator.strategies.torchrec import SHARDINGS, lower_sharded
from workloads import AnyWorkload, ClassificationWorkload
from workloads.precision import check_device

RECOMMENDER_STRATEGIES = ("ps", *VARIANTS, "dp", *SHARDINGS)
STRATEGIES = (*RECOMMENDER_STRATEGIES, *FC_STRATEGIES)
DESCRIPTIONS = {
    "ps": "parameter server: pull rows, push gradients (sync, async or bounded staleness)",
    "des": "Distributed Equivalent Substitution: all-gather IDs, all-reduce partial results",
    "des-rs": "DES with a reduce-scatter of partial results (half the forward bytes of des)",
    "des-a2a": "DES with IDs and partial results routed to and from owners by all-to-all",
    "dp": "data parallel: tables replicated, every table gradient all-reduced",
    "tw": "TorchRec table-wise sharding (all-to-all of IDs and pooled embeddings)",
    "cw": "TorchRec column-wise sharding",
    "rw": "TorchRec row-wise sharding (all-to-all of IDs, reduce-scatter of pooled embeddings)",
    "twrw": "TorchRec table-wise-row-wise sharding (tables on nodes, rows over a node's GPUs)",
    "dp-fc": "extreme classification: FC replicated, its gradient all-reduced",
    "ps-fc": "extreme classification: FC rows on parameter servers, pulled and pushed every step",
    "mp-fc": "extreme classification: FC sharded by class, features all-gathered, distributed softmax",
    "mp-fc-knn": "mp-fc with KNN softmax: only each label's nearest classes are scored",
}


def needs_servers(strategy: str) -> bool:
    return strategy in ("ps", "ps-fc")


def strategies_for(workload: AnyWorkload) -> tuple[str, ...]:
    """The strategies that can lower ``workload``."""
    return FC_STRATEGIES if isinstance(workload, ClassificationWorkload) else RECOMMENDER_STRATEGIES


def lower(strategy: str, workload: AnyWorkload, cluster: Cluster, steps: int = 1,
          options: StrategyOptions | None = None) -> Lowered:
    """Lower ``workload`` onto ``cluster`` with ``strategy`` for ``steps`` training steps (a SpecError naming
    ``precision`` if the cluster's device has no peak for the workload's)."""
    opts = options or StrategyOptions.default()
    check_device(workload.precision, cluster.device)
    allowed = strategies_for(workload)
    if strategy not in allowed:
        kind = "an extreme-classification" if isinstance(workload, ClassificationWorkload) else "a recommender"
        raise SpecError("strategy", strategy, f"allowed for {kind} workload: {', '.join(allowed)}")
    if isinstance(workload, ClassificationWorkload):
        return lower_fc(workload, cluster, strategy, steps, opts.fc)
    if strategy == "ps":
        return lower_ps(workload, cluster, steps, opts.ps)
    if strategy in VARIANTS:
        return lower_des(workload, cluster, steps, opts.des, variant=strategy)
    if strategy == "dp":
        return lower_dp(workload, cluster, steps)
    return lower_sharded(workload, cluster, strategy, steps, opts.sharding)
