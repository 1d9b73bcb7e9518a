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
from simulator.strategies import des, dp, fc, ps, torchrec
from simulator.strategies.base import Cluster, Lowered, Strategy
from workloads import AnyWorkload, ClassificationWorkload
from workloads.precision import check_device

REGISTRY: dict[str, Strategy] = {s.name: s for module in (ps, des, dp, torchrec, fc) for s in module.STRATEGIES}
STRATEGIES = tuple(REGISTRY)
RECOMMENDER_STRATEGIES = tuple(name for name, s in REGISTRY.items() if s.kind == "recommender")
FC_STRATEGIES = tuple(name for name, s in REGISTRY.items() if s.kind == "classification")
DESCRIPTIONS = {name: s.description for name, s in REGISTRY.items()}


def needs_servers(strategy: str) -> bool:
    return strategy in REGISTRY and REGISTRY[strategy].needs_servers


def strategies_for(workload: AnyWorkload) -> tuple[str, ...]:
    """The strategies that can lower ``workload``."""
    return FC_STRATEGIES if isinstance(workload, ClassificationWorkload) else RECOMMENDER_STRATEGIES


def lower(strategy: str, workload: AnyWorkload, cluster: Cluster, steps: int = 1,
          options: StrategyOptions | None = None) -> Lowered:
    """Lower ``workload`` onto ``cluster`` with ``strategy`` for ``steps`` training steps (a SpecError naming
    ``precision`` if the cluster's device has no peak for the workload's)."""
    check_device(workload.precision, cluster.device)
    allowed = strategies_for(workload)
    if strategy not in allowed:
        kind = "an extreme-classification" if isinstance(workload, ClassificationWorkload) else "a recommender"
        raise SpecError("strategy", strategy, f"allowed for {kind} workload: {', '.join(allowed)}")
    return REGISTRY[strategy].lower(workload, cluster, steps, options or StrategyOptions.default())
